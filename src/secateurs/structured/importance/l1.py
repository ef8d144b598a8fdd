"""L1-norm filter importance (Li et al. 2017, "Pruning Filters for Efficient ConvNets", §3.1: s_j = Σ|F_j|),
summed over every weight of the group: the group's L1 norm per unit."""
from __future__ import annotations

import torch

from ...registry import register
from .base import Group, Importance, ImportanceContext, is_weight, per_unit
from ..graph import Member


@register("importance", "l1")
class L1(Importance):
    """Σ|w| over the unit's weights in every member layer."""

    def local(self, mem: Member, group: Group, ctx: ImportanceContext) -> torch.Tensor | None:
        return per_unit(mem, mem.param.abs(), group.units) if is_weight(mem, ctx) else None
