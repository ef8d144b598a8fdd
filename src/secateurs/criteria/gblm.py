"""GBLM-Pruner: gradient-based language model pruner (Das, Ma & Shen 2023, "Beyond Size: How Gradients Shape
Pruning Decisions in Large Language Models").

Paper: ``W_m[i,j] = |W_ij|·||X_j||₂ + α·|W_ij|·||G_{:,i,j}||_p``.  Code (VILA-Lab/GBLM-Pruner@9e8aea2,
lib/prune.py ``prune_gblm`` and gradient_computation.py), followed here:

* before anything is pruned, one forward/backward per calibration batch (one row each, as the reference) on the
  dense model with its loss (for a language model: labels = inputs); per weight the l2 accumulation
  ``G = sqrt(Σ_n (scale·g_n)²)`` with ``scale = 100`` (which plays the role of α);
* score ``|W|·sqrt(scaler_row) + |W|·G`` with Wanda's ``scaler_row`` (block by block in the sequential pass);
  per-row comparison and uniform allocation by default, N:M as in Wanda.

Deliberate differences: the gradients are accumulated and kept in float32 (the reference stores them in
float16); the backward passes run in ``eval()`` mode so that dropout (GPT-2/OPT/BERT) does not make the
gradients random — the reference calls ``model.train()``, which is the same for Llama (no dropout); only the
targeted weights get gradients (the reference computes them for every parameter); the calibration rows are those
of the pruning pass (the reference draws the same C4 rows with the same seed in both scripts).
"""
from __future__ import annotations

from typing import Annotated, Any

import torch
from torch import nn

from ..core.feed import Feed
from ..core.finite import all_finite
from ..core.progress import progress_bar
from ..core.targets import Target
from ..errors import InvalidArgumentError, MissingDataError, NonFiniteError
from ..registry import option, register
from .base import Criterion, ScoreContext, ScoreFn, batch_gradients, zero_if_none
from .wanda import layer_wanda_scores


def gradient_norms(model: nn.Module, targets: list[Target], feed: Feed, *, scale: float = 100.0,
                   progress: bool = False) -> dict[str, torch.Tensor]:
    """Per target key, ``sqrt(Σ_n (scale·∂L_n/∂W)²)`` as an (out, in) float32 matrix (GBLM-Pruner's G), one
    backward pass per batch of ``feed``.  The model's weights, gradients and modes are left as they were."""
    from .base import ScoreContext as _Ctx

    acc = [torch.zeros(t.shape2d, dtype=torch.float32, device=t.leaf.device) for t in targets]
    batches = list(feed)
    ctx = _Ctx(model, targets, Feed(batches, feed.forward, feed.loss))
    with progress_bar(progress, len(batches), "GBLM gradients") as advance:
        for n, grads in enumerate(batch_gradients(ctx)):
            for a, g, t in zip(acc, zero_if_none(grads, targets), targets):
                if not all_finite(g):
                    raise NonFiniteError(f"gblm: the gradients of batch {n} are not finite")
                a += (t.view2d(g).float() * scale) ** 2
            advance()
    return {t.key: a.sqrt_() for t, a in zip(targets, acc)}


@register("criterion", "gblm")
class GBLM(Criterion):
    """|W|·||X_j||₂ + |W|·||100·∇W||₂ per row (Das et al. 2023, GBLM-Pruner eq. 3 as in its code)."""

    needs_data = True
    stats = ("scaler_row",)
    default_scope = "row"
    default_allocation = "uniform"

    def __init__(self, scale: Annotated[float, option("factor on the gradient term |W|·||scale·∇W||₂", gt=0,
                                                    allow_inf_nan=False)] = 100.0,
                 gradients: dict[str, torch.Tensor] | None = None):
        """``gradients``: the output of :func:`gradient_norms` on the same dense model and calibration data, so
        that a sweep over sparsities need not repeat the backward passes."""
        if gradients is not None and not isinstance(gradients, dict):
            raise InvalidArgumentError("gblm gradients must be the dict returned by gradient_norms()")
        self.scale = float(scale)
        self.given = gradients is not None
        self.grads: dict[str, torch.Tensor] = dict(gradients or {})

    def options(self) -> dict[str, Any]:
        return {"scale": self.scale, "gradients": "given" if self.given else "computed"}

    def prepare(self, ctx: ScoreContext) -> None:
        """Compute G on the dense model before any layer is pruned (GBLM's gradient_computation.py)."""
        if self.given:
            for t in ctx.targets:
                g = self.grads.get(t.key)
                if g is None or tuple(g.shape) != t.shape2d:
                    raise InvalidArgumentError(f"gblm gradients do not match this model ({t.key})")
            return
        if ctx.feed is None:
            raise MissingDataError("gblm needs calibration data for its gradients")
        self.grads = gradient_norms(ctx.model, ctx.targets, ctx.feed, scale=self.scale,
                                    progress=bool(ctx.extra.get("progress")))

    def scores(self, ctx: ScoreContext) -> list[ScoreFn]:
        def score(t: Target, st: dict) -> torch.Tensor:
            grad = t.unview2d(self.grads[t.key].to(t.leaf.device))
            return layer_wanda_scores(t, st) + t.weight.detach().float().abs() * grad

        return [(lambda t=t, st=st: score(t, st)) for t, st in zip(ctx.targets, ctx.stats)]
