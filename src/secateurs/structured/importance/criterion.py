"""Any engine criterion as a group importance: its per-weight scores (|W|·||X|| for Wanda, |w·g| for Taylor, the
SNIP saliency, |w| for magnitude...) summed over each unit's slice of every member weight the criterion scores,
then combined over members with the group reduction.  This is how Wanda-style activation-aware channel pruning
(score of channel j = Σ_i |W_ij|·||X_j||, as FLAP and Wanda-sp reduce it) comes from the one Wanda
implementation."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...core.modes import eval_mode
from ...core.stats import check_collectable, collect
from ...core.targets import Target
from ...criteria.base import Criterion, ScoreContext
from ...errors import MissingDataError
from ... import registry
from .base import Group, Importance, ImportanceContext, per_unit
from ..graph import Member


class CriterionImportance(Importance):
    """Per-unit sums of an engine criterion's per-weight scores."""

    def __init__(self, criterion: str, reduction: str = "sum", **options: Any):
        super().__init__(reduction)
        self.name = criterion
        self.crit: Criterion = registry.build("criterion", criterion, options)
        self.needs_data = bool(self.crit.needs_data or self.crit.stats)

    def options(self) -> dict[str, Any]:
        return {"criterion": self.name, **self.crit.options(), "reduction": self.reduction}

    def scores(self, ctx: ImportanceContext) -> list[torch.Tensor | None]:
        if self.needs_data and ctx.feed is None:
            raise MissingDataError(f"importance {self.name!r} needs data: pass data=<iterable of batches>")
        ids = {id(m.param) for g in ctx.groups for m in g.members}
        targets = [Target(n, m) for n, m in ctx.model.named_modules()
                   if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)) and id(m.weight) in ids]
        stats: list[dict] = [{} for _ in targets]
        if self.crit.stats:
            for t in targets:
                check_collectable(t)
            dev = targets[0].leaf.device
            with collect(targets, self.crit.stats, dev) as stats, eval_mode(ctx.model), torch.no_grad():
                for batch in ctx.feed:
                    ctx.feed.forward(ctx.model, batch, dev)
        sctx = ScoreContext(ctx.model, targets, ctx.feed, ctx.seed, stats=stats, extra={})
        self.crit.prepare(sctx)
        self.per_weight = {id(t.leaf): fn() for t, fn in zip(targets, self.crit.scores(sctx))}
        return super().scores(ctx)

    def local(self, mem: Member, group: Group, ctx: ImportanceContext) -> torch.Tensor | None:
        s = self.per_weight.get(id(mem.param))
        return None if s is None else per_unit(mem, s, group.units)
