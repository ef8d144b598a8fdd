"""The one weight-pruning engine: criterion x scope x allocation x pattern x solver, on any ``torch.nn.Module``.

Data flow (every step is a registry lookup, so a new criterion, scope, allocation or solver is one file)::

    targets -> statistics -> scores -> allocation (how many per layer) -> scope (which compete) -> pattern
            -> mask -> solver (update the kept weights) -> masks as parametrizations, or zeros baked in

How statistics are gathered is an axis too: criteria that need only the weights or gradients see the whole
model at once; activation statistics (Wanda's input norms, SparseGPT's Hessian) are collected in one forward pass
over the data for a flat model, or block by block (``blocks=``: capture block 0's inputs, collect, prune, re-run
the block to feed the next, :mod:`secateurs.core.sequential`) for any model whose layers sit in a list of blocks.
Everything that can be wrong is checked before any weight is touched; a failure later rolls back.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .. import registry
from ..allocations.base import Allocation, LayerInfo, allocate
from ..criteria.base import ScoreContext
from ..errors import InvalidArgumentError, MissingDataError, ModelStructureError, NonFiniteError
from ..patterns import NM, Pattern, parse
from .blocks import find_blocks
from .feed import Feed
from .finite import all_finite
from .masks import clear_mask, get_mask, set_mask
from .plan import LayerPlan
from .report import LayerReport, PruneReport
from .select import Threshold
from .spec import MaskPlan, PruneSpec, check_sparsity, resolve_components, spec_from_call  # noqa: F401
from .stats import check_collectable
from .targets import Target, resolve_targets, select_names


def resolve_device(device: str | torch.device | None, default: torch.device) -> torch.device:
    """``device`` as a torch.device (``default`` when None); a CUDA device with no GPU is refused."""
    if device is None:
        return default
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidArgumentError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidArgumentError("device='cuda' was asked for but no CUDA GPU is available; use device='cpu'")
    return dev


def min_keep_groups(min_keep: Any, pat: Pattern, targets: list[Target]) -> list[int]:
    if min_keep is None:
        return [0] * len(targets)
    if isinstance(min_keep, bool) or not isinstance(min_keep, int) or min_keep < 0:
        raise InvalidArgumentError(f"min_keep must be a non-negative int (weights kept per layer), got {min_keep!r}")
    return [math.ceil(min_keep / pat.group_size(t.shape2d)) for t in targets]


def _check_scores(t: Target, s: torch.Tensor) -> torch.Tensor:
    if not all_finite(s):
        raise NonFiniteError(f"scores of layer {t.name!r} contain NaN or Inf; nothing was pruned")
    return s


def masked_group_scores(t: Target, pat: Pattern, scores2d: torch.Tensor) -> torch.Tensor:
    """The pattern's group scores of target ``t``'s 2-D scores; groups an earlier mask removed score -inf, so
    they are pruned first and stay pruned (masks compose).  Also used by schedules that re-rank while training."""
    prev = get_mask(t)
    if prev is None:
        return pat.group_scores(scores2d)
    prev2d = t.view2d(prev)
    gs = pat.group_scores(scores2d.masked_fill(~prev2d, 0))
    alive = pat.group_scores(prev2d.to(scores2d.dtype)) > 0
    return gs.masked_fill(~alive, -math.inf)


def plan_layers(alloc: Allocation, pat: Pattern, infos: Sequence[LayerInfo], sparsity: float,
                min_keep_g: Sequence[int], dense: set[int], skipped: set[int], seed: int) \
        -> tuple[list[LayerPlan], list[Threshold | None]]:
    """What each layer becomes at ``sparsity``: the allocation's split of the budget (layers in ``dense`` are kept
    whole but count; ``skipped`` ones are neither pruned nor counted), the ``min_keep`` floors honoured; for N:M
    patterns the kept N of every M per layer (a mixed N:M allocation such as OWL may vary it)."""
    fixed = set(dense) | set(skipped)
    if isinstance(pat, NM):
        live = [i for i, l in enumerate(infos) if i not in fixed
                and pat.fixed_density * l.n_groups >= min_keep_g[i]]
        nkeep = dict(zip(live, alloc.nm_keep([infos[i] for i in live], pat.n, pat.m)))
        plans = []
        for i, l in enumerate(infos):
            n = nkeep.get(i, pat.m)
            plans.append(LayerPlan(l.n_groups * (pat.m - n) // pat.m, 1 - n / pat.m, n, pat.m))
        return plans, [None] * len(infos)
    total = sum(l.n_groups for i, l in enumerate(infos) if i not in skipped)  # dense layers count
    counts, hints = allocate(alloc, infos, round(sparsity * total), min_keep_g, fixed, seed)
    return [LayerPlan(c, c / l.n_groups if l.n_groups else 0.0) for c, l in zip(counts, infos)], hints


def keep_mask(t: Target, pat: Pattern, scope: Callable, chunk: Callable[[], torch.Tensor], plan: LayerPlan,
              hint: Threshold | None, seed: int) -> torch.Tensor:
    """The (out, in) keep mask of one target under its plan: ``plan.count`` lowest groups of ``chunk()`` removed
    by the scope's selection and expanded to weights by the pattern, or the N largest of every M."""
    dev = t.leaf.device
    if plan.is_nm:
        if plan.n >= plan.m:
            return torch.ones(t.shape2d, dtype=torch.bool, device=dev)
        return NM(plan.n, plan.m).select(chunk().reshape(t.shape2d))  # N:M groups are single weights
    if plan.count == 0:
        return torch.ones(t.shape2d, dtype=torch.bool, device=dev)
    g = scope(chunk, pat.grid(t.shape2d), plan.count, hint, seed)
    return pat.expand(g, t.shape2d)


