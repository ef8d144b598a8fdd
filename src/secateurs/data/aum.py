"""AUM, the area under the margin (Pleiss, Zhang, Elenberg & Weinberger, NeurIPS 2020, "Identifying Mislabeled
Data using the Area Under the Margin Ranking")."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError
from ..registry import register
from .dynamics import ModelSpec, collect, run_meta
from .score import Scores


@register("scorer", "aum")
def aum(
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
    """AUM (Pleiss et al. 2020, Eqs. 1-2): the mean over presentations of the logit margin
    ``M_t(x, y) = z_y(x) - max_{i != y} z_i(x)``, from the training forward pass of each minibatch (as
    asappresearch/aum's ``AUMCalculator.update``), over a run of ``epochs`` (default: the recipe's), averaged over
    ``seeds`` runs.  Low = hard: mislabeled examples have negative margins.

    Deviation: the paper averages up to the first learning-rate drop; the zoo recipe decays the learning rate
    by a cosine, with no drop, so the whole run is used (as CCS does).  CCS's own code sums *softmax-probability*
    margins instead of averaging logit margins; this follows the AUM paper and its library.
    """
    runs, _, _ = collect(dataset, model=model, seeds=seeds, seed=seed, epochs=epochs, total_epochs=total_epochs,
                         batch_size=batch_size, lr=lr, progress=progress, what="aum")
    if runs[0].epochs < 1:
        raise InvalidArgumentError("aum averages margins during training: epochs must be >= 1")
    return Scores(np.mean([r.aum() for r in runs], axis=0), "low", {"method": "aum", **run_meta(runs, model)})


aum.needs_labels = True
