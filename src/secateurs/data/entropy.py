"""Prediction entropy, the uncertainty score of "Selection via Proxy" (Coleman et al., ICLR 2020), as CCS's
``generate_importance_score.py`` computes it after training."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..registry import register
from .dynamics import ModelSpec, collect, probabilities, run_meta
from .score import Scores


@register("scorer", "entropy")
def entropy(
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
    """Entropy of the predicted class distribution, ``H(x) = -sum_i p_i(x) log p_i(x)`` (Coleman et al. 2020,
    Sec. 3), of a model trained for ``epochs`` (default: the recipe's full run), in eval mode, averaged over
    ``seeds`` runs.  High = hard (the model is unsure).

    Label-free when no training is needed: ``model=<a trained nn.Module>, epochs=0`` scores unlabeled data.
    """
    runs, x, _ = collect(dataset, model=model, seeds=seeds, seed=seed, epochs=epochs, total_epochs=total_epochs,
                         batch_size=batch_size, lr=lr, progress=progress, what="entropy")
    per_run = []
    for run in runs:
        p = probabilities(run, x)
        per_run.append(-(torch.special.xlogy(p, p)).sum(1).numpy())
    return Scores(np.mean(per_run, axis=0), "high", {"method": "entropy", **run_meta(runs, model)})


entropy.needs_labels = False
