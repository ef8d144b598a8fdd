"""Magnitude pruning: score = |w| (Han et al. 2015, "Learning both Weights and Connections")."""
from __future__ import annotations

from ..registry import register
from .base import Criterion, ScoreContext, ScoreFn


@register("criterion", "magnitude")
class Magnitude(Criterion):
    """|w| — remove the smallest weights (Han et al. 2015); data-free."""

    def scores(self, ctx: ScoreContext) -> list[ScoreFn]:
        return [(lambda t=t: t.weight.detach().abs()) for t in ctx.targets]
