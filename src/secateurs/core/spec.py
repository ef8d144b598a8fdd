"""The plan of a weight-pruning call: a validated, serialisable :class:`PruneSpec`, and :class:`MaskPlan`, the
masks it yields on a model, computed without applying them.

``secateurs.prune(model, 0.5, "wanda", data=...)`` is sugar for
``secateurs.run_spec(model, PruneSpec(0.5, "wanda"), data=...)``; :func:`secateurs.plan_masks` runs the same engine (same executors: one pass, block by block, streamed) and hands back the
masks and any weights a solver refitted, leaving the model exactly as it was.  Schedules, sweeps and recipes
keep a spec (``to_dict`` / ``from_dict`` is JSON-safe) instead of a bag of keyword arguments.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import registry
from ..allocations.base import Allocation
from ..criteria.base import Criterion
from ..errors import InvalidArgumentError, PatternError
from ..patterns import Pattern, parse
from ..solvers.base import Solver

def _names(value: Any, what: str) -> Any:
    """Globs as a tuple (hashable, JSON as a list), a callable as is, None as None."""
    if value is None or callable(value):
        return value
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise InvalidArgumentError(f"{what} must be a module-name glob, a list of globs or callable(name, module); "
                               f"got {value!r}")


@dataclass(frozen=True)
class PruneSpec:
    """What to prune, and how: criterion × scope × allocation × pattern × solver, their options, the targets,
    floors and seed — everything of a :func:`secateurs.prune` call that does not depend on the model or data.

    Construction validates every name and option against the registry (an unknown name raises
    :class:`~secateurs.UnknownNameError` with a suggestion, an option no component takes or a bad value raises
    :class:`~secateurs.InvalidArgumentError`); the checks that need the model run when it is applied.
    """

    sparsity: float | None = None
    method: str = "magnitude"
    allocation: str | None = None
    pattern: str = "unstructured"
    scope: str | None = None
    solver: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    targets: Any = None
    ignore: Any = None
    dense: Any = None
    min_keep: int | None = None
    seed: int | None = None
    blocks: str | bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.options, dict) or not all(isinstance(k, str) for k in self.options):
            raise InvalidArgumentError(f"options must be a dict of option name -> value, got {self.options!r}")
        object.__setattr__(self, "options", dict(self.options))
        for name in ("targets", "ignore", "dense"):
            object.__setattr__(self, name, _names(getattr(self, name), name))
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise InvalidArgumentError(f"seed must be an int or None, got {self.seed!r}")
        if self.blocks is not None and not isinstance(self.blocks, (str, bool)):
            raise InvalidArgumentError(f"blocks must be an attribute path such as 'model.layers', True or None; "
                                       f"got {self.blocks!r}")
        resolve_components(self)  # names, options, pattern vs sparsity: everything that needs no model

    # ------------------------------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (``from_dict`` inverts it); refused when targets/ignore/dense are callables."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if callable(v):
                raise InvalidArgumentError(f"{f.name} is a callable, which a serialised spec cannot hold; "
                                           f"give module-name globs instead")
            out[f.name] = list(v) if isinstance(v, tuple) else v
        json.dumps(out)  # options must be JSON values too
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PruneSpec:
        """The spec of :meth:`to_dict` (or a hand-written dict / YAML mapping); unknown keys are refused."""
        if not isinstance(d, dict):
            raise InvalidArgumentError(f"a prune spec must be a mapping, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InvalidArgumentError(f"unknown prune spec field(s) {unknown}; fields: {sorted(known)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def replace(self, **changes: Any) -> PruneSpec:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


@dataclass
class MaskPlan:
    """Masks computed by :func:`plan_masks`, not yet applied.

    ``masks``: weight key (``"layer.weight"``) -> bool keep mask in the weight's shape, earlier masks included
    (they compose); ``weights``: key -> refitted weight for targets a solver (SparseGPT, ALPS, DSnoT) updated;
    ``report``: the :class:`~secateurs.PruneReport` the call would have returned.
    """

    spec: PruneSpec
    masks: dict[str, torch.Tensor]
    weights: dict[str, torch.Tensor]
    report: Any

    def apply(self, model: nn.Module) -> nn.Module:
        """Attach the masks (and write the refitted weights) to ``model``: the result equals
        ``spec.run(model)``.  Every key and shape is checked before anything is written."""
        from .masks import set_mask
        from .targets import Target

        modules = dict(model.named_modules())
        resolved = []
        for key, keep in self.masks.items():
            mod_name, _, param = key.rpartition(".")
            mod = modules.get(mod_name)
            t = Target(mod_name, mod, param) if mod is not None and hasattr(mod, param) else None
            if t is None or tuple(t.shape) != tuple(keep.shape):
                raise InvalidArgumentError(f"the plan's mask for {key!r} (shape {tuple(keep.shape)}) does not "
                                           f"match the model; plan and apply on the same architecture")
            resolved.append((key, t, keep))
        with torch.no_grad():
            for key, t, keep in resolved:
                if key in self.weights:
                    t.leaf.copy_(self.weights[key].to(device=t.leaf.device, dtype=t.leaf.dtype))
                set_mask(t, keep)
        return model

    def sparsity(self) -> float:
        """Fraction of the planned weights that the masks remove."""
        total = sum(m.numel() for m in self.masks.values())
        return 1 - sum(int(m.sum()) for m in self.masks.values()) / max(total, 1)


def spec_from_call(sparsity: Any, method: str, **kwargs: Any) -> PruneSpec:
    """The :class:`PruneSpec` of a :func:`secateurs.prune` call's arguments (options are the extra keywords)."""
    fields = {f.name for f in dataclasses.fields(PruneSpec)}
    named = {k: v for k, v in kwargs.items() if k in fields}
    options = {k: v for k, v in kwargs.items() if k not in fields}
    return PruneSpec(sparsity=sparsity, method=method, options=options, **named)



