"""Random channel importance: the naive baseline every structured method must beat ("Revisiting Random Channel
Pruning for Neural Network Compression", Li et al. 2022).  Seeded: the same seed gives the same channels."""
from __future__ import annotations

import torch

from ...registry import register
from .base import Importance, ImportanceContext


@register("importance", "group_random")
class Random(Importance):
    """Uniform random scores per unit, from ``seed``."""

    def scores(self, ctx: ImportanceContext) -> list[torch.Tensor | None]:
        gen = torch.Generator().manual_seed(ctx.seed)
        return [torch.rand(g.units, generator=gen) for g in ctx.groups]
