"""The plan of a weight-pruning call: a validated, serialisable :class:`PruneSpec`, and :class:`MaskPlan`, the
masks it yields on a model, computed without applying them.

``secateurs.prune(model, 0.5, "wanda", data=...)`` is sugar for ``PruneSpec(0.5, "wanda").run(model, data=...)``;
:func:`plan_masks` runs the same engine (same executors: one pass, block by block, streamed) and hands back the
masks and any weights a solver refitted, leaving the model exactly as it was.  Schedules, sweeps and recipes
keep a spec (``to_dict`` / ``from_dict`` is JSON-safe) instead of a bag of keyword arguments.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from .. import registry
from ..errors import InvalidArgumentError

Names = "str | list[str] | Callable[[str, nn.Module], bool] | None"


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
        from .prune import resolve_components

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

    # -------------------------------------------------------------------------------------------- execution
    def run(self, model: nn.Module, *, data: Iterable | None = None, loss_fn: Callable | None = None,
            device: str | torch.device | None = None, progress: bool = False, bake: bool = False,
            stream: Any = None):
        """Prune ``model`` in place by this spec (what :func:`secateurs.prune` does) and return the report."""
        from .prune import _Engine

        return _Engine(model, self, data, loss_fn, device, progress, bake, stream).run()

    def plan(self, model: nn.Module, *, data: Iterable | None = None, loss_fn: Callable | None = None,
             device: str | torch.device | None = None, progress: bool = False) -> MaskPlan:
        """The masks (and solver-refitted weights) this spec gives on ``model``, which is left untouched."""
        return plan_masks(model, self, data=data, loss_fn=loss_fn, device=device, progress=progress)


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


def plan_masks(model: nn.Module, spec: PruneSpec, *, data: Iterable | None = None, loss_fn: Callable | None = None,
               device: str | torch.device | None = None, progress: bool = False) -> MaskPlan:
    """Compute the masks ``spec`` gives on ``model`` without applying them (the public step of the engine).

    The engine runs exactly as :func:`secateurs.prune` would (block by block statistics see the earlier blocks
    pruned, as they must), then every mask and weight is put back: the model is bit-identical afterwards.
    """
    from .prune import _Engine

    if not isinstance(spec, PruneSpec):
        raise InvalidArgumentError(f"spec must be a secateurs.PruneSpec, got {type(spec).__name__}")
    engine = _Engine(model, spec, data, loss_fn, device, progress, False, None)
    return engine.run(dry=True)


def spec_from_call(sparsity: Any, method: str, **kwargs: Any) -> PruneSpec:
    """The :class:`PruneSpec` of a :func:`secateurs.prune` call's arguments (options are the extra keywords)."""
    fields = {f.name for f in dataclasses.fields(PruneSpec)}
    named = {k: v for k, v in kwargs.items() if k in fields}
    options = {k: v for k, v in kwargs.items() if k not in fields}
    return PruneSpec(sparsity=sparsity, method=method, options=options, **named)

