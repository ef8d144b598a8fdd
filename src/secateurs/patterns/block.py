"""Block pattern: R x C tiles of the 2-D weight view are kept or removed whole.

A block's score is the sum of its elements' scores (Gray et al. 2017 block-sparse kernels; Narang et al. 2017).
Edge blocks of a weight whose size is not a multiple of the block are scored by their sum scaled up to a full
block (``sum * R*C / n_elements``), so a ragged block is neither favoured nor penalised for being small.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import PatternError
from .base import Pattern


class Block(Pattern):
    """Keep or remove whole R x C blocks of weights."""

    def __init__(self, r: int, c: int):
        if r < 1 or c < 1 or r * c < 2:
            raise PatternError(f"block pattern needs R, C >= 1 and at least 2 weights per block, got {r}x{c}")
        self.r, self.c = r, c
        self.name = f"{r}x{c}"

    def _grid(self, shape2d: tuple[int, int]) -> tuple[int, int]:
        return math.ceil(shape2d[0] / self.r), math.ceil(shape2d[1] / self.c)

    def grid(self, shape2d: tuple[int, int]) -> tuple[int, int]:
        return self._grid(shape2d)

    def n_groups(self, shape2d: tuple[int, int]) -> int:
        gr, gc = self._grid(shape2d)
        return gr * gc

    def group_size(self, shape2d: tuple[int, int]) -> float:
        return shape2d[0] * shape2d[1] / self.n_groups(shape2d)

    def group_scores(self, scores2d: torch.Tensor) -> torch.Tensor:
        x = scores2d.float()[None, None]
        total = F.avg_pool2d(x, (self.r, self.c), ceil_mode=True, divisor_override=1)
        count = F.avg_pool2d(torch.ones_like(x), (self.r, self.c), ceil_mode=True, divisor_override=1)
        return (total * (self.r * self.c) / count).reshape(-1)

    def expand(self, group_keep: torch.Tensor, shape2d: tuple[int, int]) -> torch.Tensor:
        gr, gc = self._grid(shape2d)
        full = group_keep.reshape(gr, gc).repeat_interleave(self.r, 0).repeat_interleave(self.c, 1)
        return full[: shape2d[0], : shape2d[1]].contiguous()

    def validate(self, layer: str, shape2d: tuple[int, int]) -> None:
        if self.r > shape2d[0] or self.c > shape2d[1]:
            raise PatternError(f"layer {layer!r}: block {self.name} is larger than its weight view {shape2d}")
