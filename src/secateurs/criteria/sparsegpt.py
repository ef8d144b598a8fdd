"""SparseGPT's mask selection (Frantar & Alistarh 2023, "SparseGPT: Massive Language Models Can Be Accurately
Pruned in One-Shot", Sec. 3.2 and Algorithm 1) as a criterion.

``method="sparsegpt"`` selects and updates together: by default the SparseGPT solver
(:mod:`secateurs.solvers.sparsegpt`) chooses the mask per 128-column block on the already-updated weights while it
applies the OBS update, exactly as the reference (IST-DASLab/sparsegpt@147d215 ``fasterprune``), at the layer
sparsity the allocation gives (``uniform`` by default).  Where a score is needed before the solver runs (an
allocation that ranks layers, such as ``global``, or an explicit ``scope=``), it is the OBS saliency the
reference ranks by, ``w² / [chol(H⁻¹)ᵀ]_jj²``, on the dense weights.
"""
from __future__ import annotations

from typing import Annotated

import torch

from ..core.targets import Target
from ..registry import option, register
from ..solvers.sparsegpt import hinv_factor
from .base import Criterion, ScoreContext, ScoreFn


def obs_scores(t: Target, stats: dict, percdamp: float = 0.01) -> torch.Tensor:
    """``w² / d_j²`` with ``d = diag(Hinv)`` (SparseGPT's selection score), in the weight's own layout."""
    hinv, dead = hinv_factor(stats["hessian"].value, percdamp, t.name)
    w = t.view2d(t.weight.detach()).float()
    s = w ** 2 / torch.diag(hinv).reshape(1, -1) ** 2
    s[:, dead] = 0  # SparseGPT zeroes the weights of inputs that never fire
    return t.unview2d(s)


@register("criterion", "sparsegpt")
class SparseGPTSelection(Criterion):
    """OBS saliency w²/[H⁻¹]_jj², chosen per 128-column block while the SparseGPT update runs (Frantar &
    Alistarh 2023, Alg. 1); needs calibration inputs."""

    stats = ("hessian",)
    default_scope = None  # the solver selects
    default_allocation = "uniform"
    solver = "sparsegpt"

    def __init__(self, percdamp: Annotated[float, option("Hessian dampening, as a fraction of its mean diagonal",
                                                       gt=0, lt=10)] = 0.01):
        self.percdamp = float(percdamp)

    def scores(self, ctx: ScoreContext) -> list[ScoreFn]:
        return [(lambda t=t, st=st: obs_scores(t, st, self.percdamp)) for t, st in zip(ctx.targets, ctx.stats)]
