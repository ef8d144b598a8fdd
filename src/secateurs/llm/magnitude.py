"""Magnitude pruning of a transformer's block layers: the baseline of Wanda and SparseGPT.

Follows locuslab/wanda@8e8fc87 lib/prune.py ``prune_magnitude``: the score is ``|W|`` and, unstructured, the
comparison group is the whole weight matrix (one threshold per layer, not per row); N:M compares within every
M consecutive inputs of a row.  No calibration data is needed unless an allocation (OWL) asks for it.
"""
from __future__ import annotations

from typing import Any

import torch

from ..registry import register
from .pipeline import LLMMethod, Target, prune_lowest_in_group, prune_nm


@register("llm_method", "magnitude")
class Magnitude(LLMMethod):
    """|W|, one threshold per layer (per-row for N:M) — the magnitude baseline of Sun et al. 2023 (Wanda)."""

    stats = ()
    needs_data = False

    def prune_layer(self, block: int, name: str, weight: torch.Tensor, stats: dict[str, Any],
                    target: Target) -> torch.Tensor:
        """Zero the lowest-|W| weights of the layer (Wanda repo ``prune_magnitude``).

        Deliberate difference: exactly ``int(numel*s)`` weights are removed, where the reference's
        ``|W| <= sorted[int(numel*s)]`` removes one more (and all ties)."""
        score = weight.abs()
        mask = prune_nm(score, target.n, target.m) if target.is_nm else prune_lowest_in_group(score, target.sparsity)
        weight[mask] = 0
        return weight
