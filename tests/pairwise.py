"""A small deterministic all-pairs (pairwise, strength-2 covering array) generator for parametrised tests.

Greedy set cover over the valid part of the Cartesian product (the AETG idea of Cohen et al. 1997, "The AETG
System", IEEE TSE 23(7), with the candidate pool made exhaustive because our products are small): first every
``must`` tuple is covered, then, while some feasible pair of factor values is uncovered, the valid combination
covering the most uncovered pairs is taken (ties: the first in product order). A pair is *feasible* when at least
one valid combination holds it, so every feasible pair ends up in some chosen combination, and every value of
every factor appears. Same input, same list, on every machine: no randomness, no hashing of unordered sets.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

Combo = tuple[Any, ...]


def _pairs(combo: Combo) -> set[tuple[int, Any, int, Any]]:
    return {(i, combo[i], j, combo[j]) for i, j in itertools.combinations(range(len(combo)), 2)}


def _holds(combo: Combo, names: Sequence[str], partial: Mapping[str, Any]) -> bool:
    return all(combo[names.index(k)] == v for k, v in partial.items())


def feasible_pairs(factors: Mapping[str, Sequence[Any]], valid: Callable[..., bool]) -> set[tuple[int, Any, int, Any]]:
    """Every pair (factor i = a, factor j = b) that some valid combination contains."""
    out: set[tuple[int, Any, int, Any]] = set()
    for combo in itertools.product(*factors.values()):
        if valid(*combo):
            out |= _pairs(combo)
    return out


def all_pairs(factors: Mapping[str, Sequence[Any]], valid: Callable[..., bool] = lambda *c: True,
              must: Iterable[Mapping[str, Any]] = ()) -> list[Combo]:
    """Valid combinations (tuples in the order of ``factors``) covering every feasible pair of values and every
    ``must`` partial assignment (e.g. ``{"pattern": "2:4", "solver": None, "model": "cnn"}``: a triple that
    pairwise coverage alone would not guarantee). Raises ValueError when a ``must`` tuple has no valid completion."""
    names = list(factors)
    pool = [c for c in itertools.product(*factors.values()) if valid(*c)]
    uncovered = set().union(*map(_pairs, pool)) if pool else set()
    chosen: list[Combo] = []

    def take(candidates: list[Combo]) -> None:
        best = max(candidates, key=lambda c: len(_pairs(c) & uncovered))  # max() keeps the first of equals
        chosen.append(best)
        uncovered.difference_update(_pairs(best))

    for partial in must:
        if not any(_holds(c, names, partial) for c in chosen):
            candidates = [c for c in pool if _holds(c, names, partial)]
            if not candidates:
                raise ValueError(f"no valid combination holds {dict(partial)}")
            take(candidates)
    while uncovered:
        take(pool)
    return chosen
