"""Forgetting events (Toneva et al., ICLR 2019, "An Empirical Study of Example Forgetting during Deep Neural
Network Learning")."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError
from ..registry import register
from .dynamics import ModelSpec, collect, run_meta
from .score import Scores


@register("scorer", "forgetting")
def forgetting(
    dataset: Any,
    model: ModelSpec = "lenet5",
    seeds: int | Sequence[int] = 1,
    seed: int = 0,
    epochs: int | None = None,
    total_epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    progress: bool = False,
) -> Scores:
    """Number of forgetting events (Toneva et al. 2019, Sec. 2): transitions from correctly to incorrectly
    classified between two consecutive presentations of an example in a training minibatch, counted over a whole
    run (default: the recipe's epochs) and averaged over ``seeds`` runs.  High = hard ("unforgettable" examples,
    0 events, are pruned first).

    Examples never classified correctly count as the most forgotten: data_diet gives them ``inf``; a score must be
    finite here, so they get ``epochs`` instead -- more than any learned example can reach (an example presented
    ``P`` times can be forgotten at most ``P // 2`` times).  An example never learned in any one run gets it, as
    ``inf`` would win data_diet's mean over runs.  ``meta["never_learned"]`` counts them.
    """
    runs, _, _ = collect(dataset, model=model, seeds=seeds, seed=seed, epochs=epochs, total_epochs=total_epochs,
                         batch_size=batch_size, lr=lr, progress=progress, what="forgetting")
    if runs[0].epochs < 1:
        raise InvalidArgumentError("forgetting counts events during training: epochs must be >= 1")
    counts = np.mean([r.forgetting for r in runs], axis=0).astype(np.float64)
    never = np.any([~r.ever_correct for r in runs], axis=0)
    counts[never] = float(max(r.epochs for r in runs))
    return Scores(counts, "high", {"method": "forgetting", **run_meta(runs, model),
                                   "never_learned": int(never.sum()), "never_learned_score": float(runs[0].epochs)})


forgetting.needs_labels = True
