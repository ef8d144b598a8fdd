"""Filter pruning via geometric median (He et al. 2019, "Filter Pruning via Geometric Median", eqs. 5-6): the
filters nearest the geometric median of a layer are the most replaceable.  As in the authors' code the median is
approximated by the filter with the smallest summed distance to all others, so a filter's importance is its summed
L2 distance Σ_j ||F_i − F_j||₂; it is computed on every member that produces the unit (the rows of a weight whose
first dimension the group spans)."""
from __future__ import annotations

import torch

from ...registry import register
from .base import Group, Importance, ImportanceContext, is_weight
from ..graph import Member


@register("importance", "fpgm")
class FPGM(Importance):
    """Summed distance of each filter to the layer's others (small = near the geometric median = pruned)."""

    def local(self, mem: Member, group: Group, ctx: ImportanceContext) -> torch.Tensor | None:
        if mem.dim != 0 or mem.param.dim() < 2 or not is_weight(mem, ctx):
            return None
        w = mem.param.detach().float()[mem.offset:mem.offset + group.units * mem.inner]
        f = w.reshape(group.units, -1)
        return torch.cdist(f[None], f[None])[0].sum(1)
