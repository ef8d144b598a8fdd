"""Width pruning: remove attention heads (whole key/value groups under grouped-query attention, Ainslie et al. 2023)
and MLP neurons of every block by a structured importance, to uniform or given per-layer widths — the
"width" axis of Minitron (Muralidharan et al. 2024) and of LLM-Pruner / Wanda-sp / FLAP's UL-UM baselines.

Importance (``importance=``), higher = keep, one score per key/value group and per neuron:

* ``wanda`` (default) or any engine criterion that reads calibration statistics: its per-weight scores summed
  over the unit's slice of every member layer (q/k/v rows + o columns; gate/up rows + down column) — for Wanda
  ``Σ |W_ij|·||X_j||`` (Sun et al. 2023, eq. 1; activation-weighted, the structured reading of FLAP's
  ``wanda_sp``), computed block by block on the outputs of the already pruned blocks before it;
* ``flap``: FLAP's fluctuation metric (An et al. 2024, eq. 5) of o_proj / down_proj inputs, per layer;
* ``l2`` (DepGraph, Fang et al. 2023, eq. 5), ``taylor`` (Molchanov et al. 2019: (Σ g·w)² over the unit, one
  backward pass of the whole model on the calibration rows), ``l1``, ``fpgm``, ``random`` or any registered
  ``importance``, or any other criterion summed per unit, scored on the whole dense model first.

Widths: from ``sparsity`` (fraction of the blocks' parameters), the same in every layer — ``round(s·kv_heads)``
key/value groups go (``attention=False``: none) and the MLP gives up the rest of the budget, its width rounded
to a multiple of ``multiple`` (8) — or given: ``heads`` (query heads kept; a multiple of the key/value group size)
and/or ``intermediate`` (neurons kept), each an int for every layer or a list of one per layer.  Uniform widths
give a stock config; per-layer widths load with :func:`secateurs.llm.load_pruned`.  ``bias=True`` adds FLAP's
bias compensation (eq. 7) from the mean inputs of the removed units.
"""
from __future__ import annotations

from typing import Annotated, Any

import torch

from ... import registry
from ...criteria.base import ScoreContext
from ...core.targets import Target
from ...registry import option, register
from ...structured import importance as imp
from ...structured.importance.base import Group, ImportanceContext, per_unit, reduce_members
from .base import Layout, StructuredContext, StructuredMethod, WidthError, cut, keep_top
from .flap import fluctuation


def _per_layer(value: int | list[int] | None, n: int, what: str) -> list[int] | None:
    if value is None:
        return None
    vals = [value] * n if isinstance(value, int) else list(value)
    if len(vals) != n:
        raise WidthError(f"{what} lists {len(vals)} widths for a model of {n} layers; give one per layer or one int")
    return [int(v) for v in vals]


