"""SynFlow: Iterative Synaptic Flow Pruning (Tanaka et al. 2020, "Pruning neural networks without any data by
iteratively conserving synaptic flow", eq. 2 and Algorithm 1).

R = 1ᵀ (Π_l |W_l|) 1: every parameter and buffer is replaced by its absolute value, a single all-ones input is
fed in eval mode, and the score is |θ ⊙ dR/dθ|.  No data is used (only the input shape, taken from the first
data batch or the model's ``input_shape`` attribute).  Pruning is iterative: ``rounds = 100`` re-scorings with
density (1-s)^(k/100) at round k, the exponential schedule of the reference (ganguli-lab/Synaptic-Flow prune.py
`prune_loop`, paper runs use 100 prune epochs).  R is computed in the model's dtype as in the reference (float64
CPU convolutions are an order of magnitude slower); the model is never modified: the
absolute values are passed with ``torch.func.functional_call``.
"""
from __future__ import annotations

import torch
from torch.func import functional_call

from ..errors import MissingDataError
from ..registry import register
from ..core.modes import eval_mode
from .base import Criterion, ScoreContext, ScoreFn, as_fns


@register("criterion", "synflow")
class SynFlow(Criterion):
    """|θ ⊙ ∂R/∂θ| of the all-ones synaptic flow, 100 iterative rounds (Tanaka et al. 2020); data-free."""

    rounds = 100

    def scores(self, ctx: ScoreContext) -> list[ScoreFn]:
        if ctx.input_shape is None:
            raise MissingDataError(
                "synflow needs the input shape: pass data (one batch is enough) or give the model an "
                "`input_shape` attribute, e.g. model.input_shape = (1, 28, 28)"
            )
        model = ctx.model
        state = {n: p.detach().abs() for n, p in model.named_parameters()}
        state.update({n: b.abs() for n, b in model.named_buffers() if b.is_floating_point()})
        leaf_names = {id(p): n for n, p in model.named_parameters()}
        names = [leaf_names[id(t.leaf)] for t in ctx.targets]
        for n in names:
            state[n].requires_grad_(True)
        x = torch.ones((1, *ctx.input_shape), dtype=ctx.targets[0].leaf.dtype, device=ctx.device())
        with eval_mode(model), torch.enable_grad():
            r = functional_call(model, state, (x,)).sum()
            grads = torch.autograd.grad(r, [state[n] for n in names], allow_unused=True)
        out = []
        for n, g, t in zip(names, grads, ctx.targets):
            g = torch.zeros_like(state[n]) if g is None else g
            out.append((g * state[n]).abs())
        return as_fns(out)
