"""Random pruning: i.i.d. uniform scores — the naive baseline that sparse-training papers keep rediscovering
(Liu et al. 2022, "The Unreasonable Effectiveness of Random Pruning")."""
from __future__ import annotations

import torch

from ..registry import register
from .base import Criterion, ScoreContext, ScoreFn


@register("criterion", "random")
class Random(Criterion):
    """Uniform random scores, reproducible from `seed` (per layer, independent of the others)."""

    def scores(self, ctx: ScoreContext) -> list[ScoreFn]:
        def fn(i, t):
            g = torch.Generator().manual_seed(ctx.seed * 1_000_003 + i)
            return torch.rand(t.shape, generator=g).to(t.leaf.device)

        return [(lambda i=i, t=t: fn(i, t)) for i, t in enumerate(ctx.targets)]
