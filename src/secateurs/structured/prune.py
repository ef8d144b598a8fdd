"""``secateurs.structured.prune``: remove channels, neurons and heads physically, from any architecture.

Flow: trace the model on the example inputs (:mod:`.trace`) → dependency groups (coupled dimensions, DepGraph,
Fang et al. 2023) → importance per unit of each group (:mod:`.importance`; any engine criterion too) → how many
units each group loses (``allocation``: ``uniform`` or ``global``, or a MACs/parameter target) → surgery
(:mod:`.surgery`) → a check that the smaller model runs on the example inputs and gives outputs of the same
shapes; any failure restores the model exactly.
"""
from __future__ import annotations

import fnmatch
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.utils import parametrize

from .allocations import build as build_allocation
from ..core.feed import Feed
from ..core.finite import all_finite
from ..core.modes import eval_mode
from .._compat import renamed
from ..errors import (InvalidArgumentError, MissingDataError, ModelStructureError, NonFiniteError, PruningError,
                      UnreachableTargetError)
from .attention import find_adapters, heads_after, set_split_heads, split_modules
from .count import count_macs, count_params
from .graph import Space, fix, leaves
from .importance import Group, ImportanceContext, build as build_importance
from .hf import sync_config
from .compensation import resolve as resolve_compensation
from .plan import Cut, Outcome, StructuredPlan, removals_of
from .surgery import Undo, apply
from .trace import Watch, call, trace

ALLOCATIONS = ("uniform", "global")  # the built-in ``structured_allocation`` components
WIDTH_ATTRS = ("in_features", "out_features", "in_channels", "out_channels", "groups", "num_features",
               "normalized_shape", "num_embeddings", "embedding_dim", "nf", "nx", "num_parameters", "heads",
               "num_heads", "num_key_value_heads", "num_attention_heads", "all_head_size", "embed_dim")


