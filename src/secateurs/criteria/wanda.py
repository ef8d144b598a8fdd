"""Wanda: pruning by weights and activations (Sun, Liu, Bair & Kolter 2023, "A Simple and Effective Pruning
Approach for Large Language Models", eq. 1).

Score ``S_ij = |W_ij| · ||X_j||₂``, computed as in locuslab/wanda@8e8fc87 lib/prune.py ``prune_wanda`` as
``|W| · sqrt(scaler_row)``, where ``scaler_row`` is the running mean over calibration samples of ``||X_j||²``
(lib/layerwrapper.py) — the same ranking, up to a constant.  The paper's comparison group is one output row
(``scope="row"``: the ``int(cols·s)`` lowest scores of every row are removed, stable sort) with the same sparsity
in every layer (``allocation="uniform"``); N:M removes the lowest M−N of every M consecutive inputs of a row.
Any other scope, allocation or pattern composes with the same score.
"""
from __future__ import annotations

import torch

from ..core.targets import Target
from ..registry import register
from .base import Criterion, ScoreContext, ScoreFn


def wanda_scores(weight2d: torch.Tensor, scaler_row: torch.Tensor) -> torch.Tensor:
    """``|W| · sqrt(scaler_row)`` (Sun et al. 2023, eq. 1) for an (out, in) weight, in float32."""
    return weight2d.float().abs() * torch.sqrt(scaler_row.reshape(1, -1).to(weight2d.device))


def layer_wanda_scores(t: Target, stats: dict) -> torch.Tensor:
    """Wanda scores of target ``t`` in the weight's own layout (the input norms come from ``stats``)."""
    return t.unview2d(wanda_scores(t.view2d(t.weight.detach()), stats["scaler_row"].value))


@register("criterion", "wanda")
class Wanda(Criterion):
    """|W|·||X_j||₂, compared within each output row (Sun et al. 2023, eq. 1); needs calibration inputs."""

    stats = ("scaler_row",)
    default_scope = "row"
    default_allocation = "uniform"

    def scores(self, ctx: ScoreContext) -> list[ScoreFn]:
        return [(lambda t=t, st=st: layer_wanda_scores(t, st)) for t, st in zip(ctx.targets, ctx.stats)]
