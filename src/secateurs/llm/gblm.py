"""GBLM-Pruner: gradient-based language model pruner (Das, Ma & Shen 2023, "Beyond Size: How Gradients Shape
Pruning Decisions in Large Language Models").

Paper: ``W_m[i,j] = |W_ij|·||X_j||₂ + α·|W_ij|·||G_{:,i,j}||_p``.  Code (VILA-Lab/GBLM-Pruner@9e8aea2,
lib/prune.py ``prune_gblm`` and gradient_computation.py), followed here:

* before the sequential pass, one forward/backward per calibration sequence on the dense model with the
  language-modelling loss (labels = inputs); per weight the l2 accumulation ``G = sqrt(Σ_n (scale·g_n)²)`` with
  ``scale = 100`` (which plays the role of α);
* score ``|W|·sqrt(scaler_row) + |W|·G`` with Wanda's ``scaler_row`` from the sequential pass; per-row
  comparison for unstructured, N:M as in Wanda.

Deliberate differences: the gradients are accumulated and kept in float32 (the reference stores them in
float16); the backward passes run in ``eval()`` mode so that dropout (GPT-2/OPT/BERT) does not make the
gradients random — the reference calls ``model.train()``, which is the same for Llama (no dropout); only the
blocks' linear weights get gradients (the reference computes them for every parameter); the calibration rows
are those of the pruning pass (the reference draws the same C4 rows with the same seed in both scripts).
A model without a language-modelling head (e.g. ``BertModel``) needs ``loss_fn=callable(model, input_ids)``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..errors import InvalidArgumentError, NonFiniteError
from ..registry import register
from .blocks import find_linears, is_transposed
from .pipeline import LLMMethod, Target, progress_bar
from .wanda import select, wanda_scores

LossFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def lm_loss(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """The model's own language-modelling loss with ``labels=input_ids`` (GBLM's gradient_computation.py)."""
    return model(input_ids=input_ids, labels=input_ids).loss


def gradient_norms(model: nn.Module, blocks: nn.ModuleList, rows: torch.Tensor, *, scale: float = 100.0,
                   loss_fn: LossFn = lm_loss, progress: bool = False) -> dict[int, dict[str, torch.Tensor]]:
    """Per block and layer, ``sqrt(Σ_n (scale·∂L_n/∂W)²)`` as an (out, in) float32 matrix (GBLM-Pruner's G).

    One backward pass per calibration row; the model's weights are not changed and its ``requires_grad``
    flags, gradients and train/eval mode are restored afterwards."""
    layers = {(i, name): mod for i, blk in enumerate(blocks) for name, mod in find_linears(blk).items()}
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    old_grads = {id(p): p.grad for p in params}
    was_training = model.training
    acc = {key: torch.zeros_like(mod.weight, dtype=torch.float32) for key, mod in layers.items()}
    try:
        model.eval()
        for p in params:
            p.requires_grad_(False)
            p.grad = None
        for mod in layers.values():
            mod.weight.requires_grad_(True)
        dev = next(iter(layers.values())).weight.device
        with torch.enable_grad(), progress_bar(progress, rows.shape[0], "GBLM gradients") as advance:
            for r in range(rows.shape[0]):
                loss = loss_fn(model, rows[r:r + 1].to(dev))
                if loss is None or not torch.is_tensor(loss) or loss.dim() != 0:
                    raise InvalidArgumentError("gblm's loss_fn must return a scalar loss tensor")
                if not torch.isfinite(loss):
                    raise NonFiniteError(f"gblm: the calibration loss of row {r} is not finite ({loss.item()})")
                loss.backward()
                for key, mod in layers.items():
                    if mod.weight.grad is not None:
                        acc[key] += (mod.weight.grad.float() * scale) ** 2
                        mod.weight.grad = None
                advance()
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
            p.grad = old_grads[id(p)]
        model.train(was_training)
    out: dict[int, dict[str, torch.Tensor]] = {}
    for (i, name), g in acc.items():
        g = g.sqrt_()
        out.setdefault(i, {})[name] = g.t().contiguous() if is_transposed(layers[(i, name)]) else g
    return out


@register("llm_method", "gblm")
class GBLM(LLMMethod):
    """|W|·||X_j||₂ + |W|·||100·∇W||₂ per row (Das et al. 2023, GBLM-Pruner eq. 3 as in its code)."""

    stats = ("scaler_row",)
    needs_gradients = True

    def __init__(self, scale: float = 100.0, loss_fn: LossFn | None = None,
                 gradients: dict[int, dict[str, torch.Tensor]] | None = None):
        """``gradients``: the output of :func:`gradient_norms` from an earlier run on the same dense model and
        calibration rows (a sweep over sparsities need not repeat the backward passes)."""
        if not (isinstance(scale, (int, float)) and scale > 0):
            raise InvalidArgumentError(f"gblm scale must be a positive number (100), got {scale!r}")
        if loss_fn is not None and not callable(loss_fn):
            raise InvalidArgumentError("gblm loss_fn must be a callable(model, input_ids) -> scalar loss")
        if gradients is not None and not isinstance(gradients, dict):
            raise InvalidArgumentError("gblm gradients must be the dict returned by gradient_norms()")
        self.scale, self.loss_fn = float(scale), loss_fn
        self.given = gradients is not None
        self.grads: dict[int, dict[str, torch.Tensor]] = gradients or {}

    def options(self) -> dict[str, Any]:
        """The options, for the report and secateurs.json."""
        loss = "lm" if self.loss_fn is None else getattr(self.loss_fn, "__name__", "custom")
        return {"scale": self.scale, "loss": loss, "gradients": "given" if self.given else "computed"}

    def check(self, model: nn.Module) -> None:
        """A language-modelling head is needed for the default loss; given gradients must match the blocks."""
        if self.given:
            from .blocks import find_blocks

            blocks = find_blocks(model)[1]
            for i, blk in enumerate(blocks):
                for name, layer in find_linears(blk).items():
                    g = self.grads.get(i, {}).get(name)
                    w = layer.weight
                    shape = tuple(w.shape[::-1]) if is_transposed(layer) else tuple(w.shape)
                    if g is None or tuple(g.shape) != shape:
                        raise InvalidArgumentError(f"gblm gradients do not match this model (block {i} {name})")
            return
        head = getattr(model, "get_output_embeddings", lambda: None)()
        if self.loss_fn is None and head is None:
            raise InvalidArgumentError(
                f"gblm needs gradients of a language-modelling loss, but {type(model).__name__} has no LM head; "
                f"load it with AutoModelForCausalLM / AutoModelForMaskedLM or pass loss_fn=callable(model, ids)"
            )

    def prepare(self, model: nn.Module, blocks: nn.ModuleList, rows: torch.Tensor, progress: Any) -> None:
        """Compute G on the dense model before any block is pruned (GBLM's gradient_computation.py)."""
        if self.given:
            return
        self.grads = gradient_norms(model, blocks, rows, scale=self.scale, loss_fn=self.loss_fn or lm_loss,
                                    progress=bool(progress))

    def prune_layer(self, block: int, name: str, weight: torch.Tensor, stats: dict[str, Any],
                    target: Target) -> torch.Tensor:
        """Score ``|W|·sqrt(scaler_row) + |W|·G`` and prune per row / per N:M group."""
        grad = self.grads[block][name].to(weight.device)
        score = wanda_scores(weight, stats["scaler_row"].value) + weight.abs() * grad
        return select(weight, score, target)
