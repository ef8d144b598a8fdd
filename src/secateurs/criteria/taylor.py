"""First-order Taylor importance (Molchanov et al. 2019, "Importance Estimation for Neural Network Pruning", eq. 8).

Per weight the first-order estimate of the loss change when it is removed is (g_m w_m)^2; the reference
(NVlabs/Taylor_pruning) averages it over minibatches.  We return sqrt(mean_b (g_b ⊙ w)^2): for a single batch
this is exactly |w·g|, and over many batches it ranks weights exactly as the paper's averaged squared form.
"""
from __future__ import annotations

from ..registry import register
from .base import Criterion, ScoreContext, ScoreFn, as_fns, batch_gradients, zero_if_none


@register("criterion", "taylor")
class Taylor(Criterion):
    """First-order Taylor |w·g|, averaged over batches as sqrt(mean (w·g)²) (Molchanov et al. 2019); needs data."""

    needs_data = True

    def scores(self, ctx: ScoreContext) -> list[ScoreFn]:
        acc, n = None, 0
        ws = [t.weight.detach() for t in ctx.targets]
        for grads in batch_gradients(ctx):
            sq = [(g * w) ** 2 for g, w in zip(zero_if_none(grads, ctx.targets), ws)]
            acc = sq if acc is None else [a + s for a, s in zip(acc, sq)]
            n += 1
        return as_fns([(a / n).sqrt() for a in acc])
