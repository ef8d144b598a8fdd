"""What structured pruning removes, as data: the dry run's result (:class:`StructuredPlan`, from
:func:`secateurs.structured.plan`) and what a compensation step receives after the cut (:class:`Cut`).

Every removal is named by the parameter it slices: module, parameter, dimension and the element indices that go
(a unit of a group spans ``inner`` consecutive elements of a member's dimension, e.g. a head's ``head_size``
rows of q, k and v), so a plan can be read, diffed and checked without the dependency graph."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from .graph import Space
from .surgery import keep_masks


@dataclass
class Removal:
    """Elements ``indices`` of dimension ``dim`` of ``module``'s parameter (or buffer) ``param`` go.  ``values``
    (only in a :class:`Cut`): those elements as they were before the cut, all other dimensions whole."""

    module: str
    param: str
    dim: int
    indices: list[int]
    values: torch.Tensor | None = None

    @property
    def name(self) -> str:
        return f"{self.module}.{self.param}" if self.module else self.param

    def to_dict(self) -> dict[str, Any]:
        return {"module": self.module, "param": self.param, "dim": self.dim, "indices": self.indices}


def removals_of(removals: dict[Space, torch.Tensor], names: dict[int, str], values: bool = False) -> list[Removal]:
    """The removals (space -> units dropped) per parameter dimension, in parameter-name order."""
    out = []
    for _, (p, dims) in keep_masks(removals).items():
        module, _, attr = names.get(id(p), "?").rpartition(".")
        for d, keep in sorted(dims.items()):
            idx = (~keep).nonzero().squeeze(1)
            vals = p.detach().index_select(d, idx.to(p.device)).clone() if values else None
            out.append(Removal(module, attr, d, idx.tolist(), vals))
    return sorted(out, key=lambda r: (r.name, r.dim))


@dataclass
class Outcome:
    """What a structured-pruning call decided, shared by the dry run (:class:`StructuredPlan`) and the report of
    the cut (:class:`~secateurs.structured.StructuredReport`)."""

    importance: str
    allocation: str
    ratio: float
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    groups: list[dict[str, Any]] = field(default_factory=list)  # per group: kind, units, kept, removed, members
    skipped: list[str] = field(default_factory=list)  # groups the importance had no score for
    fixed: dict[str, int] = field(default_factory=dict)  # why spaces were left whole -> how many
    warnings: list[str] = field(default_factory=list)
    target: dict[str, float] | None = None

    @property
    def param_ratio(self) -> float:
        return self.params_after / max(1, self.params_before)

    @property
    def mac_ratio(self) -> float:
        return self.macs_after / max(1, self.macs_before)


@dataclass
class StructuredPlan(Outcome):
    """The result of :func:`secateurs.structured.plan`: the dependency groups with the units each loses, and
    per parameter exactly what :func:`secateurs.structured.prune` with the same arguments removes.  The model is
    left as it was.  ``params_after``/``macs_after``: of the model the plan would give (measured on a trial cut
    that was undone)."""

    removals: list[Removal] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["removals"] = [r.to_dict() for r in self.removals]
        return {**d, "param_ratio": self.param_ratio, "mac_ratio": self.mac_ratio}


@dataclass
class Cut:
    """What a compensation step receives right after the cut, before the pruned model is checked: the model
    (already smaller), every :class:`Removal` with the removed elements' old ``values``, the groups as in the
    report, and the calibration data (``feed``, a :class:`~secateurs.core.feed.Feed`, or None).  A compensation
    (FLAP's bias compensation, An et al. 2024, adds to the next layer's bias what the removed channels
    contributed on average) edits the kept parameters in place.  A failed check restores every parameter of
    every module the cut touched exactly; one of another module that it changes, it must restore itself."""

    model: torch.nn.Module
    removals: list[Removal]
    groups: list[dict[str, Any]]
    feed: Any = None

    def of(self, name: str) -> list[Removal]:
        """The removals of the parameter ``name`` (``"fc2.weight"``)."""
        return [r for r in self.removals if r.name == name]
