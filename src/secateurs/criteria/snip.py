"""SNIP: connection sensitivity (Lee, Ajanthan & Torr 2019, "SNIP: Single-shot Network Pruning", eq. 6).

s_j = |dL/dc_j| at c = 1, which equals |g_j * w_j|, normalised by the sum over all targets.  As in the reference
(ganguli-lab/Synaptic-Flow, Pruners/pruners.py `SNIP`) the gradient is accumulated over all given batches
(each batch's mean loss summed) before the product is taken.  The reference draws 10 x #classes examples.
"""
from __future__ import annotations


from ..registry import register
from .base import Criterion, ScoreContext, ScoreFn, as_fns, batch_gradients, zero_if_none


@register("criterion", "snip")
class SNIP(Criterion):
    """|g ⊙ w| summed over the data, normalised (Lee et al. 2019); needs data."""

    needs_data = True

    def scores(self, ctx: ScoreContext) -> list[ScoreFn]:
        total = None
        for grads in batch_gradients(ctx):
            grads = zero_if_none(grads, ctx.targets)
            total = grads if total is None else [a + g for a, g in zip(total, grads)]
        s = [(g * t.weight.detach()).abs() for g, t in zip(total, ctx.targets)]
        norm = sum(x.sum() for x in s)
        return as_fns([x / norm if norm > 0 else x for x in s])
