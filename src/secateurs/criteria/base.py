"""Criteria: one importance score per weight; the lowest scores are pruned.

A criterion returns, for each target, a zero-argument callable that gives the scores shaped like the weight.
Cheap criteria (magnitude, random) recompute on every call so that scores for a large model never need to be
held in memory all at once; gradient criteria compute once and return the stored tensor.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from ..core.targets import Target

ScoreFn = Callable[[], torch.Tensor]


@dataclass
class ScoreContext:
    """Everything a criterion may look at."""

    model: nn.Module
    targets: list[Target]
    data: Iterable | None = None
    loss_fn: Callable | None = None
    seed: int = 0
    input_shape: tuple[int, ...] | None = None
    extra: dict = field(default_factory=dict)

    def loss(self) -> Callable:
        return self.loss_fn or nn.functional.cross_entropy

    def device(self) -> torch.device:
        return self.targets[0].leaf.device

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        dev = self.device()
        for batch in self.data:
            x, y = batch[0], batch[1]
            yield x.to(dev), y.to(dev)


class Criterion:
    """Base class.  ``needs_data``: requires (inputs, targets) batches.  ``rounds``: iterative re-scoring."""

    needs_data = False
    rounds = 1

    def scores(self, ctx: ScoreContext) -> list[ScoreFn]:
        raise NotImplementedError


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Score in eval mode (BatchNorm statistics must not move) and restore each module's mode afterwards."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode


def batch_gradients(ctx: ScoreContext, create_graph: bool = False, scale: float = 1.0) -> Iterator[tuple]:
    """Yield, per batch, d loss / d leaf for every target (pruned entries get zero gradient through the mask).

    Uses ``torch.autograd.grad`` so the model's ``.grad`` fields are never touched.  ``scale`` divides the
    logits (GraSP's temperature).
    """
    leaves = [t.leaf for t in ctx.targets]
    loss_fn = ctx.loss()
    with eval_mode(ctx.model), torch.enable_grad():
        for x, y in ctx.batches():
            out = ctx.model(x)
            if scale != 1.0:
                out = out / scale
            loss = loss_fn(out, y)
            yield torch.autograd.grad(loss, leaves, create_graph=create_graph, allow_unused=True)


def as_fns(tensors: list[torch.Tensor]) -> list[ScoreFn]:
    return [(lambda s=s: s) for s in tensors]


def zero_if_none(grads, targets) -> list[torch.Tensor]:
    return [torch.zeros_like(t.leaf) if g is None else g for g, t in zip(grads, targets)]