@dataclass
class StructuredReport(Outcome):
    """What :func:`prune` did.  ``widths``: per module, its size attributes before and after."""

    widths: dict[str, dict[str, Any]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    config_expressible: bool = True  # a Hugging Face config describes the new widths (else: load_pretrained)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "param_ratio": self.param_ratio, "mac_ratio": self.mac_ratio}


def widths_of(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Size attributes of every module that has any (``in_features``, ``out_channels``, ``heads``...)."""
    out = {}
    for name, m in model.named_modules():
        w = {a: (list(v) if isinstance(v, tuple) else v) for a in WIDTH_ATTRS
             if isinstance(v := getattr(m, a, None), (int, tuple)) and not isinstance(v, bool)}
        if w:
            out[name] = w
    return out


def _check_ratio(ratio: Any) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not (0.0 <= ratio < 1.0) \
            or math.isnan(ratio):
        raise InvalidArgumentError(f"ratio must be a number in [0, 1) (the fraction of each group's channels "
                                   f"removed), got {ratio!r}")
    return float(ratio)


def _check_target(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 < value <= 1.0):
        raise InvalidArgumentError(f"{name} must be a fraction of the dense model in (0, 1], got {value!r}")
    return float(value)


def _member_names(space: Space, names: dict[int, str]) -> list[str]:
    return sorted({f"{names.get(id(m.param), '?')}[{m.dim}]" for m in space.members})


class _Pruner:
    def __init__(self, model, example_inputs, importance, allocation, round_to, ignore, data, loss_fn, seed,
                 max_ratio, reduction, options, num_heads=None, allocation_options=None):
        if not isinstance(model, nn.Module):
            raise InvalidArgumentError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if any(parametrize.is_parametrized(m) for m in model.modules()):
            raise InvalidArgumentError("the model carries pruning masks (parametrizations); call "
                                       "secateurs.finalize(model) before structured pruning")
        self.alloc = build_allocation(allocation, allocation_options)
        if round_to is not None and (isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1):
            raise InvalidArgumentError(f"round_to must be a positive integer or None, got {round_to!r}")
        if isinstance(max_ratio, bool) or not isinstance(max_ratio, (int, float)) or not 0 < max_ratio < 1:
            raise InvalidArgumentError(f"max_ratio must be in (0, 1), got {max_ratio!r}")
        self.model, self.inputs, self.allocation = model, example_inputs, allocation
        self.round_to, self.seed, self.max_ratio = round_to, int(seed), float(max_ratio)
        self.imp_name = importance
        self.imp = build_importance(importance, {"reduction": reduction, **options})
        if self.imp.needs_data and data is None:
            raise MissingDataError(f"importance {importance!r} needs data: pass data=<iterable of "
                                   f"(inputs, targets) batches>")
        self.feed = None if data is None else data if isinstance(data, Feed) else Feed.pairs(data, loss_fn)
        self.ignore = self._ignore_matcher(ignore)
        self.head_hints = self._head_hints(num_heads)
        self.relaxed: list[str] = []  # modules whose widths were kept after the pruned model broke in them

    def _ignore_matcher(self, ignore: Any) -> Callable[[str], bool]:
        if ignore is None:
            return lambda name: False
        pats = [ignore] if isinstance(ignore, str) else list(ignore)
        if not all(isinstance(p, str) for p in pats):
            raise InvalidArgumentError(f"ignore must be module-name globs, got {ignore!r}")
        names = [n for n, _ in self.model.named_modules() if n]
        for p in pats:
            if not any(fnmatch.fnmatchcase(n, p) for n in names):
                raise InvalidArgumentError(f"ignore pattern {p!r} matches no module; module names look like "
                                           f"{names[:6]}")
        return lambda name: any(fnmatch.fnmatchcase(name, p) for p in pats)

    def _head_hints(self, num_heads: Any) -> dict[str, int]:
        """``num_heads=``: an int (every module) or module-name glob -> int, resolved to module name -> heads."""
        if num_heads is None:
            return {}
        names = [n for n, _ in self.model.named_modules()]

        def count(v: Any) -> int:
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidArgumentError(f"num_heads must be a positive int or a dict of module-name glob -> "
                                           f"positive int, got {num_heads!r}")
            return v
        if not isinstance(num_heads, dict):
            h = count(num_heads)
            return {n: h for n in names}
        out: dict[str, int] = {}
        for pat, v in num_heads.items():
            hits = [n for n in names if isinstance(pat, str) and fnmatch.fnmatchcase(n, pat)]
            if not hits:
                raise InvalidArgumentError(f"num_heads pattern {pat!r} matches no module; module names look like "
                                           f"{[n for n in names if n][:6]}")
            out.update(dict.fromkeys(hits, count(v)))
        return out

    # ------------------------------------------------------------------------------------------------ analysis
    def analyse(self) -> None:
        with eval_mode(self.model):
            self.adapters = find_adapters(self.model)
            try:
                self.tr = trace(self.model, self.inputs, self.adapters, self.head_hints)
                self.out_before = self.tr.output
            except PruningError:
                raise
            except Exception as e:  # a wrong example input: the model's own error, re-raised as ours
                raise InvalidArgumentError(f"the model does not run on example_inputs ({type(e).__name__}: {e}); "
                                           f"pass inputs of the shape the model expects") from e
        names = self.tr.names
        for a in self.adapters.values():  # an ignored attention module keeps its heads
            if self.ignore(a.name) and a.space is not None:
                fix(((a.space, 1),), "ignored")
        for mname, labels in self.tr.outputs.items():  # an ignored module keeps the width of its outputs
            if self.ignore(mname):
                for lab in labels:
                    fix(lab, "ignored")
        spaces = leaves(self.tr.spaces)
        self.fixed: dict[str, int] = {}
        self.groups: list[Group] = []
        for s in spaces:
            if s.fixed:
                self.fixed[s.fixed] = self.fixed.get(s.fixed, 0) + 1
            elif s.size > 1 and any(isinstance(m.param, nn.Parameter) for m in s.members):
                # spaces of buffers alone (rotary frequencies...) are computed, not learned: never pruned
                self.groups.append(Group(s, _member_names(s, names)))

    def score(self) -> None:
        ctx = ImportanceContext(self.model, self.groups, self.tr.names, self.feed, self.seed)
        scores = self.imp.scores(ctx)
        self.skipped = [g.names[0] for g, s in zip(self.groups, scores) if s is None]
        self.scored = [(g, s.float().cpu()) for g, s in zip(self.groups, scores) if s is not None]
        for g, s in self.scored:
            if not all_finite(s):
                raise NonFiniteError(f"importance {self.imp_name!r} gave non-finite scores (NaN or Inf) for the "
                                     f"group of {g.names[0]}; nothing was pruned")

    # ------------------------------------------------------------------------------------------------ planning
    def _round(self, g: Group, n_prune: int) -> int:
        """Round so the kept width is a multiple of ``round_to`` (channels only; heads are whole already)."""
        if self.round_to is None or g.kind != "channels" or n_prune == 0:
            return n_prune
        keep = g.units - n_prune
        keep = min(g.units, max(self.round_to, int(math.ceil(keep / self.round_to)) * self.round_to))
        return g.units - keep

    def plan(self, ratio: float, clamp: bool = False) -> dict[Space, torch.Tensor]:
        """Channels to drop per space; ``clamp`` (target search) keeps at least one unit instead of failing."""
        counts = self.alloc.counts(self.scored, ratio, self.max_ratio, self.seed)
        out = {}
        for i, (g, s) in enumerate(self.scored):
            n = self._round(g, counts[i])
            if clamp:
                n = min(n, g.units - 1)
            if n >= g.units:
                raise UnreachableTargetError(
                    f"ratio {ratio} would remove every one of the {g.units} {g.kind} of the group of "
                    f"{g.names[0]}; lower the ratio, or ignore= that layer")
            if n:
                order = torch.sort(s, stable=True).indices  # lowest importance first; ties by index
                out[g.space] = torch.sort(order[:n]).values
        return out

    # ------------------------------------------------------------------------------------------------ surgery
    def cut(self, removals: dict[Space, torch.Tensor], compensate: Callable | None = None) -> Undo:
        """Surgery, with attention and config bookkeeping, then ``compensate(model, Cut)`` if given; returns the
        undo of everything it changed."""
        extra = Undo([a.module for a in self.adapters.values()] + split_modules(self.model, self.tr.head_splits))
        old = removals_of(removals, self.tr.names, values=True) if compensate is not None else []
        before = {id(p) for p in self.model.parameters()} if compensate is not None else set()
        undo, touched = apply(self.model, removals)
        for a in self.adapters.values():
            a.finish()
        set_split_heads(self.model, self.tr.head_splits, removals, set(self.head_hints))
        self.removals = removals
        undo_cfg, self.config_expressible = sync_config(self.model)
        kept = [(p, p.detach().clone()) for m in touched for p in m._parameters.values()
                if p is not None and id(p) in before]  # a compensation edits these in place

        def both() -> None:
            with torch.no_grad():
                for p, v in kept:
                    p.copy_(v)
            undo_cfg()
            undo()
            extra()
        if compensate is not None:
            try:
                compensate(self.model, Cut(self.model, old, self.group_dicts(removals), self.feed))
            except Exception:
                both()
                raise
        return both

    def group_dicts(self, removals: dict[Space, torch.Tensor]) -> list[dict[str, Any]]:
        return [_group_dict(g, removals.get(g.space), self.tr.names) for g, _ in self.scored]

    def verify(self, undo: Callable[[], None]) -> None:
        """Run the pruned model: it must give outputs of the same shapes, and every head split of a user's own
        attention must give the new head count at the old head size (else a forward that computes ``D // h``
        from a width that changed would run with wrong heads).  On failure: undo, then raise :class:`_Broken`
        naming the module that broke."""
        splits = self.tr.head_splits
        watch = Watch(self.model, {(sp.module, sp.call) for sp in splits})
        try:
            with eval_mode(self.model), torch.no_grad():
                out = watch.run(self.inputs)
            before = [t.shape for t in _flat(self.out_before)]
            after = [t.shape for t in _flat(out)]
            if before != after:
                raise ModelStructureError(f"output shapes changed from {before} to {after}")
            for sp in splits:
                shape, want = watch.shapes.get((sp.module, sp.call)), heads_after(sp, self.removals)
                if shape is not None and (len(shape) <= sp.dim or shape[sp.dim] != want
                                          or math.prod(shape[sp.dim + 1:]) != sp.head_size):
                    watch.failed = sp.module
                    raise ModelStructureError(
                        f"{sp.module} splits its channels as {list(shape)} where {want} heads of {sp.head_size} "
                        f"were expected: its forward computes the heads from a width that changed")
        except Exception as e:
            undo()
            raise _Broken(watch.failed,
                          f"the pruned model no longer runs ({type(e).__name__}: {e}); the model was restored. A "
                          f"module that hard-codes a width in its forward needs ignore= for that layer") from e

    def relax(self, module: str | None) -> bool:
        """After the pruned model broke in ``module``: keep the widths that module's forward reads (its inputs,
        its outputs, the heads it splits), going up to its parents until something new is kept, and prune the
        rest; if it breaks there again, every width of its parameters too.  False when nothing more can be kept
        (the error is then the user's to see)."""
        mods = dict(self.model.named_modules())
        while module:
            why = f"kept: the pruned model broke in {module} when these widths changed"
            if module in self.relaxed:  # broke again: every width of its own parameters too
                params = {id(p) for p in mods[module].parameters()} if module in mods else set()
                labels = [lab for (pid, _), lab in self.tr.bound.items() if pid in params]
            else:
                labels = self.tr.inputs.get(module, []) + self.tr.outputs.get(module, []) + [
                    sp.label for sp in self.tr.head_splits if sp.module == module or sp.module.startswith(module + ".")]
            for lab in labels:
                fix(lab, why)
            kept = [(g, s) for g, s in self.scored if not g.space.fixed]
            if len(kept) < len(self.scored):
                self.fixed[why] = self.fixed.get(why, 0) + len(self.scored) - len(kept)
                self.scored = kept
                self.relaxed.append(module)
                return True
            module = module.rpartition(".")[0]
        return False


class _Broken(ModelStructureError):
    """The pruned model failed its check; ``module``: the innermost module running when it did (None: unknown)."""

    def __init__(self, module: str | None, message: str):
        super().__init__(message)
        self.module = module


def _group_dict(g: Group, removed: torch.Tensor | None, names: dict[int, str]) -> dict[str, Any]:
    """A group as JSON: its members (parameter, dimension, offset, elements per unit) and the units removed."""
    removed = [] if removed is None else removed.tolist()
    return {"kind": g.kind, "units": g.units, "kept": g.units - len(removed), "removed": removed,
            "members": [{"param": names.get(id(m.param), "?"), "dim": m.dim, "offset": m.offset, "inner": m.inner}
                        for m in g.members]}


def _flat(x: Any) -> list[torch.Tensor]:
    from .trace import _tensors

    return _tensors(x if not hasattr(x, "to_tuple") else x.to_tuple())


def _search(pr: _Pruner, what: str, goal: float, dense: int) -> float:
    """The ratio whose cut leaves ``what`` (macs/params) at most ``goal`` of ``dense``: bisection."""
    model, inputs = pr.model, pr.inputs

    def measure(r: float) -> float:
        undo = pr.cut(pr.plan(r, clamp=True))
        try:
            return (count_macs(model, inputs) if what == "macs" else count_params(model)) / dense
        finally:
            undo()
    lo, hi = 0.0, 0.999
    if measure(hi) > goal:
        raise UnreachableTargetError(f"even keeping one unit per group leaves {what} above {goal:.0%} of the "
                                     f"dense model (the layers that cannot be pruned dominate); raise the target")
    for _ in range(14):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if measure(mid) <= goal else (mid, hi)
    return hi


def _prepare(model, example_inputs, ratio, importance, allocation, round_to, ignore, data, loss_fn, target_macs,
             target_params, max_ratio, reduction, seed, num_heads, allocation_options, compensate, options):
    """Everything :func:`prune` and :func:`plan` share: validate, trace, score, allocate, cut and check.  Returns
    the pruner, the removals, the undo of the checked cut (still in place) and the numbers of the dense model."""
    tm, tp = _check_target("target_macs", target_macs), _check_target("target_params", target_params)
    if tm is not None and tp is not None:
        raise InvalidArgumentError("give target_macs or target_params, not both")
    ratio = _check_ratio(ratio) if tm is None and tp is None else 0.0
    compensate = resolve_compensation(compensate)
    pr = _Pruner(model, example_inputs, importance, allocation, round_to, ignore, data, loss_fn, seed, max_ratio,
                 reduction, options, num_heads, allocation_options)
    params_before, widths_before = count_params(model), widths_of(model)
    pr.analyse()
    macs_before = count_macs(model, example_inputs)
    pr.score()
    target = None
    while True:  # until the pruned model passes its check (each failure keeps the widths of where it broke)
        if tm is not None or tp is not None:
            what, goal = ("macs", tm) if tm is not None else ("params", tp)
            target = {what: goal}
            ratio = _search(pr, what, goal, macs_before if what == "macs" else params_before)
        removals = pr.plan(ratio, clamp=target is not None)
        undo = pr.cut(removals, compensate)
        try:
            pr.verify(undo)
            break
        except _Broken as e:
            if not pr.relax(e.module):
                raise
    return pr, removals, undo, ratio, target, (params_before, macs_before, widths_before)


def _name(allocation: Any) -> str:
    return allocation if isinstance(allocation, str) else getattr(allocation, "registry_name", type(allocation).__name__)


@renamed(ratio="sparsity", importance="method")
def prune(model: nn.Module, example_inputs: Any, sparsity: float = 0.5, method: str = "l2",
          allocation: Any = "uniform", round_to: int | None = None, ignore: Any = None, data: Any = None, *,
          loss_fn: Callable | None = None, target_macs: float | None = None, target_params: float | None = None,
          max_ratio: float = 0.9, reduction: str = "sum", seed: int = 0, num_heads: int | dict[str, int] | None = None,
          allocation_options: dict[str, Any] | None = None, compensate: Any = None,
          **options: Any) -> StructuredReport:
    """Remove the fraction ``sparsity`` of the channels/neurons/heads of every dependency group of ``model``, in
    place (``ratio=`` and ``importance=`` are the deprecated names of ``sparsity=`` and ``method=``).

    ``example_inputs``: a tensor, a tuple of positional inputs or a dict of keyword inputs the model runs on.
    ``method`` (the importance): ``l1``, ``l2`` (default), ``bn_scale``, ``taylor``, ``fpgm``, ``random``, or any engine
    criterion (``wanda``, ``magnitude``, ``snip``...) summed per unit; ``reduction`` combines the member layers'
    scores (sum/mean/max).  ``allocation``: a registered ``structured_allocation``: ``uniform`` (each group loses
    ``ratio`` of its units) or ``global`` (one ranking across groups of a kind, each group keeping at least
    ``1 - max_ratio`` of its units; ``allocation_options={"normalizer": "lamp"}``: mean, max, standardize, lamp),
    or an instance of one.  ``round_to``: kept channel counts are multiples of it.  ``ignore``: module-name globs
    whose outputs are kept.  ``data``: batches for data-driven importances.  ``target_macs``/``target_params``:
    instead of ``ratio``, prune until the MACs/parameters are at most that fraction of the dense model's
    (bisection over the ratio).  ``num_heads``: the head count of attention modules that split heads in their
    own forward (``view(B, T, h, D // h)``), as an int or module-name glob -> int, for when the module's attribute
    is not named like one (``num_heads``, ``heads``, ``n_head``...).  ``compensate``: a callable
    ``compensate(model, cut)`` or registered ``compensation`` run right after the cut (:mod:`.compensation`).

    A module whose forward breaks when its widths change (it hard-codes one, or computes its heads from its
    input's width) keeps those widths, with a warning, and the rest is pruned.  Returns a
    :class:`StructuredReport`.  The pruned model runs with plain PyTorch.  On any error the model is left exactly
    as it was.  :func:`plan` gives the same removals without keeping them.
    """
    t0 = time.perf_counter()
    importance = method
    pr, removals, _undo, ratio, target, (params_before, macs_before, widths_before) = _prepare(
        model, example_inputs, sparsity, importance, allocation, round_to, ignore, data, loss_fn, target_macs,
        target_params, max_ratio, reduction, seed, num_heads, allocation_options, compensate, options)
    rep = StructuredReport(
        importance=importance, allocation=_name(allocation), ratio=ratio, params_before=params_before,
        params_after=count_params(model), macs_before=macs_before, macs_after=count_macs(model, example_inputs),
        groups=pr.group_dicts(removals), skipped=pr.skipped, fixed=pr.fixed, warnings=_warnings(pr),
        options={**pr.imp.options(), **pr.alloc.options(), "round_to": round_to, "max_ratio": max_ratio,
                 "seed": seed}, target=target, config_expressible=pr.config_expressible)
    after = widths_of(model)
    rep.widths = {n: {"before": widths_before[n], "after": after.get(n, {})} for n in widths_before
                  if after.get(n) != widths_before[n]}
    rep.seconds = time.perf_counter() - t0
    return rep


def _warnings(pr: _Pruner) -> list[str]:
    return list(dict.fromkeys(pr.tr.warnings + [f"the pruned model broke in {m}; the widths it reads were kept"
                                                for m in pr.relaxed]))


@renamed(ratio="sparsity", importance="method")
def plan(model: nn.Module, example_inputs: Any, sparsity: float = 0.5, method: str = "l2",
         allocation: Any = "uniform", round_to: int | None = None, ignore: Any = None, data: Any = None, *,
         loss_fn: Callable | None = None, target_macs: float | None = None, target_params: float | None = None,
         max_ratio: float = 0.9, reduction: str = "sum", seed: int = 0, num_heads: int | dict[str, int] | None = None,
         allocation_options: dict[str, Any] | None = None, **options: Any) -> StructuredPlan:
    """The dry run of :func:`prune`: the dependency groups, the units each would lose, and per parameter exactly
    what would be removed (module, parameter, dimension, indices), with the model left as it was.

    Same arguments as :func:`prune` (``sparsity``: the fraction of each group's units removed).
    The plan is the one ``prune`` executes: it is checked the same way, on a trial cut that is undone (so a
    module that would break keeps its widths here too), and ``prune`` with the same arguments removes exactly
    ``plan.removals``."""
    importance = method
    pr, removals, undo, ratio, target, (params_before, macs_before, _) = _prepare(
        model, example_inputs, sparsity, importance, allocation, round_to, ignore, data, loss_fn, target_macs,
        target_params, max_ratio, reduction, seed, num_heads, allocation_options, None, options)
    try:
        params_after, macs_after = count_params(model), count_macs(model, example_inputs)
    finally:
        undo()
    return StructuredPlan(
        importance=importance, allocation=_name(allocation), ratio=ratio, params_before=params_before,
        params_after=params_after, macs_before=macs_before, macs_after=macs_after,
        groups=pr.group_dicts(removals), removals=removals_of(removals, pr.tr.names), skipped=pr.skipped,
        fixed=pr.fixed, warnings=_warnings(pr), target=target)