@dataclass
class MaskSelection:
    """Keep masks (weight-shaped, bool; earlier masks included) and pruned groups per layer."""

    keeps: list[torch.Tensor]
    counts: list[int]


def select_masks(targets: Sequence[Target], scores: Sequence[torch.Tensor], sparsity: float, *,
                 pattern: str | Pattern = "unstructured", allocation: str | Allocation = "global",
                 scope: str = "layer", min_keep: int | None = None, seed: int = 0,
                 counts: Sequence[int] | None = None) -> MaskSelection:
    """The engine's selection step on given scores, nothing applied: allocation → scope → pattern → masks.

    ``scores``: one weight-shaped tensor per target (higher = keep); groups an earlier mask removed score -inf, so
    they go first and stay pruned (masks compose).  ``counts``: pruned groups per layer, instead of the
    allocation's split (a budget fixed earlier, as PDP keeps it).  Schedules that re-rank while training (ISS-P,
    PDP) call this, so a hard :func:`prune` afterwards picks the same weights.
    """
    pat = parse(pattern)
    alloc = registry.build("allocation", allocation) if isinstance(allocation, str) else allocation
    chunks = []
    for t, s in zip(targets, scores):
        gs = masked_group_scores(t, pat, t.view2d(_check_scores(t, s)))
        chunks.append(lambda gs=gs: gs)
    floors = min_keep_groups(min_keep, pat, list(targets))
    if counts is None:
        infos = [LayerInfo(t.name, tuple(t.shape), pat.n_groups(t.shape2d), c, i, t)
                 for i, (t, c) in enumerate(zip(targets, chunks))]
        plans, hints = plan_layers(alloc, pat, infos, sparsity, floors, set(), set(), seed)
    else:
        plans = [LayerPlan(int(c), c / max(pat.n_groups(t.shape2d), 1)) for t, c in zip(targets, counts)]
        hints = [None] * len(plans)
    scope_fn = registry.get("scope", scope)
    keeps = []
    for i, (t, c, plan, h) in enumerate(zip(targets, chunks, plans, hints)):
        keep = t.unview2d(keep_mask(t, pat, scope_fn, c, plan, h, seed + i))
        prev = get_mask(t)
        keeps.append(keep if prev is None else keep & prev)
    return MaskSelection(keeps, [p.count for p in plans])


