"""Global structured allocation: one ranking across every group of a kind (channels, heads), so groups whose
units matter less lose more of them.  Raw scores of different layers are not comparable (their scales differ
with width and depth), so each group's scores are first normalised:

* ``mean`` — s / mean(s) of the group (the default; Torch-Pruning's ``group_reduction`` then global ranking).
* ``max`` — s / max(s).
* ``standardize`` — (s − mean(s)) / std(s).
* ``lamp`` — LAMP (Lee, Park, Mo, Ahn & Shin 2021, "Layer-adaptive sparsity for the magnitude-based pruning",
  eq. 2): s_u / Σ_{v : s_v ≥ s_u} s_v, the unit's score over the sum of the scores of its group's units at least
  as large; the group's largest unit scores 1, so every group keeps at least one unit before any other goes.

Each group keeps at least ⌈(1 − max_ratio)·units⌉ units (at least one); the engine's global allocation
(:mod:`secateurs.allocations.global_`) does the ranking under those floors."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import torch

from ... import registry
from ...allocations.base import LayerInfo, allocate
from ...registry import option, register
from ..importance.base import Group
from .base import StructuredAllocation

Normalizer = Literal["mean", "max", "standardize", "lamp"]


def normalize(scores: torch.Tensor, how: str) -> torch.Tensor:
    """One group's unit scores made comparable with other groups' (see the module docstring)."""
    s = scores.double()
    if how == "mean":
        return s / s.mean().clamp_min(1e-30)
    if how == "max":
        return s / s.max().clamp_min(1e-30)
    if how == "standardize":
        return (s - s.mean()) / s.std(unbiased=False).clamp_min(1e-30)
    if how == "lamp":  # Lee et al. 2021, eq. 2: s_u / Σ_{s_v ≥ s_u} s_v
        v = torch.sort(s).values
        suffix = torch.flip(torch.cumsum(torch.flip(v, [0]), 0), [0])  # suffix[k] = Σ v[k:]
        return s / suffix[torch.searchsorted(v, s, side="left")].clamp_min(1e-30)
    raise ValueError(how)


@register("structured_allocation", "global")
class Global(StructuredAllocation):
    """One ranking across the groups of a kind, each group's scores normalised first (mean, max, standardize,
    LAMP of Lee et al. 2021)."""

    def __init__(self, normalizer: Annotated[Normalizer, option(
            "how each group's scores are made comparable across groups: mean, max, standardize or lamp")] = "mean"):
        self.normalizer = normalizer

    def options(self) -> dict[str, Any]:
        return {"normalizer": self.normalizer}

    def counts(self, scored: Sequence[tuple[Group, torch.Tensor]], ratio: float, max_ratio: float,
               seed: int) -> list[int]:
        counts = [0] * len(scored)
        for kind in sorted({g.kind for g, _ in scored}):
            idx = [i for i, (g, _) in enumerate(scored) if g.kind == kind]
            layers = [LayerInfo(scored[i][0].names[0], (scored[i][0].units,), scored[i][0].units,
                                lambda n=normalize(scored[i][1], self.normalizer).float(): n) for i in idx]
            total = sum(l.n_groups for l in layers)
            floors = [max(1, int(math.ceil(l.n_groups * (1 - max_ratio)))) for l in layers]
            budget = min(int(round(ratio * total)), sum(l.n_groups - f for l, f in zip(layers, floors)))
            cnt, _ = allocate(registry.build("allocation", "global"), layers, budget, floors, set(), seed)
            for i, c in zip(idx, cnt):
                counts[i] = c
        return counts
