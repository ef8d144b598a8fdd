"""First-order Taylor group importance (Molchanov et al. 2019, "Importance Estimation for Neural Network Pruning",
eq. 8 with the group sum of §3.2): removing a whole unit changes the loss by about (Σ_{s ∈ unit} g_s w_s)², the sum
running over every weight, bias and BatchNorm parameter of the unit in every member layer; the estimate is summed
over calibration batches, as the authors' code accumulates it over minibatches."""
from __future__ import annotations

import torch

from ...core.targets import Target
from ...criteria.base import ScoreContext, batch_gradients, zero_if_none
from ...errors import MissingDataError
from ...registry import register
from .base import Importance, ImportanceContext, per_unit


def _targets(ctx: ImportanceContext) -> list[Target]:
    """Every member parameter as an engine Target (module + attribute), so the engine's gradients serve."""
    where = {}
    for mname, m in ctx.model.named_modules():
        for pname, p in m.named_parameters(recurse=False):
            where.setdefault(id(p), Target(mname, m, pname))
    seen, out = set(), []
    for g in ctx.groups:
        for mem in g.members:
            if id(mem.param) in where and id(mem.param) not in seen:
                seen.add(id(mem.param))
                out.append(where[id(mem.param)])
    return out


@register("importance", "group_taylor")
class Taylor(Importance):
    """(Σ_unit g·w)², summed over batches; needs data."""

    needs_data = True

    def scores(self, ctx: ImportanceContext) -> list[torch.Tensor | None]:
        if ctx.feed is None:
            raise MissingDataError("importance 'taylor' needs data: pass data=<iterable of (inputs, targets)>")
        targets = _targets(ctx)
        index = {id(t.leaf): i for i, t in enumerate(targets)}
        acc = [torch.zeros(g.units) for g in ctx.groups]
        for grads in batch_gradients(ScoreContext(ctx.model, targets, ctx.feed, ctx.seed)):
            grads = zero_if_none(grads, targets)
            for a, g in zip(acc, ctx.groups):
                s = torch.zeros(g.units)
                for mem in g.members:
                    i = index.get(id(mem.param))
                    if i is not None:
                        s += per_unit(mem, grads[i] * mem.param.detach(), g.units).cpu()
                a += s ** 2
        return acc
