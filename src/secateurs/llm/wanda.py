"""Wanda: pruning by weights and activations (Sun, Liu, Bair & Kolter 2023, "A Simple and Effective Pruning
Approach for Large Language Models", eq. 1).

Score ``S_ij = |W_ij| · ||X_j||₂``, computed as in locuslab/wanda@8e8fc87 lib/prune.py ``prune_wanda`` as
``|W| · sqrt(scaler_row)`` where ``scaler_row`` is the running mean over calibration sequences of ``||X_j||²``
(lib/layerwrapper.py) — the same ranking, up to a constant.  The comparison group is one output row: the
``int(cols*s)`` lowest scores of every row are removed (stable sort); N:M removes the lowest M−N of every M
consecutive inputs of a row.  The statistics of all the layers of a block are collected in one pass over the
dense block, then the block is re-run to feed the next one (the reference's order).
"""
from __future__ import annotations

from typing import Any

import torch

from ..registry import register
from .pipeline import LLMMethod, Target, prune_lowest_per_row, prune_nm


def wanda_scores(weight: torch.Tensor, scaler_row: torch.Tensor) -> torch.Tensor:
    """``|W| · sqrt(scaler_row)`` (Sun et al. 2023, eq. 1) for an (out, in) weight."""
    return weight.abs() * torch.sqrt(scaler_row.reshape(1, -1))


def select(weight: torch.Tensor, score: torch.Tensor, target: Target) -> torch.Tensor:
    """Zero the weights of the lowest scores, per output row (unstructured) or per M-group (N:M)."""
    mask = prune_nm(score, target.n, target.m) if target.is_nm else prune_lowest_per_row(score, target.sparsity)
    weight[mask] = 0
    return weight


@register("llm_method", "wanda")
class Wanda(LLMMethod):
    """|W|·||X_j||₂ compared within each output row (Sun et al. 2023, eq. 1)."""

    stats = ("scaler_row",)

    def prune_layer(self, block: int, name: str, weight: torch.Tensor, stats: dict[str, Any],
                    target: Target) -> torch.Tensor:
        """Prune one layer with the Wanda score; identical to the reference's non-variant path."""
        return select(weight, wanda_scores(weight, stats["scaler_row"].value), target)
