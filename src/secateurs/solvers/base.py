"""Solvers: after the mask is chosen, change the kept weights so that the layer's output moves least.

A solver declares the input statistics it needs (``stats``) and implements :meth:`Solver.solve` on the (out, in)
float32 view of one weight.  ``keep`` is the mask chosen by the criterion, scope, allocation and pattern; a solver
with ``selects = True`` may instead be handed ``keep=None`` and choose the mask itself while it updates (SparseGPT's
own mask selection, Frantar & Alistarh 2023).  ``solver=None`` in :func:`secateurs.prune` just zeroes.
"""
from __future__ import annotations

from typing import Any

import torch

from ..core.plan import LayerPlan
from ..errors import PatternError
from ..patterns import NM, Pattern, Unstructured


class Solver:
    """Base class; options are ``__init__`` keyword arguments (validated there)."""

    stats: tuple[str, ...] = ()
    selects = False

    def options(self) -> dict[str, Any]:
        return {}

    def check(self, pattern: Pattern, selecting: bool) -> None:
        """Raise before anything is touched if the solver cannot serve this pattern."""

    def solve(self, weight2d: torch.Tensor, keep2d: torch.Tensor | None, stats: dict[str, Any], plan: LayerPlan,
              name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the new (out, in) float32 weight (pruned entries exactly 0) and its keep mask."""
        raise NotImplementedError


def check_selectable(solver: str, pattern: Pattern, selecting: bool) -> None:
    """A solver that chooses the mask itself (``keep=None``) selects single weights or N:M groups, never blocks:
    raise PatternError for a block pattern instead of silently returning an unstructured mask."""
    if selecting and not isinstance(pattern, (Unstructured, NM)):
        raise PatternError(f"{solver} selects unstructured or N:M supports, not {pattern.name}; pass a scope "
                           f"(e.g. scope='layer') to choose the {pattern.name} blocks by the criterion and "
                           f"let {solver} reconstruct the kept weights")
