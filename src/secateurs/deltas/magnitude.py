"""Magnitude pruning of the delta: keep the ``1 − p`` largest ``|Δ|`` of each tensor (the baseline of Yu et al.
2024, Table 2 "magnitude-based pruning", and the trim step of TIES, Yadav et al. 2023), not rescaled."""
from __future__ import annotations

import torch

from ..core.select import prune_lowest
from ..registry import register
from .base import DeltaMethod


@register("delta", "magnitude")
class MagnitudeDelta(DeltaMethod):
    """Keep the largest |delta| of each tensor (exactly round(p·n) pruned, ties in flat order); never rescaled."""

    def sparsify(self, name: str, delta: torch.Tensor, sparsity: float, rescale: bool,
                 generator: torch.Generator) -> tuple[torch.Tensor, float]:
        k = int(round(sparsity * delta.numel()))
        if k:
            delta.masked_fill_(prune_lowest(delta.abs(), k), 0.0)
        return delta, 1.0
