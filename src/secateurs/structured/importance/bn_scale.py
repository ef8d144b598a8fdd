"""Network slimming (Liu et al. 2017, "Learning Efficient Convolutional Networks through Network Slimming", §3.2):
a channel's importance is |γ|, the scale of the BatchNorm that follows its convolution.  Groups with no BatchNorm
get no score and stay unpruned (as in the paper, which prunes only BN-gated channels)."""
from __future__ import annotations

import torch
from torch import nn

from ...registry import register
from .base import Group, Importance, ImportanceContext, per_unit
from ..graph import Member


@register("importance", "bn_scale")
class BNScale(Importance):
    """|γ| of the group's BatchNorm layers."""

    def scores(self, ctx: ImportanceContext) -> list[torch.Tensor | None]:
        self.bn = {id(m.weight) for m in ctx.model.modules()
                   if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None}
        return super().scores(ctx)

    def local(self, mem: Member, group: Group, ctx: ImportanceContext) -> torch.Tensor | None:
        return per_unit(mem, mem.param.abs(), group.units) if id(mem.param) in self.bn else None
