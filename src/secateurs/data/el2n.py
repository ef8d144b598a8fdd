"""EL2N: the error L2 norm early in training (Paul, Ganguli & Dziugaite, NeurIPS 2021, "Deep Learning on a Data
Diet: Finding Important Examples Early in Training")."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch.nn.functional as F

from ..registry import register
from .dynamics import ModelSpec, collect, probabilities, recipe, run_meta
from .score import Scores

EARLY_FRACTION = 0.1  # data_diet scores CIFAR-10 at epoch 20 of a 200-epoch run


@register("scorer", "el2n")
def el2n(
    dataset: Any,
    model: ModelSpec = "lenet5",
    seeds: int | Sequence[int] = 10,
    seed: int = 0,
    epochs: int | None = None,
    total_epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    progress: bool = False,
) -> Scores:
    """EL2N (Paul et al. 2021, Eq. 2): ``E_seeds || softmax(f_{theta_t}(x)) - onehot(y) ||_2`` early in training.

    Each seed trains ``model`` for ``epochs`` epochs of a ``total_epochs``-epoch run (default: the recipe's
    length, and 10 % of it -- the paper's epoch 20 of 200 on CIFAR-10); the error norm is taken in eval mode at
    that checkpoint and averaged over the seeds (data_diet's README: "at least 10 runs", the default here).
    High = hard.
    """
    total = recipe(model)["epochs"] if total_epochs is None else total_epochs
    if epochs is None:
        epochs = max(1, round(EARLY_FRACTION * total)) if total else 0
    runs, x, y = collect(dataset, model=model, seeds=seeds, seed=seed, epochs=epochs, total_epochs=total,
                         batch_size=batch_size, lr=lr, progress=progress, what="el2n")
    per_run = []
    for run in runs:
        p = probabilities(run, x, y)
        per_run.append((p - F.one_hot(y, p.shape[1]).double()).norm(dim=1).numpy())
    return Scores(np.mean(per_run, axis=0), "high", {"method": "el2n", **run_meta(runs, model)})


el2n.needs_labels = True
