"""Block Influence (Men et al. 2024, "ShortGPT: Layers in Large Language Models are More Redundant Than You
Expect", eq. 2): BI_l = 1 − E[cos(x_l, x_{l+1})]; the blocks that change their input least are removed."""
from __future__ import annotations

from ...registry import register
from .base import LayerContext, LayerScore, lowest


@register("layer_score", "bi")
class BlockInfluence(LayerScore):
    """ShortGPT's Block Influence, 1 − cos(input, output) of each block (Men et al. 2024, eq. 2); lowest go."""

    def select(self, ctx: LayerContext, n: int) -> tuple[list[int], list[float | None]]:
        scores = list(ctx.influence)
        return lowest(scores, ctx.removable, n), scores
