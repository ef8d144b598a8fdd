"""RIA: relative importance and activations (Zhang, Zhao, Lin, Sun, Yao, Han, Tanner, Liu & Ji 2024, "Plug-and-Play:
An Efficient Post-training Pruning Method for Large Language Models", ICLR 2024).

Score (paper's RIA, as biomedical-cybernetics/Relative-importance-and-activation-pruning@7bc55b0 lib/prune.py
``prune_ria`` computes it)::

    RI_ij  = |W_ij| / Σ_k |W_kj|  +  |W_ij| / Σ_k |W_ik|          (relative to input column j and output row i)
    S_ij   = RI_ij · (||X_j||₂)^a,  a = 0.5  (``--a``)

with ``||X_j||₂`` taken, as Wanda's, as ``sqrt(scaler_row_j)`` (the running mean over calibration samples of
``||X_j||²``, :class:`secateurs.core.stats.ScalerRow`; the constant ``nsamples^(a/2)`` does not change a ranking).

Comparison group: the reference's default (``--per_outneuron`` off) ranks the **whole layer**:
``thresh = sort(S.flatten())[int(numel·s)]; prune S <= thresh`` — so ``default_scope = "layer"`` with the same
sparsity in every layer (``default_allocation = "uniform"``); ``scope="row"`` is its ``--per_outneuron``.  N:M
prunes the lowest ``M−N`` of every M consecutive inputs of a row (the reference's ``topk(..., largest=False)``).
The reference's ``--reconstruction`` (a SparseGPT update of the kept weights under RIA's mask) is
``solver="sparsegpt"`` here.

Deliberate differences:

* exactly ``round(numel·s)`` weights of a layer are removed; the reference's ``<= sorted[int(numel·s)]`` removes
  one more (and every tie of the threshold);
* a row or column whose weights are all zero has relative importance 0 (the reference divides 0 by 0 → NaN,
  which our engine refuses as non-finite scores); elsewhere the arithmetic is the reference's, in float32;
* **no channel reallocation** (``--reallocation``, the heuristic permutation of input channels before N:M, and its
  ``--lsa`` refinement).  The reference sorts the input channels by score, deals them round-robin into the M
  slots, takes the N:M mask in that permuted order, and then writes it back in the *original* order
  (``W_mask[:, index] = W_mask_permute``) and discards ``index``.  The result is N:M only in a column order that
  exists nowhere: in the stored layout the mask is not N:M (our 2:4 pattern, and 2:4 kernels, need N of every M
  *consecutive* inputs).  Keeping it N:M in storage would need the layer's inputs permuted at run time with
  ``index`` — and ``index`` differs between layers that read the same activations (q/k/v, gate/up each get their
  own), so it cannot be folded into the producing layer; the reference's ``--semi_sparse_acc`` path stores
  ``W[:, index]`` without permuting the inputs, which changes the layer's function.  A mask that is neither N:M
  nor the function of the reference's model cannot be represented faithfully by secateurs' masks, so
  ``reallocation=True`` is refused with this explanation rather than silently approximated.
"""
from __future__ import annotations

from typing import Annotated

import torch

from ..core.targets import Target
from ..errors import InvalidArgumentError
from ..registry import option, register
from .base import Criterion, ScoreContext, ScoreFn


def ria_scores(weight2d: torch.Tensor, scaler_row: torch.Tensor, a: float = 0.5) -> torch.Tensor:
    """``(|W_ij|/Σ_k|W_kj| + |W_ij|/Σ_k|W_ik|) · sqrt(scaler_row_j)^a`` (Zhang et al. 2024) for an (out, in)
    weight, in float32.  All-zero rows/columns score 0."""
    w = weight2d.float().abs()
    col = w.sum(dim=0)  # Σ_k |W_kj|: every output's weight on input j
    row = w.sum(dim=1).reshape(-1, 1)  # Σ_k |W_ik|: every input's weight into output i
    col = col.masked_fill(col == 0, 1)  # an all-zero column/row: 0/1 = 0 instead of 0/0
    row = row.masked_fill(row == 0, 1)
    act = torch.sqrt(scaler_row.reshape(1, -1).to(device=w.device, dtype=torch.float32)) ** a
    return (w / col + w / row) * act


def layer_ria_scores(t: Target, stats: dict, a: float = 0.5) -> torch.Tensor:
    """RIA scores of target ``t`` in the weight's own layout (input norms from ``stats["scaler_row"]``)."""
    return t.unview2d(ria_scores(t.view2d(t.weight.detach()), stats["scaler_row"].value, a))


@register("criterion", "ria")
class RIA(Criterion):
    """(|W|/Σ_col|W| + |W|/Σ_row|W|)·||X_j||₂^a, ranked over the whole layer (Zhang et al. 2024, RIA);
    needs calibration inputs."""

    stats = ("scaler_row",)
    default_scope = "layer"
    default_allocation = "uniform"

    def __init__(self, a: Annotated[float, option("exponent a of the input norm ||X_j||₂^a (the reference's 0.5)",
                                                ge=0, allow_inf_nan=False)] = 0.5,
                 reallocation: Annotated[bool, option("the reference's channel permutation before N:M: refused, "
                                                      "see the module docstring")] = False):
        if reallocation:
            raise InvalidArgumentError(
                "ria reallocation (the reference's --reallocation channel permutation before N:M) is not supported: "
                "the reference maps the permuted N:M mask back to the original column order and discards the "
                "permutation, so the result is not N:M in the weight's layout and cannot be represented by an N:M "
                "mask without permuting each layer's inputs at run time; use pattern='2:4' without it "
                "(see secateurs.criteria.ria)")
        self.a = float(a)

    def options(self) -> dict:
        return {"a": self.a}

    def scores(self, ctx: ScoreContext) -> list[ScoreFn]:
        return [(lambda t=t, st=st: layer_ria_scores(t, st, self.a)) for t, st in zip(ctx.targets, ctx.stats)]
