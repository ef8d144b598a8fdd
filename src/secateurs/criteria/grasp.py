"""GraSP: Gradient Signal Preservation (Wang, Zhang & Grosse 2020, "Picking Winning Tickets Before Training by
Preserving Gradient Flow", eq. 8).

S(w) = w ⊙ Hg, where Hg is the Hessian-gradient product obtained by back-propagating gᵀ·stopgrad(g).  As in the
reference (ganguli-lab/Synaptic-Flow `GraSP`, after Wang et al.'s code): logits are divided by a temperature
T = 200, the stopped gradient is summed over all batches first, the scores are divided by |sum(S)|, and the lowest
scores are pruned — which removes the weights whose removal reduces gradient flow the least (the paper prunes the
highest -w ⊙ Hg, the same set).
"""
from __future__ import annotations

import torch

from ..registry import register
from .base import Criterion, ScoreContext, ScoreFn, as_fns, batch_gradients, zero_if_none

TEMPERATURE = 200.0
EPS = 1e-10


@register("criterion", "grasp")
class GraSP(Criterion):
    """w ⊙ Hg with logits / 200 (Wang et al. 2020); lowest pruned; needs data."""

    needs_data = True

    def scores(self, ctx: ScoreContext) -> list[ScoreFn]:
        stopped = None
        for grads in batch_gradients(ctx, temperature=TEMPERATURE):
            grads = [g.detach() for g in zero_if_none(grads, ctx.targets)]
            stopped = grads if stopped is None else [a + g for a, g in zip(stopped, grads)]
        leaves = [t.leaf for t in ctx.targets]
        hg = [torch.zeros_like(l) for l in leaves]
        for grads in batch_gradients(ctx, create_graph=True, temperature=TEMPERATURE):
            z = sum((s * g).sum() for s, g in zip(stopped, grads) if g is not None)
            for acc, h in zip(hg, torch.autograd.grad(z, leaves, allow_unused=True)):
                if h is not None:
                    acc += h.detach()
        s = [h * t.weight.detach() for h, t in zip(hg, ctx.targets)]
        norm = sum(x.sum() for x in s).abs() + EPS
        return as_fns([x / norm for x in s])
