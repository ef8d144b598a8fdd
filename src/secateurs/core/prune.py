"""One-shot (and criterion-driven iterative) weight pruning of any ``torch.nn.Module``.

criterion x allocation x pattern: the criterion scores weights, the pattern groups them, the allocation decides
how many groups each layer loses, and masks are attached as parametrizations.  Everything that can be wrong is
checked before any mask is attached; an iterative criterion that fails half-way is rolled back.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from .. import registry
from ..allocations.base import LayerInfo, allocate
from ..criteria.base import ScoreContext
from ..errors import InvalidArgumentError, MissingDataError, NonFiniteError, PatternError
from ..patterns import Pattern, parse
from .masks import clear_mask, get_mask, set_mask
from .report import LayerReport, PruneReport
from .select import keep_masks, kth_threshold
from .targets import Target, resolve_targets, select_names


def _check_sparsity(sparsity, pat: Pattern) -> float:
    if pat.fixed_density is not None:
        implied = 1 - pat.fixed_density
        if sparsity is None:
            return implied
        if isinstance(sparsity, (int, float)) and abs(float(sparsity) - implied) < 1e-9:
            return implied
        raise PatternError(f"pattern {pat.name} implies sparsity {implied:g}; omit sparsity or pass {implied:g}")
    if sparsity is None:
        raise InvalidArgumentError("sparsity is required (a fraction in [0, 1), e.g. 0.9)")
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not math.isfinite(sparsity):
        raise InvalidArgumentError(f"sparsity must be a number in [0, 1), got {sparsity!r}")
    if not 0 <= sparsity < 1:
        raise InvalidArgumentError(f"sparsity must be in [0, 1) (the fraction of weights set to zero), got {sparsity}")
    return float(sparsity)


def _input_shape(model: nn.Module, data) -> tuple[int, ...] | None:
    shape = getattr(model, "input_shape", None)
    if shape is not None:
        return tuple(shape)
    if data is not None:
        for batch in data:
            return tuple(batch[0].shape[1:])
    return None


def _all_finite(x: torch.Tensor) -> bool:
    if not (x.is_floating_point() or x.is_complex()):
        return True
    # A sum is finite only if every term is (NaN and Inf propagate), so one read-only reduction settles the
    # common case; isfinite (several passes) runs only when the sum is not finite, e.g. it merely overflowed.
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


def _check_finite(what: str, targets: list[Target], fns: list[Callable[[], torch.Tensor]]) -> None:
    for t, fn in zip(targets, fns):
        if not _all_finite(fn()):
            raise NonFiniteError(f"{what} of layer {t.name!r} contain NaN or Inf; nothing was pruned")


class _CheckedScores:
    """Score callables that check finiteness on their first call, so the check costs no extra computation of
    the scores (magnitude and random recompute them on every call).

    The outcome is the same as checking every layer before selection: a failure re-checks the layers in order
    so the error names the first bad one, and :meth:`check_rest` (called after selection, before any mask is
    attached, and before an error from selection propagates) checks the layers selection never scored.
    """

    def __init__(self, targets: list[Target], fns: list[Callable[[], torch.Tensor]]):
        self.targets, self.fns = targets, fns
        self.ok = [False] * len(fns)
        self.wrapped = [self._wrap(i) for i in range(len(fns))]

    def _wrap(self, i: int) -> Callable[[], torch.Tensor]:
        def fn() -> torch.Tensor:
            s = self.fns[i]()
            if not self.ok[i]:
                if not _all_finite(s):
                    self.check_rest()  # raises for the first bad layer in order
                    raise NonFiniteError(f"scores of layer {self.targets[i].name!r} contain NaN or Inf; nothing was pruned")
                self.ok[i] = True
            return s

        return fn

    def check_rest(self) -> None:
        for i, t in enumerate(self.targets):
            if not self.ok[i]:
                _check_finite("scores", [t], [self.fns[i]])
                self.ok[i] = True


def _min_keep_groups(min_keep, pat: Pattern, targets: list[Target]) -> list[int]:
    if min_keep is None:
        return [0] * len(targets)
    if isinstance(min_keep, bool) or not isinstance(min_keep, int) or min_keep < 0:
        raise InvalidArgumentError(f"min_keep must be a non-negative int (weights kept per layer), got {min_keep!r}")
    return [math.ceil(min_keep / pat.group_size(t.shape2d)) for t in targets]


def _select_round(targets, scores, old, pat, alloc, sparsity, min_keep_g, dense_idx, seed) -> list[torch.Tensor]:
    """Keep masks (shaped like each weight) for one round at the given overall sparsity."""
    if pat.fixed_density is not None:
        out = []
        for i, (t, fn) in enumerate(zip(targets, scores)):
            if i in dense_idx or pat.fixed_density * t.numel < min_keep_g[i]:
                out.append(torch.ones(t.shape, dtype=torch.bool, device=t.leaf.device))
            else:
                out.append(pat.select(fn().reshape(t.shape2d)).reshape(t.shape))
        return out

    def group_fn(i: int) -> Callable[[], torch.Tensor]:
        t, fn, prev = targets[i], scores[i], old[i]
        if prev is None:  # stays lazy: magnitude on a huge model is recomputed rather than held
            return lambda: pat.group_scores(fn().reshape(t.shape2d))
        prev2d = prev.reshape(t.shape2d)
        s = fn().reshape(t.shape2d)
        gs = pat.group_scores(s.masked_fill(~prev2d, 0))
        alive = pat.group_scores(prev2d.to(s.dtype)) > 0
        gs = gs.masked_fill(~alive, -math.inf)  # already-pruned groups go first, and stay pruned
        return lambda: gs

    layers = [LayerInfo(t.name, tuple(t.shape), pat.n_groups(t.shape2d), group_fn(i)) for i, t in enumerate(targets)]
    total = sum(l.n_groups for l in layers)
    counts, hints = allocate(alloc, layers, round(sparsity * total), min_keep_g, dense_idx, seed)
    out = []
    for i, (t, l, k, h) in enumerate(zip(targets, layers, counts, hints)):
        th = h if h is not None else kth_threshold([l.scores], [l.n_groups], k, seed + i)
        keep = keep_masks([l.scores], th)[0]
        out.append(pat.expand(keep, t.shape2d).reshape(t.shape))
    return out


def prune(
    model: nn.Module,
    sparsity: float | None = None,
    method: str = "magnitude",
    allocation: str = "global",
    pattern: str = "unstructured",
    data: Iterable | None = None,
    loss_fn: Callable | None = None,
    targets=None,
    ignore=None,
    min_keep: int | None = None,
    seed: int | None = None,
    dense=None,
) -> PruneReport:
    """Prune the weights of ``model`` in place (as masks) and return a per-layer report.

    Args:
        sparsity: fraction of the targeted weights that end up zero, in [0, 1); implied by N:M patterns.
        method: a registered criterion (``secateurs methods`` lists them): magnitude, random, snip, grasp,
            synflow, taylor.
        allocation: global | uniform | er | erk — how the budget is split over layers.
        pattern: "unstructured", "N:M" such as "2:4", or blocks "RxC" such as "4x4".
        data, loss_fn: (inputs, targets) batches and a loss (default cross-entropy) for data-dependent criteria.
        targets, ignore: module-name globs or ``callable(name, module)``; default: Linear/Conv weights.
        min_keep: at least this many weights stay in every layer (Gupta et al. 2022's layer-collapse floor).
        seed: for random scores and tie-breaking samples; the same seed gives the same masks.
        dense: module-name globs of targeted layers to keep dense (they still count in the total).

    Pruning a model that already has masks prunes further: old masks are kept and count towards the target.
    """
    pat = parse(pattern)
    sparsity = _check_sparsity(sparsity, pat)
    crit = registry.get("criterion", method)()
    alloc = registry.get("allocation", allocation)()
    seed = 0 if seed is None else int(seed)
    ts = resolve_targets(model, targets, ignore)
    for t in ts:
        pat.validate(t.name, t.shape2d)
    dense_names = select_names(ts, dense, "dense")
    dense_idx = {i for i, t in enumerate(ts) if t.name in dense_names}
    min_keep_g = _min_keep_groups(min_keep, pat, ts)
    if crit.needs_data and data is None:
        raise MissingDataError(f"criterion {method!r} needs data: pass data=<iterable of (inputs, targets) batches>")
    _check_finite("weights", ts, [lambda t=t: t.leaf.detach() for t in ts])
    ctx = ScoreContext(model, ts, data, loss_fn, seed, _input_shape(model, data))
    before = [None if (m := get_mask(t)) is None else m.clone() for t in ts]
    rounds = crit.rounds if pat.fixed_density is None else 1
    try:
        for r in range(1, rounds + 1):
            round_sparsity = 1 - (1 - sparsity) ** (r / rounds)
            checked = _CheckedScores(ts, crit.scores(ctx))
            old = [get_mask(t) for t in ts]
            try:
                keeps = _select_round(ts, checked.wrapped, old, pat, alloc, round_sparsity, min_keep_g, dense_idx, seed)
            except NonFiniteError:
                raise
            except Exception:
                checked.check_rest()  # non-finite scores take precedence, as if checked before selection
                raise
            checked.check_rest()
            for t, keep, prev in zip(ts, keeps, old):
                _attach(t, keep if prev is None else keep & prev)
    except BaseException:
        for t, prev in zip(ts, before):  # roll back masks; originals are only zeroed after success
            clear_mask(t) if prev is None else _attach(t, prev)
        raise
    report = PruneReport(method, allocation, pat.name, sparsity)
    for t in ts:
        m = get_mask(t)
        set_mask(t, m)  # zero the pruned originals, so optimizers and weight decay keep them at zero
        report.layers.append(LayerReport(t.name, t.numel, int(torch.count_nonzero(m))))
    return report


def _attach(t: Target, keep: torch.Tensor) -> None:
    set_mask(t, keep, zero=False)
