"""Uniform structured allocation: every dependency group loses the same fraction of its units."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ...registry import register
from ..importance.base import Group
from .base import StructuredAllocation


@register("structured_allocation", "uniform")
class Uniform(StructuredAllocation):
    """Every group loses round(ratio × its units)."""

    def counts(self, scored: Sequence[tuple[Group, torch.Tensor]], ratio: float, max_ratio: float,
               seed: int) -> list[int]:
        return [int(round(ratio * g.units)) for g, _ in scored]
