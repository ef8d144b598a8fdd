"""Uniform allocation: the same sparsity in every layer (Zhu & Gupta 2017 and most one-shot baselines)."""
from __future__ import annotations

from collections.abc import Sequence

from ..core.select import Threshold
from ..registry import register
from .base import Allocation, LayerInfo, split_exactly


@register("allocation", "uniform")
class Uniform(Allocation):
    """Same sparsity in every layer (rounded so the total is exact, within one weight per layer)."""

    def counts(self, layers: Sequence[LayerInfo], budget: int, seed: int) -> tuple[list[int], list[Threshold | None]]:
        sizes = [l.n_groups for l in layers]
        return split_exactly(sizes, sizes, budget), [None] * len(layers)
