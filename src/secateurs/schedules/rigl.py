"""RigL: Rigging the Lottery (Evci, Gale, Menick, Castro & Elsen 2020, "Rigging the Lottery: Making All Tickets
Winners", ICML)."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..registry import register
from .dst import SparseToSparse, budget_defaults


@register("schedule", "rigl")
class RigL(SparseToSparse):
    """RigL: every ΔT steps drop the fraction f_t of each layer's smallest-|θ| connections and grow as many where
    the dense gradient |∂L/∂θ| is largest (Evci et al. 2020, Alg. 1), f_t = f0/2·(1 + cos(π t/T_end)) (Eq. 1).

    Defaults from google-research/rigl@d39fc7d: f0 = 0.3 (``drop_fraction``), ΔT = 100 (``maskupdate_frequency``),
    cosine decay, new connections start at zero with their momentum reset (``grow_init='zeros'``), Erdős–Rényi-
    Kernel random initial mask over every layer (the README's ERK models).  ``end_step`` is T_end, the last step
    that may update the masks (reference ImageNet: 25,000).  The dense gradient is that of the update step's own
    batch (``SparseRigLOptimizerBase.compute_gradients``), captured only for that step's backward.

    Deviation: on an update step the reference applies the mask update *instead of* the optimizer step; here the
    optimizer step has already run when ``pruner.step()`` is called, so the update uses the same gradient after it.
    """

    grows_by_gradient = True

    def __init__(self, model: nn.Module, sparsity: float, end_step: int, *, frequency: int = 100,
                 drop_fraction: float = 0.3, anneal: str = "cosine", start_step: int = 0, allocation: str = "erk",
                 init_method: str = "random", dense=None, data=None, targets=None, ignore=None, seed: int = 0,
                 optimizer: torch.optim.Optimizer | None = None):
        super().__init__(model, sparsity, end_step=end_step, frequency=frequency, drop_fraction=drop_fraction,
                         anneal=anneal, start_step=start_step, allocation=allocation, init_method=init_method,
                         dense=dense, data=data, targets=targets, ignore=ignore, seed=seed, optimizer=optimizer)

    @classmethod
    def from_budget(cls, model: nn.Module, *, sparsity: float, total_steps: int, data=None,
                    optimizer: torch.optim.Optimizer | None = None, seed: int = 0, **kw: Any) -> "RigL":
        """RigL for a run of ``total_steps`` steps: f0 = 0.3 cosine-decayed to zero at T_end = 75 % of the run, an
        update every ``max(10, total_steps // 100)`` steps (``dst.budget_defaults``), ERK random initial mask.  ``kw`` overrides these."""
        return cls(model, sparsity, **{**budget_defaults(total_steps), "data": data, "optimizer": optimizer,
                                       "seed": seed, **kw})
