"""Group importance: one score per prunable unit (channel, neuron, head) of a dependency group.

A *local* score per member parameter is reduced over the member's slice of each unit (``inner`` elements along
its dimension, everything along the others), then the members' scores are combined into the group's with
``reduction`` (``sum`` / ``mean`` / ``max``), as Torch-Pruning's group importance does (Fang et al. 2023, eq. 5).
Registered under the kind ``importance``; any engine ``criterion`` name (magnitude, taylor, wanda, snip...) is an
importance too: its per-weight scores are summed over each unit (:mod:`.criterion`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import torch
from torch import nn

from ...core.feed import Feed
from ...registry import option
from ..graph import Member, Space


@dataclass(eq=False)
class Group:
    """A set of coupled dimensions removed together: ``units`` channels (or heads) of ``space``."""

    space: Space
    names: list[str]  # the parameters it spans, e.g. "layer1.0.conv1.weight[0]"
    units: int = field(init=False)
    kind: str = field(init=False)

    def __post_init__(self) -> None:
        self.units, self.kind = self.space.size, self.space.kind

    @property
    def members(self) -> list[Member]:
        return self.space.members


@dataclass
class ImportanceContext:
    model: nn.Module
    groups: list[Group]
    names: dict[int, str]  # id(parameter) -> its name in the model
    feed: Feed | None = None
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def per_unit(mem: Member, values: torch.Tensor, units: int, how: str = "sum") -> torch.Tensor:
    """Reduce ``values`` (shaped like the member's parameter) to one number per unit of the member's slice."""
    v = values.detach().float().movedim(mem.dim, 0)
    v = v[mem.offset:mem.offset + units * mem.inner].reshape(units, -1)
    return v.sum(1) if how == "sum" else v.amax(1)


def reduce_members(scores: list[torch.Tensor], reduction: str) -> torch.Tensor | None:
    if not scores:
        return None
    s = torch.stack(scores)
    return s.sum(0) if reduction == "sum" else s.mean(0) if reduction == "mean" else s.amax(0)


class Importance:
    """Base class: :meth:`scores` returns, per group, a float tensor of ``group.units`` scores (higher = keep) or
    None when the importance has nothing to say about a group (it is then left unpruned)."""

    needs_data = False

    def __init__(self, reduction: Annotated[Literal["sum", "mean", "max"],
                                            option("how the members' scores combine into the group's")] = "sum"):
        self.reduction = reduction

    def options(self) -> dict[str, Any]:
        return {"reduction": self.reduction}

    def local(self, mem: Member, group: Group, ctx: ImportanceContext) -> torch.Tensor | None:
        """Per-unit score of one member (None: the member does not count)."""
        raise NotImplementedError

    def scores(self, ctx: ImportanceContext) -> list[torch.Tensor | None]:
        out = []
        for g in ctx.groups:
            parts = [s for m in g.members if (s := self.local(m, g, ctx)) is not None]
            out.append(reduce_members(parts, self.reduction))
        return out


def is_weight(mem: Member, ctx: ImportanceContext) -> bool:
    """Weights (of Linear, Conv, norm layers...), not biases or running statistics."""
    return ctx.names.get(id(mem.param), "").rsplit(".", 1)[-1] == "weight" or \
        ctx.names.get(id(mem.param), "").endswith("in_proj_weight")