@register("llm_structured", "width")
class Width(StructuredMethod):
    """Width pruning: key/value groups and MLP neurons by any structured importance (wanda, flap, l2, taylor...),
    uniform widths from the sparsity or given per-layer widths."""

    def __init__(self,
                 importance: Annotated[str, option("wanda | flap | l2 | taylor | any importance or criterion")] =
                 "wanda",
                 heads: Annotated[int | list[int] | None, option("query heads kept (every layer, or one per "
                                                                 "layer); a multiple of the KV group")] = None,
                 intermediate: Annotated[int | list[int] | None, option("MLP neurons kept (every layer, or one "
                                                                        "per layer)")] = None,
                 multiple: Annotated[int, option("MLP width rounded to a multiple of this", ge=1)] = 8,
                 attention: Annotated[bool, option("remove heads too when widths come from the sparsity")] = True,
                 bias: Annotated[bool, option("FLAP's bias compensation from the removed units' mean inputs")] =
                 False,
                 importance_options: Annotated[dict[str, Any] | None, option("options of the importance")] = None):
        self.importance, self.heads, self.intermediate = importance, heads, intermediate
        self.multiple, self.attention, self.bias = multiple, attention, bias
        self.importance_options = dict(importance_options or {})
        self._streamed = importance == "flap" or (
            importance in registry.names("criterion") and importance not in registry.names("importance")
            and importance not in imp.ALIASES and not registry.get("criterion", importance).needs_data
            and bool(registry.get("criterion", importance).stats))
        self._imp: Any = None
        self._crit: Any = None
        if importance != "flap":
            self._imp = None if self._streamed else imp.build(importance, self.importance_options)
            self._crit = registry.build("criterion", importance, self.importance_options) if self._streamed else None

    @property
    def needs_data(self) -> bool:  # type: ignore[override]
        return self.bias or self._streamed or bool(getattr(self._imp, "needs_data", False))

    # ------------------------------------------------------------------------------------------------ widths
    def widths(self, ctx: StructuredContext) -> list[tuple[int, int]]:
        """Per layer (key/value groups kept, neurons kept), checked before anything is touched."""
        lays, L = ctx.layouts, len(ctx.layouts)
        heads = _per_layer(self.heads, L, "heads")
        inter = _per_layer(self.intermediate, L, "intermediate")
        if heads is None and inter is None and ctx.sparsity is None:
            raise WidthError("width pruning needs sparsity= or the widths heads= / intermediate=")
        out = []
        for i, lay in enumerate(lays):
            g, n = lay.kv_heads, lay.intermediate
            if heads is not None:
                h = heads[i]
                if h % lay.rep or not 0 < h <= lay.heads:
                    raise WidthError(f"layer {i}: heads={h} cannot be kept: it must be a positive multiple of the "
                                     f"key/value group size {lay.rep} (grouped-query attention: {lay.heads} query "
                                     f"heads share {lay.kv_heads} key/value heads) and at most {lay.heads}")
                g = h // lay.rep
            if inter is not None:
                if not 0 < inter[i] <= lay.intermediate:
                    raise WidthError(f"layer {i}: intermediate={inter[i]} must be in [1, {lay.intermediate}]")
                n = inter[i]
            if heads is None and inter is None:
                g, n = self._uniform(ctx, lay, i)
            out.append((g, n))
        return out

    def _uniform(self, ctx: StructuredContext, lay: Layout, i: int) -> tuple[int, int]:
        s = float(ctx.sparsity or 0.0)
        budget = s * sum(p.numel() for p in lay.block.parameters())
        gp, cp = lay.unit_params(lay.head_space()), lay.unit_params(lay.mlp_space())
        rg = int(round(s * lay.kv_heads)) if self.attention else 0
        if rg >= lay.kv_heads:
            raise WidthError(f"sparsity {s} would remove every attention head of layer {i} ({lay.kv_heads} key/value "
                             f"groups); lower it, pass attention=False, or remove whole layers (method='shortgpt')")
        kept = lay.intermediate - max(budget - rg * gp, 0.0) / cp
        n = int(round(kept / self.multiple)) * self.multiple
        n = min(max(n, 0), lay.intermediate)
        if n <= 0:
            raise WidthError(f"sparsity {s} would remove every MLP neuron of layer {i}; lower it")
        return lay.kv_heads - rg, n

    # ------------------------------------------------------------------------------------------------ scores
    def _streamed_scores(self, lay: Layout, targets: list[torch.nn.Module], stats: list[dict[str, Any]],
                         ctx: StructuredContext) -> tuple[torch.Tensor, torch.Tensor]:
        if self.importance == "flap":
            o, down = lay.outputs()
            a = fluctuation(o.weight, stats[len(targets) - 2]) ** 2
            return a.reshape(lay.kv_heads, -1).sum(1), fluctuation(down.weight, stats[len(targets) - 1])
        tg = [Target(str(k), m) for k, m in enumerate(targets)]
        sctx = ScoreContext(lay.block, tg, None, ctx.seed, stats=stats, extra={})
        self._crit.prepare(sctx)
        per_weight = {id(m.weight): fn() for m, fn in zip(targets, self._crit.scores(sctx))}
        out = []
        for space in (lay.head_space(), lay.mlp_space()):
            parts = [per_unit(mem, per_weight[id(mem.param)], space.size) for mem in space.members
                     if id(mem.param) in per_weight]
            out.append(reduce_members(parts, "sum").cpu())
        return out[0], out[1]

    def _whole_model_scores(self, ctx: StructuredContext) -> list[tuple[torch.Tensor, torch.Tensor]]:
        names = {id(p): n for n, p in ctx.model.named_parameters()}
        groups = []
        for lay in ctx.layouts:
            for space in (lay.head_space(), lay.mlp_space()):
                groups.append(Group(space, [names.get(id(m.param), "?") for m in space.members]))
        feed = ctx.feed if getattr(self._imp, "needs_data", False) else None
        if getattr(self._imp, "needs_data", False):
            ctx.need_feed(f"importance {self.importance!r}")
        scores = self._imp.scores(ImportanceContext(ctx.model, groups, names, feed, ctx.seed))
        return [(scores[2 * i].cpu(), scores[2 * i + 1].cpu()) for i in range(len(ctx.layouts))]

    def run(self, ctx: StructuredContext) -> dict[str, Any]:
        widths = self.widths(ctx)
        if all((g, n) == (lay.kv_heads, lay.intermediate) for (g, n), lay in zip(widths, ctx.layouts)):
            return {"kept_groups": [g for g, _ in widths], "kept_neurons": [n for _, n in widths]}
        pre = None if self._streamed else self._whole_model_scores(ctx)
        if not self._streamed and not self.bias:
            for lay, (g, n), (a, m) in zip(ctx.layouts, widths, pre):
                cut(lay, keep_top(a, g), keep_top(m, n))
        else:
            kinds = set(self._crit.stats if self._crit is not None else ("mean_var_row",))
            if self.bias:
                kinds.add("mean_var_row")
            members = {}

            def targets(lay: Layout) -> list[torch.nn.Module]:
                s = lay.spec
                lst = ([s.q, s.k, s.v, s.o, lay.mlp.gate_proj, lay.mlp.up_proj, lay.mlp.down_proj]
                       if self._crit is not None else [s.o, lay.mlp.down_proj])
                members[lay.index] = lst
                return lst

            def prune(i: int, _block: Any, stats: list[dict[str, Any]]) -> None:
                lay, tg = ctx.layouts[i], members[i]
                a, m = pre[i] if pre is not None else self._streamed_scores(lay, tg, stats, ctx)
                o_st, d_st = stats[tg.index(lay.spec.o)], stats[tg.index(lay.mlp.down_proj)]
                cut(lay, keep_top(a, widths[i][0]), keep_top(m, widths[i][1]),
                    o_st["mean_var_row"].mean if self.bias else None, d_st["mean_var_row"].mean if self.bias else None)

            ctx.walk(targets, sorted(kinds), prune, modifies=True, description=f"width ({self.importance})")
        return {"kept_groups": [g for g, _ in widths], "kept_neurons": [n for _, n in widths]}

    def check(self, ctx: StructuredContext) -> None:
        self.widths(ctx)
