"""SET: Sparse Evolutionary Training (Mocanu et al. 2018, "Scalable training of artificial neural networks with
adaptive sparse connectivity inspired by network science", Nature Communications 9:2383)."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import InvalidArgumentError
from ..registry import register
from .dst import SparseToSparse, budget_defaults


@register("schedule", "set")
class SET(SparseToSparse):
    """SET: drop the smallest-magnitude fraction ζ of each layer's connections, regrow as many uniformly at random.

    Mocanu et al. 2018 §"Methods": after each training period remove the fraction ζ of the smallest positive and
    largest negative weights (= the smallest |θ|) and add the same number of random connections.  Defaults from
    google-research/rigl@d39fc7d (``SparseSETOptimizerBase``; ``rigl_tf2/configs/set.gin``): ζ = 0.3, constant
    (``drop_fraction_anneal='constant'``), an update every 100 steps, new weights start at zero with their momentum
    reset; Erdős–Rényi-Kernel random initial mask (the paper's ER, ``allocation="er"``, is available).
    ``end_step``: last step that may update (default: never stop, as the paper, which updates after every epoch).

    Deviations: the paper re-initialises grown weights randomly; RigL's reference (and this) starts them at zero.
    See :mod:`secateurs.schedules.dst` for the shared drop-and-grow step and its tie-breaking.
    """

    def __init__(self, model: nn.Module, sparsity: float, end_step: int | None = None, *, frequency: int = 100,
                 drop_fraction: float = 0.3, anneal: str = "constant", start_step: int = 0,
                 allocation: str = "erk", init_method: str = "random", dense=None, data=None, targets=None,
                 ignore=None, seed: int = 0, optimizer: torch.optim.Optimizer | None = None):
        if end_step is None and anneal == "cosine":
            raise InvalidArgumentError("anneal='cosine' decays the drop fraction to zero at end_step: pass end_step")
        super().__init__(model, sparsity, end_step=end_step if end_step is not None else 2**62, frequency=frequency,
                         drop_fraction=drop_fraction, anneal=anneal, start_step=start_step, allocation=allocation,
                         init_method=init_method, dense=dense, data=data, targets=targets, ignore=ignore, seed=seed,
                         optimizer=optimizer)

    @classmethod
    def from_budget(cls, model: nn.Module, *, sparsity: float, total_steps: int, data=None,
                    optimizer: torch.optim.Optimizer | None = None, seed: int = 0, **kw: Any) -> "SET":
        """SET for a run of ``total_steps`` steps: ζ = 0.3 constant, an update every ``max(10, total_steps // 100)``
        steps (at most ``total_steps``; see ``dst.budget_defaults``) until 75 % of the run (the end RigL's reference gives every dynamic method; the last regrown weights
        then train for a quarter of the run), ERK random initial mask.  ``kw`` overrides any of these."""
        return cls(model, sparsity, **{**budget_defaults(total_steps), "data": data, "optimizer": optimizer,
                                       "seed": seed, **kw})
