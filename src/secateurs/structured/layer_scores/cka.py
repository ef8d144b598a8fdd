"""1 − linear CKA (Pons, Yamamoto, Costa & Jordao 2024, "Effective Layer Pruning Through Similarity Metric
Perspective"): for each candidate block, the model is run with that block skipped and its output compared with the
unpruned model's by linear CKA (Kornblith et al. 2019); the blocks whose removal leaves the most similar
representation go.  One-shot ranking; the paper's remove-one-and-fine-tune loop is ``prune_layers(..., n=1)``
called repeatedly."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...errors import ModelStructureError
from ...registry import register
from ..trace import call
from .base import LayerContext, LayerScore, hidden as _hidden, lowest


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two representations of the same n examples (rows): ||Yᶜᵀ Xᶜ||²_F / (||Xᶜᵀ Xᶜ||_F ||Yᶜᵀ Yᶜ||_F)
    with column-centred Xᶜ, Yᶜ (Kornblith et al. 2019); computed through n×n Gram matrices when n is smaller."""
    x, y = x.double().flatten(1), y.double().flatten(1)
    x, y = x - x.mean(0), y - y.mean(0)
    if x.shape[0] < max(x.shape[1], y.shape[1]):
        kx, ky = x @ x.T, y @ y.T
        num, dx, dy = (kx * ky).sum(), kx.norm(), ky.norm()
    else:
        num, dx, dy = (y.T @ x).norm() ** 2, (x.T @ x).norm(), (y.T @ y).norm()
    return float(num / (dx * dy)) if dx > 0 and dy > 0 else 0.0


def _skip_output(out: Any, inp: torch.Tensor) -> Any:
    """The block's output with its hidden state replaced by the block's input (the block skipped)."""
    if isinstance(out, torch.Tensor):
        return inp
    if isinstance(out, tuple) and out and isinstance(out[0], torch.Tensor):
        return (inp, *out[1:])
    raise ModelStructureError(f"cannot skip a block whose output is a {type(out).__name__}")


def cka_scores(model: nn.Module, blocks: nn.Module, batches: list[Any], removable: list[int]) -> list[float | None]:
    """1 − linear CKA between the model's output and its output with block i skipped, per removable block."""
    with torch.no_grad():
        ref = [_hidden(call(model, x)) for x in batches]
    scores: list[float | None] = [None] * len(blocks)
    for i in removable:
        handle = blocks[i].register_forward_hook(lambda m, args, kwargs, out: _skip_output(out, _hidden((args, kwargs))),
                                                 with_kwargs=True)
        try:
            with torch.no_grad():
                outs = [_hidden(call(model, x)) for x in batches]
        finally:
            handle.remove()
        a = torch.cat([r.reshape(r.shape[0], -1) if r.dim() < 3 else r.reshape(-1, r.shape[-1]) for r in ref])
        b = torch.cat([o.reshape(o.shape[0], -1) if o.dim() < 3 else o.reshape(-1, o.shape[-1]) for o in outs])
        scores[i] = 1.0 - linear_cka(a, b)
    return scores


@register("layer_score", "cka")
class CKA(LayerScore):
    """Pons et al. 2024: 1 − linear CKA between the model's output with and without the block; lowest go."""

    def select(self, ctx: LayerContext, n: int) -> tuple[list[int], list[float | None]]:
        scores = cka_scores(ctx.model, ctx.blocks, ctx.batches, ctx.removable)
        return lowest(scores, ctx.removable, n), scores
