"""Allocation: how many groups each layer loses, given a total budget.

An allocation distributes a number of pruned groups over layers.  The shared :func:`allocate` adds what every
allocation must honour: layers kept dense, and the ``min_keep`` floor of "Is Complexity Required for Neural
Network Pruning?" (Gupta et al. 2022; manasgupta-1/GlobalMP `prune_withMT.py`): a layer that would keep fewer
than ``min_keep`` weights keeps exactly that many (all, if it is smaller), and the remaining budget is
re-allocated over the other layers by the same allocation rule, repeating until no layer is below the floor,
so the total target is still met exactly.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..core.select import Chunk, Threshold
from ..errors import UnreachableTargetError


@dataclass
class LayerInfo:
    """One target as seen by allocations (sizes in groups of the pattern)."""

    name: str
    shape: tuple[int, ...]  # the weight's shape, for ER/ERK
    n_groups: int
    scores: Chunk  # flat group scores of the criterion (recomputed on call)
    group: int = 0  # layers of one block share a group (OWL sets one ratio per block)
    target: Any = None  # the Target (weights), for allocations that read them with statistics
    stats: dict[str, Any] | None = None  # the calibration statistics the allocation declared (``Allocation.stats``)


class Allocation:
    """Base class: ``counts`` splits ``budget`` pruned groups over ``layers`` (each at most its n_groups).

    ``needs_scores``: ranks the criterion's scores across layers.  ``stats``: the calibration statistics it needs
    (names of :mod:`secateurs.core.stats` kinds; the engine collects them and hands them over as
    ``LayerInfo.stats``, with the weights as ``LayerInfo.target``: the engine names no criterion).  Options are ``__init__`` keyword arguments."""

    needs_scores = False
    stats: tuple[str, ...] = ()

    def options(self) -> dict[str, Any]:
        return {}

    def check(self, sparsity: float, n: int | None, m: int | None) -> None:
        """Raise before anything is touched if the target cannot be reached (e.g. a whole layer would go)."""

    def counts(self, layers: Sequence[LayerInfo], budget: int, seed: int) -> tuple[list[int], list[Threshold | None]]:
        """Pruned groups per layer and, optionally, a per-layer threshold that selects exactly them."""
        raise NotImplementedError

    def observe(self, layers: Sequence[LayerInfo]) -> None:
        """Look at one group's layers while their weights are in memory (a streamed checkpoint frees them
        before the plan is made); allocations whose plan reads weights keep what they need here."""

    def nm_keep(self, layers: Sequence[LayerInfo], n: int, m: int) -> list[int]:
        """Kept N of every M per layer for an N:M pattern: N everywhere, unless the allocation mixes them."""
        return [n] * len(layers)


def split_exactly(shares: Sequence[float], caps: Sequence[int], total: int) -> list[int]:
    """Integers proportional to ``shares`` (each <= cap) summing to ``total`` (largest remainder method)."""
    s = sum(shares)
    want = [min(c, total * x / s) if s > 0 else 0.0 for x, c in zip(shares, caps)]
    base = [int(w) for w in want]
    rest = total - sum(base)
    order = sorted(range(len(want)), key=lambda i: (-(want[i] - base[i]), i))
    for i in order:
        if rest <= 0:
            break
        if base[i] < caps[i]:
            base[i] += 1
            rest -= 1
    i = 0
    while rest > 0 and i < len(base):  # caps hit by rounding: spill over to layers with room
        add = min(rest, caps[i] - base[i])
        base[i] += add
        rest -= add
        i += 1
    return base


def allocate(
    alloc: Allocation, layers: Sequence[LayerInfo], budget: int, min_keep: Sequence[int], dense: set[int], seed: int
) -> tuple[list[int], list[Threshold | None]]:
    """Pruned groups per layer meeting ``budget`` exactly with floors and dense layers honoured."""
    capacity = sum(max(0, l.n_groups - mk) for i, (l, mk) in enumerate(zip(layers, min_keep)) if i not in dense)
    if budget > capacity:
        raise UnreachableTargetError(
            f"the target needs {budget} pruned groups but min_keep/dense layers leave only {capacity} prunable; "
            "lower min_keep, keep fewer layers dense, or lower the sparsity"
        )
    fixed = {i: 0 for i in dense}
    while True:
        free = [i for i in range(len(layers)) if i not in fixed]
        left = budget - sum(fixed.values())
        if not free:
            break
        cnt, hints = alloc.counts([layers[i] for i in free], left, seed)
        below = [i for i, c in zip(free, cnt) if layers[i].n_groups - c < min_keep[i]]
        if not below:
            out, th = [0] * len(layers), [None] * len(layers)
            for i, c, h in zip(free, cnt, hints):
                out[i], th[i] = c, h
            for i, c in fixed.items():
                out[i] = c
            return out, th
        for i in below:
            fixed[i] = max(0, layers[i].n_groups - min_keep[i])
    out = [fixed[i] for i in range(len(layers))]
    return out, [None] * len(layers)
