"""Global allocation: one score threshold over every targeted layer (the LTH/SNIP/SynFlow default)."""
from __future__ import annotations

from collections.abc import Sequence

from ..core.select import Threshold, count_pruned_split, kth_threshold
from ..registry import register
from .base import Allocation, LayerInfo


@register("allocation", "global")
class Global(Allocation):
    """One threshold across all layers: prune the lowest-scoring groups wherever they are."""

    needs_scores = True

    def counts(self, layers: Sequence[LayerInfo], budget: int, seed: int) -> tuple[list[int], list[Threshold | None]]:
        chunks = [l.scores for l in layers]
        th = kth_threshold(chunks, [l.n_groups for l in layers], budget, seed)
        return count_pruned_split(chunks, th)
