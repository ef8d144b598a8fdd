"""What one layer must become, as decided by the allocation: a number of pruned groups, or N of every M kept."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LayerPlan:
    """``count`` groups of the pattern pruned (``sparsity`` = count / groups), or keep ``n`` of every ``m``."""

    count: int
    sparsity: float
    n: int | None = None
    m: int | None = None

    @property
    def is_nm(self) -> bool:
        return self.m is not None

    def describe(self) -> str:
        """``"N:M"`` or the sparsity, for reports."""
        return f"{self.n}:{self.m}" if self.is_nm else f"{self.sparsity:.4f}"
