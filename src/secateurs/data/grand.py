"""GraNd: the per-example loss-gradient norm (Paul, Ganguli & Dziugaite, NeurIPS 2021, "Deep Learning on a Data
Diet")."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import MissingDataError
from ..registry import register
from .dynamics import ModelSpec, collect, grad_norms, run_meta
from .score import Scores


@register("scorer", "grand")
def grand(
    dataset: Any,
    model: ModelSpec = "lenet5",
    seeds: int | Sequence[int] = 10,
    seed: int = 0,
    epochs: int = 0,
    total_epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    progress: bool = False,
) -> Scores:
    """GraNd (Paul et al. 2021, Eq. 1): ``E_seeds || grad_theta CE(f_{theta_t}(x), y) ||_2`` over all parameters.

    By default at initialisation (``epochs=0``), averaged over ``seeds`` initialisations: the paper's headline
    result is that the initial gradient norm, averaged over several initialisations, already finds the examples
    that matter; ``epochs > 0`` takes it at that checkpoint of a ``total_epochs`` run instead.  Per-example
    gradients in eval mode (data_diet's ``get_grad_norm_fn``).  High = hard.
    """
    runs, x, y = collect(dataset, model=model, seeds=seeds, seed=seed, epochs=epochs, total_epochs=total_epochs,
                         batch_size=batch_size, lr=lr, progress=progress, what="grand")
    if y is None:
        raise MissingDataError("grand differentiates the loss of each example's label; the data set has no labels")
    per_run = [grad_norms(run.model, x, y) for run in runs]
    return Scores(np.mean(per_run, axis=0), "high", {"method": "grand", **run_meta(runs, model)})


grand.needs_labels = True
