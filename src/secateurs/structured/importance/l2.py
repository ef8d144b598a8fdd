"""Squared-L2 group importance (Fang et al. 2023, DepGraph eq. 5 with p=2; Torch-Pruning's default
``GroupMagnitudeImportance``): Σ w² over the unit's weights in every member layer, i.e. the squared L2 norm of
the whole group slice when reduced with ``sum``."""
from __future__ import annotations

import torch

from ...registry import register
from .base import Group, Importance, ImportanceContext, is_weight, per_unit
from ..graph import Member


@register("importance", "l2")
class L2(Importance):
    """Σ w² over the unit's weights in every member layer."""

    def local(self, mem: Member, group: Group, ctx: ImportanceContext) -> torch.Tensor | None:
        return per_unit(mem, mem.param.float() ** 2, group.units) if is_weight(mem, ctx) else None
