"""Criteria: one importance score per weight; the lowest scores are pruned.

A criterion declares what it needs, and the engine (:func:`secateurs.prune`) provides exactly that:

* nothing but the weights (magnitude, random, SynFlow's data-free flow);
* gradients of a loss on calibration batches (``needs_data``: SNIP, GraSP, Taylor, GBLM);
* statistics of each layer's inputs (``stats``: ``"scaler_row"`` for Wanda/GBLM, ``"hessian"`` for SparseGPT),
  collected by forward hooks in one pass or block by block (:mod:`secateurs.core.stats`).

``scores(ctx)`` returns, for each of ``ctx.targets``, a zero-argument callable giving the scores shaped like the
weight.  Cheap criteria recompute on every call so that scores for a large model never need to be held in memory
at once.  Criteria with ``stats`` are called with ``ctx.stats[i]`` filled for target i (block by block in the
sequential pipeline); the others are called once for every target.  ``prepare(ctx)`` runs once on the dense model
before anything is pruned (GBLM's gradients).  ``default_scope`` / ``default_allocation`` are the paper's
comparison group and allocation; ``solver`` names a solver that chooses the mask itself (SparseGPT).

Structured importance and training-time schedules reuse these criteria (reduced over channel groups, re-scored
on a schedule) rather than registering their own.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..core.feed import Feed
from ..core.modes import eval_mode, requires_grad
from ..core.targets import Target

ScoreFn = Callable[[], torch.Tensor]


@dataclass
class ScoreContext:
    """Everything a criterion may look at."""

    model: nn.Module
    targets: list[Target]
    feed: Feed | None = None
    seed: int = 0
    input_shape: tuple[int, ...] | None = None
    stats: list[dict[str, Any]] | None = None  # per target, for criteria with ``stats``
    extra: dict = field(default_factory=dict)

    def device(self) -> torch.device:
        return self.targets[0].leaf.device


class Criterion:
    """Base class; see the module docstring for what each attribute declares.  Options are ``__init__``
    keyword arguments (validated there), reported by :meth:`options`."""

    needs_data = False
    stats: tuple[str, ...] = ()
    rounds = 1
    default_scope = "layer"
    default_allocation = "global"
    solver: str | None = None

    def options(self) -> dict[str, Any]:
        return {}

    def prepare(self, ctx: ScoreContext) -> None:
        """Work on the dense model, every target, before anything is pruned (default: nothing)."""

    def scores(self, ctx: ScoreContext) -> list[ScoreFn]:
        raise NotImplementedError


def _twice_differentiable(enabled: bool) -> contextlib.AbstractContextManager:
    """Second derivatives (GraSP's Hessian-gradient product) need attention's math kernel: torch's fused CPU
    attention kernels have no double backward."""
    if not enabled:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


def batch_gradients(ctx: ScoreContext, create_graph: bool = False, temperature: float = 1.0) -> Iterator[tuple]:
    """Yield, per batch, d loss / d leaf for every target (pruned entries get zero gradient through the mask).

    Uses ``torch.autograd.grad`` so the model's ``.grad`` fields are never touched.  ``temperature`` divides
    the logits (GraSP).
    """
    leaves = [t.leaf for t in ctx.targets]
    dev = ctx.device()
    # frozen weights (e.g. an LLM loaded for inference) still get grads; each keeps its own flag afterwards
    with requires_grad(leaves), eval_mode(ctx.model), torch.enable_grad(), _twice_differentiable(create_graph):
        for batch in ctx.feed:
            loss = ctx.feed.loss(ctx.model, batch, dev, temperature)
            yield torch.autograd.grad(loss, leaves, create_graph=create_graph, allow_unused=True)


def as_fns(tensors: list[torch.Tensor]) -> list[ScoreFn]:
    return [(lambda s=s: s) for s in tensors]


def zero_if_none(grads, targets) -> list[torch.Tensor]:
    return [torch.zeros_like(t.leaf) if g is None else g for g, t in zip(grads, targets)]
