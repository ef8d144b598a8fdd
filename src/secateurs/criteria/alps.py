"""ALPS's support selection (Meng, Behdin, Wang & Mazumder, NeurIPS 2024, "ALPS: Improved Optimization for
Highly Sparse One-Shot Pruning of LLMs") as a criterion.

``method="alps"`` selects and updates together: by default the ALPS solver (:mod:`secateurs.solvers.alps`)
chooses the support by ADMM with its ρ schedule and refits the kept weights by conjugate gradient, at the layer
sparsity the allocation gives (``uniform`` by default) or N:M.  Where a score is needed before the solver runs
(an allocation that ranks layers, such as ``global``, or an explicit ``scope=``), it is what ALPS's ADMM starts
from (mazumder-lab/ALPS@8af9e6b ``alps.py`` ``ALPS_admm``, the initial ``D``): the weight scaled by the input
column norm of the ridge-regularised ``XᵀX``, ``|W_ij| · sqrt(H_jj + percdamp·mean(diag H))`` — the reference
keeps the largest squares of ``W·X_norm`` over the whole layer.  (H here is ``(2/n)·XᵀX``; a per-layer constant
factor changes no ranking within a layer.)
"""
from __future__ import annotations

from typing import Annotated

import torch

from ..core.targets import Target
from ..registry import option, register
from .base import Criterion, ScoreContext, ScoreFn


def alps_scores(t: Target, stats: dict, percdamp: float = 0.01) -> torch.Tensor:
    """``|W| · sqrt(diag H + percdamp·mean(diag H))`` (ALPS's initial support score), in the weight's layout."""
    diag = torch.diagonal(stats["hessian"].value).float()
    x_norm = (diag + percdamp * diag.mean()).sqrt()
    w = t.view2d(t.weight.detach()).float()
    return t.unview2d(w.abs() * x_norm.reshape(1, -1))


@register("criterion", "alps")
class ALPSSelection(Criterion):
    """ADMM support selection + conjugate-gradient refit (Meng et al. 2024); score |W|·||X_j|| when ranked."""

    stats = ("hessian",)
    default_scope = None  # the solver selects
    default_allocation = "uniform"
    solver = "alps"

    def __init__(self, percdamp: Annotated[float, option("ridge added to XᵀX, as a fraction of its mean diagonal",
                                                       gt=0, lt=10)] = 0.01):
        self.percdamp = float(percdamp)

    def options(self) -> dict:
        return {"percdamp": self.percdamp}

    def scores(self, ctx: ScoreContext) -> list[ScoreFn]:
        return [(lambda t=t, st=st: alps_scores(t, st, self.percdamp)) for t, st in zip(ctx.targets, ctx.stats)]
