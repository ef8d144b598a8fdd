"""Angular distance (Gromov, Tirumala, Shapourian, Glorioso & Roberts 2024, "The Unreasonable Ineffectiveness of
the Deeper Layers", eq. 7): d(x_l, x_{l+n}) = arccos(cos(x_l, x_{l+n})) / π between the input of block l and of
block l+n; the ``n`` consecutive blocks with the smallest distance are removed together."""
from __future__ import annotations

import torch

from ...errors import ModelStructureError
from ...registry import register
from .base import LayerContext, LayerScore, cos


@register("layer_score", "angular")
class Angular(LayerScore):
    """Gromov et al. 2024 (eq. 7): remove the n consecutive blocks whose input and output are closest in angle."""

    def select(self, ctx: LayerContext, n: int) -> tuple[list[int], list[float | None]]:
        ok = set(ctx.removable)
        scores: list[float | None] = [None] * len(ctx.blocks)
        best = None
        for i in range(len(ctx.blocks) - n + 1):
            if not all(j in ok for j in range(i, i + n)):
                continue
            d = sum(float(torch.arccos(cos(s[i], s[i + n]).clamp(-1, 1)) / torch.pi) for s in ctx.inputs)
            scores[i] = d / len(ctx.inputs)
            if best is None or scores[i] < scores[best]:
                best = i
        if best is None:
            raise ModelStructureError(f"no {n} consecutive blocks of {ctx.path!r} all keep their input's shape")
        return list(range(best, best + n)), scores
