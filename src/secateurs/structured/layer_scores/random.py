"""A seeded random choice of blocks: the baseline every layer-pruning score must beat."""
from __future__ import annotations

import torch

from ...registry import register
from .base import LayerContext, LayerScore


@register("layer_score", "random")
class RandomLayers(LayerScore):
    """n removable blocks drawn uniformly at random from ``seed`` (no scores)."""

    def select(self, ctx: LayerContext, n: int) -> tuple[list[int], list[float | None]]:
        gen = torch.Generator().manual_seed(ctx.seed)
        perm = torch.randperm(len(ctx.removable), generator=gen).tolist()
        return sorted(ctx.removable[p] for p in perm[:n]), [None] * len(ctx.blocks)