def check_sparsity(sparsity: Any, pat: Pattern) -> float:
    """The target sparsity as a float in [0, 1); N:M patterns imply it (None or the same value accepted)."""
    if pat.fixed_density is not None:
        implied = 1 - pat.fixed_density
        if sparsity is None:
            return implied
        if isinstance(sparsity, (int, float)) and abs(float(sparsity) - implied) < 1e-9:
            return implied
        raise PatternError(f"pattern {pat.name} implies sparsity {implied:g}, but sparsity={sparsity!r} was "
                           f"given; omit sparsity or pass {implied:g}")
    if sparsity is None:
        raise InvalidArgumentError("sparsity is required (a fraction in [0, 1), e.g. 0.9); None is only for N:M "
                                   "patterns, which imply it")
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not math.isfinite(sparsity) \
            or not 0 <= sparsity < 1:
        raise InvalidArgumentError(f"sparsity must be a number in [0, 1) (the fraction of weights set to zero), "
                                   f"got {sparsity!r}")
    return float(sparsity)


def route_options(classes: dict[str, tuple[str, type]], options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Give every option to each component (criterion, allocation, solver) whose ``__init__`` takes it."""
    routed: dict[str, dict[str, Any]] = {part: {} for part in classes}
    for key, value in options.items():
        takers = [part for part, (_, cls) in classes.items() if key in registry.accepted_options(cls)]
        if not takers:
            accepted = {f"{part} {name!r}": registry.accepted_options(cls) for part, (name, cls) in classes.items()}
            listing = "; ".join(f"{k}: {', '.join(v) or 'none'}" for k, v in accepted.items())
            parts = " / ".join(accepted)
            raise InvalidArgumentError(f"{parts} does not take option {key!r}; accepted — {listing}")
        for part in takers:
            routed[part][key] = value
    return routed


@dataclass
class Components:
    """The registry components one spec names, built and cross-checked (no model needed)."""

    pat: Pattern
    sparsity: float
    crit: Criterion
    alloc_name: str
    alloc: Allocation
    solver_name: str | None
    solver: Solver | None
    scope_name: str | None
    scope: Any


def resolve_components(spec: Any) -> Components:
    """Build the criterion, allocation, solver, scope and pattern of ``spec`` (a :class:`PruneSpec`), route its
    options to them and check they fit together; every check that needs no model or data."""
    pat = parse(spec.pattern)
    if not isinstance(spec.pattern, str):
        object.__setattr__(spec, "pattern", pat.name)
    sparsity = check_sparsity(spec.sparsity, pat)
    method, allocation, scope, solver = spec.method, spec.allocation, spec.scope, spec.solver
    if not isinstance(method, str):
        raise InvalidArgumentError(f"method must be the name of a criterion (secateurs methods), got {method!r}")
    crit_cls = registry.get("criterion", method)
    if scope == "global":  # one ranking over every layer is the global allocation with per-layer selection
        if allocation not in (None, "global"):
            raise InvalidArgumentError(f"scope='global' ranks every layer together, which is allocation="
                                       f"'global'; it cannot be combined with allocation={allocation!r}")
        allocation, scope = "global", "layer"
    fixed = pat.fixed_density is not None
    alloc_name = allocation or ("uniform" if fixed else crit_cls.default_allocation)
    alloc_cls = registry.get("allocation", alloc_name)
    if fixed and not (alloc_name == "uniform" or alloc_cls.nm_keep is not Allocation.nm_keep):
        raise PatternError(f"pattern {pat.name} fixes every layer's density, so allocation "
                           f"{alloc_name!r} cannot apply; use 'uniform' or 'owl' (mixed N:M)")
    solver_name = solver if solver is not None else crit_cls.solver
    classes = {"criterion": (method, crit_cls), "allocation": (alloc_name, alloc_cls)}
    if solver_name is not None:
        classes["solver"] = (solver_name, registry.get("solver", solver_name))
    routed = route_options(classes, spec.options)
    crit: Criterion = registry.build("criterion", method, routed["criterion"])
    alloc: Allocation = registry.build("allocation", alloc_name, routed["allocation"])
    solv: Solver | None = (registry.build("solver", solver_name, routed["solver"])
                           if solver_name is not None else None)
    scope_name = scope if scope is not None else crit.default_scope
    if scope_name is None:  # the criterion leaves selection to its solver (SparseGPT)
        if solv is None or not solv.selects:
            raise InvalidArgumentError(f"criterion {method!r} selects through a solver; pass a scope "
                                       f"('row' or 'layer') to use it with solver={solver!r}")
        scope_fn = None
    else:
        scope_fn = registry.get("scope", scope_name)
    if solv is not None:
        solv.check(pat, selecting=scope_fn is None)
    alloc.check(sparsity, getattr(pat, "n", None) if fixed else None, getattr(pat, "m", None) if fixed else None)
    return Components(pat, sparsity, crit, alloc_name, alloc, solver_name, solv, scope_name, scope_fn)