class _Engine:
    """One pruning call, validated; :meth:`run` does the work."""

    def __init__(self, model: nn.Module, spec: Any, data: Any, loss_fn: Callable | None, device: Any,
                 progress: bool, bake: bool, stream: Any = None):
        self.model, self.progress, self.bake, self.stream, self.spec = model, progress, bake, stream, spec
        c = resolve_components(spec)
        self.pat, self.sparsity, self.method = c.pat, c.sparsity, spec.method
        self.crit, self.alloc_name, self.alloc = c.crit, c.alloc_name, c.alloc
        self.solver_name, self.solver, self.scope_name, self.scope = c.solver_name, c.solver, c.scope_name, c.scope
        method, targets, ignore, dense = spec.method, spec.targets, spec.ignore, spec.dense
        min_keep, blocks = spec.min_keep, spec.blocks
        self.seed = 0 if spec.seed is None else int(spec.seed)

        self.ts = resolve_targets(model, targets, ignore)
        for t in self.ts:
            self.pat.validate(t.name, t.shape2d)
        dense_names = select_names(self.ts, dense, "dense")
        self.dense_idx = {i for i, t in enumerate(self.ts) if t.name in dense_names}
        self.min_keep_g = min_keep_groups(min_keep, self.pat, self.ts)

        # what has to be gathered: gradients, and which statistics of the layers' inputs
        self.kinds = list(dict.fromkeys(self.crit.stats + self.alloc.stats
                                        + (self.solver.stats if self.solver else ())))
        needs_data = self.crit.needs_data or bool(self.kinds)
        if needs_data and data is None:
            what = f"criterion {method!r}" if self.crit.needs_data or self.crit.stats else \
                f"allocation {self.alloc_name!r}" if self.alloc.stats else f"solver {self.solver_name!r}"
            raise MissingDataError(f"{what} needs data: pass data=<iterable of (inputs, targets) batches>")
        self.feed = data if isinstance(data, Feed) or data is None else Feed.pairs(data, loss_fn)
        for t in self.ts if self.kinds else ():
            check_collectable(t)

        self.blocks_path, self.block_list, self.block_of = None, None, [None] * len(self.ts)
        if blocks is not None:
            self.blocks_path, self.block_list = find_blocks(model, None if blocks is True else blocks)
            where = {id(m): i for i, b in enumerate(self.block_list) for m in b.modules()}
            self.block_of = [where.get(id(t.module)) for t in self.ts]
            outside = [t.name for t, b in zip(self.ts, self.block_of) if b is None]
            if outside and self.kinds:
                raise ModelStructureError(
                    f"targets outside the blocks {self.blocks_path!r} cannot get block-by-block statistics: "
                    f"{outside[:5]}; leave them out with ignore=, or drop blocks= to collect in one pass")
        self.sequential = blocks is not None and (bool(self.kinds) or stream is not None)
        self.executor = registry.build("executor", "streamed" if stream is not None else
                                       "block-by-block" if self.sequential else "one-pass")
        if stream is not None:  # weights arrive block by block: nothing may need them all at once
            if blocks is None or not bake:
                raise InvalidArgumentError("streaming needs blocks= and bake=True")
            if self.alloc.needs_scores:
                raise InvalidArgumentError(
                    f"allocation {self.alloc_name!r} ranks every layer's scores before the first is pruned, which a "
                    f"checkpoint streamed block by block cannot hold; use uniform, er, erk or owl")
            if self.crit.needs_data and not self.crit.stats:
                raise InvalidArgumentError(f"criterion {method!r} needs gradients through the whole model, which a "
                                           f"checkpoint streamed block by block cannot give; load the model instead")
        if self.sequential and self.crit.rounds > 1:
            raise InvalidArgumentError(f"criterion {method!r} re-scores in {self.crit.rounds} rounds, which the "
                                       f"block-by-block pipeline cannot do; drop blocks=")
        home = self.ts[0].leaf.device
        self.device = resolve_device(device, home if home.type != "meta" else torch.device("cpu"))
        for t in self.ts:
            if t.leaf.is_meta:  # streamed: checked when its block is read
                continue
            if not all_finite(t.leaf.detach()):
                raise NonFiniteError(f"weights of layer {t.name!r} contain NaN or Inf; nothing was pruned")
        shape = getattr(model, "input_shape", None)
        self.input_shape = tuple(shape) if shape is not None else (
            self.feed.first_input_shape() if self.feed is not None and self.crit.rounds > 1 else None)

    # ------------------------------------------------------------------------------------------------ planning
    def _group_chunk(self, i: int, fn: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
        """Flat group scores of target i; groups an earlier mask removed score -inf (pruned first, stay pruned)."""
        t, pat, prev = self.ts[i], self.pat, get_mask(self.ts[i])
        if prev is None:  # stays lazy: magnitude on a huge model is recomputed rather than held
            checked = [False]

            def lazy() -> torch.Tensor:
                s = fn()
                if not checked[0]:  # the scores are the same every call: one finiteness check is enough
                    checked[0] = bool(_check_scores(t, s) is s)
                return pat.group_scores(t.view2d(s))

            return lazy
        gs = masked_group_scores(t, pat, t.view2d(_check_scores(t, fn())))
        return lambda: gs

    def _infos(self, chunks: list[Callable[[], torch.Tensor]], acts: list[dict | None]) -> list[LayerInfo]:
        return [LayerInfo(t.name, tuple(t.shape), self.pat.n_groups(t.shape2d), chunks[i],
                          i if self.block_of[i] is None else self.block_of[i], t, acts[i])
                for i, t in enumerate(self.ts)]

    def _plan(self, infos: list[LayerInfo], sparsity: float) -> tuple[list[LayerPlan], list[Threshold | None]]:
        """Per-layer plans for one round at ``sparsity`` (the allocation, with dense layers and min_keep)."""
        return plan_layers(self.alloc, self.pat, infos, sparsity, self.min_keep_g, self.dense_idx,
                           set(self.skipped), self.seed)

    def _keep(self, i: int, chunk: Callable[[], torch.Tensor], plan: LayerPlan, hint: Threshold | None) \
            -> torch.Tensor:
        """The (out, in) keep mask of target i under its plan, the scope and the pattern."""
        return keep_mask(self.ts[i], self.pat, self.scope, chunk, plan, hint, self.seed + i)

    # --------------------------------------------------------------------------------------------------- apply
    def _solve(self, i: int, keep2d: torch.Tensor | None, stats: dict, plan: LayerPlan) \
            -> tuple[torch.Tensor | None, torch.Tensor]:
        t = self.ts[i]
        if self.solver is None:
            return None, keep2d
        w = t.view2d(t.leaf.detach()).float().clone()
        if keep2d is None and plan.count == 0 and not plan.is_nm:
            keep2d = torch.ones(t.shape2d, dtype=torch.bool, device=w.device)
        w = w.to(stats[next(iter(stats))].value.device) if stats else w
        new, keep = self.solver.solve(w, None if keep2d is None else keep2d.to(w.device), stats, plan, t.name)
        return new, keep

    def _write(self, i: int, keep2d: torch.Tensor, new2d: torch.Tensor | None) -> None:
        """Apply target i's result: masks as parametrizations (zeroed at the end), or zeros baked in."""
        t = self.ts[i]
        keep = t.unview2d(keep2d.to(t.leaf.device))
        prev = get_mask(t)
        with torch.no_grad():
            if new2d is not None:
                t.leaf.copy_(t.unview2d(new2d.to(device=t.leaf.device, dtype=t.leaf.dtype)))
            if self.bake and prev is None:
                torch.where(keep, t.leaf, t.leaf.new_zeros(()), out=t.leaf)
                self.kept[i] = int(torch.count_nonzero(t.leaf))
                return
        set_mask(t, keep if prev is None else keep & prev, zero=False)
        self.kept[i] = int(torch.count_nonzero(get_mask(t)))

    # ----------------------------------------------------------------------------------------------------- run
    def run(self, dry: bool = False) -> Any:
        """Prune; with ``dry`` compute everything, then put every mask and weight back and return a
        :class:`~secateurs.core.spec.MaskPlan` (the engine's public "compute masks" step)."""
        if dry and (self.bake or self.stream is not None):
            raise InvalidArgumentError("a dry run (plan_masks) cannot bake zeros in or stream a checkpoint")
        self.dry = dry
        t0 = time.perf_counter()
        ctx = ScoreContext(self.model, self.ts, self.feed, self.seed, self.input_shape,
                           extra={"progress": self.progress})
        before = [None if (m := get_mask(t)) is None else m.clone() for t in self.ts]
        backup: dict[int, torch.Tensor] = {}
        self.skipped: list[int] = []
        self.plans: list[LayerPlan] = []
        self.block_seconds: list[float] = []
        self.kept: dict[int, int] = {}  # weights kept per target, counted when written (a streamed one is gone)
        def rollback() -> None:
            with torch.no_grad():
                for i, t in enumerate(self.ts):  # masks first, then any weight a solver changed
                    clear_mask(t) if before[i] is None else set_mask(t, before[i], zero=False)
                    if i in backup:
                        t.leaf.copy_(backup[i].to(t.leaf.device))

        try:
            self.crit.prepare(ctx)
            self.executor.run(self, ctx, backup)
        except BaseException:
            rollback()
            raise
        report = self._report(time.perf_counter() - t0)
        if not dry:
            return report
        masks, weights = {}, {}
        for i, t in enumerate(self.ts):
            m = get_mask(t)
            if m is not None:
                masks[t.key] = m.clone()
            if i in backup and self.solver is not None:
                weights[t.key] = t.leaf.detach().clone()
        rollback()
        return MaskPlan(self.spec, masks, weights, report)

    def _backup(self, i: int, backup: dict[int, torch.Tensor]) -> None:
        if self.dry and self.solver is None:  # masks attach with zero=False: the weights are never written
            return
        if self.stream is not None:  # streamed blocks are written to a new checkpoint: nothing to roll back
            return
        if self.solver is not None or self.bake:
            backup[i] = self.ts[i].leaf.detach().to("cpu", copy=True)

    def _live(self, fns: list) -> list:
        """Skipped layers (never called on the data) score +inf: they are planned dense."""
        return [(lambda t=self.ts[i]: torch.full(t.shape, math.inf, device=t.leaf.device)) if i in self.skipped
                else fn for i, fn in enumerate(fns)]

    def _alloc_stats(self, st: dict) -> dict | None:
        """The statistics of one layer that the allocation declared (``Allocation.stats``), or None."""
        if not self.alloc.stats or not st:
            return None
        return {k: st[k] for k in self.alloc.stats if k in st}

    @staticmethod
    def _unplanned() -> torch.Tensor:
        raise AssertionError("this allocation reads no scores")  # uniform/er/erk: never called

    def _finish(self) -> None:
        if self.dry:  # a plan leaves the weights as they are
            return
        for t in self.ts:  # zero the pruned originals, so optimizers and weight decay keep them at zero
            m = get_mask(t)
            if m is not None:
                set_mask(t, m)

    def _method_options(self) -> dict[str, Any]:
        """The criterion's options and every option the caller passed, wherever it was routed (``percdamp`` to
        SparseGPT's solver, ``owl_lambda`` to OWL), each as the component that took it reports it."""
        out = dict(self.crit.options())
        taken = [self.alloc.options(), self.solver.options() if self.solver else {}]
        for key, value in self.spec.options.items():
            if key not in out:
                out[key] = next((r[key] for r in taken if key in r), value)
        return out

    def _report(self, seconds: float) -> PruneReport:
        rep = PruneReport(self.method, self.alloc_name, self.pat.name, self.sparsity,
                          scope=self.scope_name or f"{self.solver_name} (selects)", solver=self.solver_name,
                          method_options=self._method_options(), allocation_options=self.alloc.options(),
                          solver_options=self.solver.options() if self.solver else {},
                          blocks_path=self.blocks_path, block_seconds=self.block_seconds, seconds=seconds,
                          device=str(self.device), skipped=[self.ts[i].key for i in sorted(self.skipped)],
                          dtype=str(self.ts[0].leaf.dtype).replace("torch.", ""))
        per_block: dict[int, list[int]] = {}
        for i, t in enumerate(self.ts):
            if i in self.skipped:
                continue
            kept = self.kept[i]
            plan = self.plans[i]
            rep.layers.append(LayerReport(t.name, t.numel, kept, t.shape2d, plan.sparsity,
                                          f"{plan.n}:{plan.m}" if plan.is_nm else "unstructured", self.block_of[i]))
            if self.block_of[i] is not None:
                per_block.setdefault(self.block_of[i], []).append(i)
        rep.block_targets = [sum(self.plans[i].sparsity * self.ts[i].numel for i in idx)
                             / sum(self.ts[i].numel for i in idx) for _, idx in sorted(per_block.items())]
        return rep


def prune(
    model: nn.Module,
    sparsity: float | None = None,
    method: str = "magnitude",
    *,
    allocation: str | None = None,
    pattern: str = "unstructured",
    data: Iterable | None = None,
    loss_fn: Callable | None = None,
    targets=None,
    ignore=None,
    min_keep: int | None = None,
    seed: int | None = None,
    dense=None,
    scope: str | None = None,
    solver: str | None = None,
    blocks: str | bool | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
    bake: bool = False,
    stream: Any = None,
    **options: Any,
) -> PruneReport:
    """Prune the weights of ``model`` in place and return a per-layer report.

    Args:
        sparsity: fraction of the targeted weights that end up zero, in [0, 1); implied by N:M patterns.
        method: a registered criterion (``secateurs methods`` lists them): magnitude, random, snip, grasp,
            synflow, taylor (weights/gradients), wanda, gblm, sparsegpt (calibration statistics).
        allocation: global | uniform | er | erk | owl — how the budget is split over layers (default: the
            criterion's paper default: global for magnitude/SNIP/..., uniform for Wanda/GBLM/SparseGPT).
        pattern: "unstructured", "N:M" such as "2:4", or blocks "RxC" such as "4x4".
        data, loss_fn: (inputs, targets) batches and a loss (default cross-entropy) for data-dependent criteria,
            allocations and solvers.
        targets, ignore: module-name globs or ``callable(name, module)``; default: Linear/Conv weights.
        min_keep: at least this many weights stay in every layer (Gupta et al. 2022's layer-collapse floor).
        seed: for random scores and tie-breaking samples; the same seed gives the same masks.
        dense: module-name globs of targeted layers to keep dense (they still count in the total).
        scope: the comparison group — "row" (each output row loses the same number, Wanda), "layer", or
            "global" (= allocation "global"); default: the criterion's.
        solver: "sparsegpt" updates the kept weights with the OBS step after the mask is chosen (default: the
            criterion's own, i.e. SparseGPT for method "sparsegpt", else none).
        blocks: gather statistics block by block over this ModuleList (attribute path, or True to find the
            largest list of identical blocks); default: one forward pass over the whole model.
        device: where each block runs in the block-by-block pipeline (default: where the weights are).
        bake: write the zeros into the weights instead of attaching masks.
        stream: the block reader/writer of :func:`secateurs.llm.prune_checkpoint` (weights read block by block
            from a checkpoint larger than memory); with it, ``blocks`` and ``bake`` are required.
        options: options of the criterion, allocation or solver (e.g. ``owl_lambda=0.08``, ``percdamp=0.01``),
            each given to whichever takes it; unknown names are refused.

    Pruning a model that already has masks prunes further: old masks are kept and count towards the target.
    """
    spec = PruneSpec(sparsity=sparsity, method=method, allocation=allocation, pattern=pattern, scope=scope,
                     solver=solver, options=options, targets=targets, ignore=ignore, dense=dense, min_keep=min_keep,
                     seed=seed, blocks=blocks)
    return _Engine(model, spec, data, loss_fn, device, progress, bake, stream).run()


def check_prune(model: nn.Module, sparsity: float | None = None, method: str = "magnitude", *,
                data: Iterable | None = None, loss_fn: Callable | None = None, device: Any = None,
                bake: bool = False, stream: Any = None, progress: bool = False, **kwargs: Any) -> PruneSpec:
    """Every check :func:`prune` makes on these arguments (names, options, pattern vs layer shapes, data,
    finiteness), without pruning: schedules call it at construction so bad input fails before training starts.
    Returns the validated :class:`PruneSpec`."""
    spec = spec_from_call(sparsity, method, **kwargs)
    _Engine(model, spec, data, loss_fn, device, progress, bake, stream)
    return spec


def run_spec(model: nn.Module, spec: PruneSpec, *, data: Iterable | None = None, loss_fn: Callable | None = None,
             device: str | torch.device | None = None, progress: bool = False, bake: bool = False,
             stream: Any = None) -> PruneReport:
    """Prune ``model`` in place by ``spec`` (what :func:`prune` does with its arguments) and return the report."""
    if not isinstance(spec, PruneSpec):
        raise InvalidArgumentError(f"spec must be a secateurs.PruneSpec, got {type(spec).__name__}")
    return _Engine(model, spec, data, loss_fn, device, progress, bake, stream).run()


def plan_masks(model: nn.Module, spec: PruneSpec, *, data: Iterable | None = None, loss_fn: Callable | None = None,
               device: str | torch.device | None = None, progress: bool = False) -> MaskPlan:
    """Compute the masks ``spec`` gives on ``model`` without applying them (the public step of the engine).

    The engine runs exactly as :func:`prune` would (block by block, later blocks see the earlier ones pruned, as
    they must), then every mask and weight is put back: the model is bit-identical afterwards.  The returned
    :class:`~secateurs.core.spec.MaskPlan` holds the keep masks, the weights a solver refitted and the report;
    ``plan.apply(model)`` gives what :func:`run_spec` would.
    """
    if not isinstance(spec, PruneSpec):
        raise InvalidArgumentError(f"spec must be a secateurs.PruneSpec, got {type(spec).__name__}")
    return _Engine(model, spec, data, loss_fn, device, progress, False, None).run(dry=True)
