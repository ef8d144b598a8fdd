"""Layer-wise sparsity allocation for post-training LLM pruning: ``uniform`` and OWL.

OWL — Outlier Weighed Layerwise sparsity (Yin et al. 2023, "Outlier Weighed Layerwise Sparsity (OWL): A Missing
Secret Sauce for Pruning LLMs to High Sparsity"), as luuyin/OWL@dddb7a4 lib/prune_all.py
``prune_wanda_outlier`` computes it:

1. a dense sequential pass over the calibration rows (nothing pruned) gives, per block l, the Wanda scores
   ``|W|·sqrt(scaler_row)`` of all its linear layers, concatenated; ``D_l`` = percentage of them greater than
   ``M · mean`` (``check_outlier_mean``; M = ``owl_m``);
2. ``D' = (D − min D)/(max D − min D) · 2λ``; density ``= D' − mean(D') + (1 − s)``; block sparsity
   ``= 1 − density``, set to 0.01 where it would be ≤ 0.  The block sparsities average to s and span exactly 2λ
   (``max − min = 2λ``); they lie in ``[s−λ, s+λ]`` when the outlier ratios are spread symmetrically, and in
   ``[s−2λ, s+2λ]`` in general.  Blocks with more outliers are pruned less.  One ratio per decoder block
   (the code's granularity, see OWL issue #12); every layer of the block is pruned at that ratio by the
   chosen method (the reference pairs OWL with Wanda, SparseGPT and magnitude the same way).

For N:M patterns OWL follows the reference's ``prune_wanda_outlier_structure`` ("OWL-wanda n:m"): the scaled
ratios ``(D − min)/(max − min) · λ`` are centred and rounded to integers, and block l keeps ``N + r_l`` of every
M (clamped to [1, M]) — a mixed N:M model; the rounded offsets are balanced to sum to zero so the average
sparsity stays 1 − N/M.  λ is then in weights per group: the README uses λ=2, M=6; with
λ < 1 every offset rounds to 0 and the result is plain N:M.

Defaults λ=0.08, M=5 (the README's LLaMA-7B 70% setting; main.py's own default M is 3).  Deliberate
differences: when every block has the same outlier ratio the reference divides by zero, here the allocation is
uniform; a configuration whose largest block sparsity would reach 1 is refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import InvalidArgumentError
from ..registry import register
from .blocks import find_linears, weight_2d
from .pipeline import Target, sequential
from .wanda import wanda_scores


@dataclass
class AllocationContext:
    """What an allocation may look at: the model, its blocks, the calibration rows and the target."""

    model: nn.Module
    blocks_path: str
    blocks: nn.ModuleList
    rows: torch.Tensor | None
    sparsity: float
    n: int | None
    m: int | None
    device: torch.device
    batch_size: int
    progress: bool


class LLMAllocation:
    """Chooses one :class:`~.pipeline.Target` per block."""

    needs_data = False

    def options(self) -> dict[str, Any]:
        """The allocation's options, for the report and secateurs.json."""
        return {}

    def check(self, sparsity: float, n: int | None, m: int | None) -> None:
        """Raise before anything is touched if the targets cannot be reached."""

    def allocate(self, ctx: AllocationContext) -> list[Target]:
        """One target per block of ``ctx.blocks``; weights must not be changed."""
        raise NotImplementedError


def base_target(sparsity: float, n: int | None, m: int | None) -> Target:
    """The uniform target: keep N of M, or ``sparsity`` unstructured."""
    return Target(1 - n / m, n, m) if m is not None else Target(sparsity)


@register("llm_allocation", "uniform")
class Uniform(LLMAllocation):
    """The same sparsity (or N:M) in every block — the default of Wanda, SparseGPT and GBLM-Pruner."""

    def allocate(self, ctx: AllocationContext) -> list[Target]:
        """The same target for every block."""
        return [base_target(ctx.sparsity, ctx.n, ctx.m)] * len(ctx.blocks)


def outlier_ratio(scores: torch.Tensor, owl_m: float) -> float:
    """Percentage of entries greater than ``owl_m · mean`` (OWL's ``check_outlier_mean``)."""
    return float((scores > scores.mean() * owl_m).sum().item()) / scores.numel() * 100


def owl_sparsities(ratios: list[float], sparsity: float, owl_lambda: float) -> list[float]:
    """Block sparsities from outlier ratios, unstructured (Yin et al. 2023; ``prune_wanda_outlier``)."""
    d = torch.tensor(ratios, dtype=torch.float64)
    span = float(d.max() - d.min())
    scaled = (d - d.min()) / span * (2 * owl_lambda) if span > 0 else torch.zeros_like(d)
    density = scaled - scaled.mean() + (1 - sparsity)
    return [s if s > 0 else 0.01 for s in (1 - density).tolist()]


def owl_nm(ratios: list[float], n: int, m: int, owl_lambda: float) -> list[int]:
    """Kept N per block, mixed N:M (``prune_wanda_outlier_structure``): ``N + round(centred scaled ratio)``.

    Deliberate difference: the offsets are rounded so that they sum to zero (largest remainders first), so the
    average sparsity stays exactly 1 − N/M; the reference's plain ``np.round`` can shift it (e.g. to 54% for a
    6-block model at 2:4)."""
    d = torch.tensor(ratios, dtype=torch.float64)
    span = float(d.max() - d.min())
    scaled = (d - d.min()) / span * owl_lambda if span > 0 else torch.zeros_like(d)
    centred = scaled - scaled.mean()
    offsets = torch.round(centred)
    excess = int(offsets.sum().item())
    if excess:  # undo the rounding where it was least deserved
        residual = offsets - centred
        order = torch.argsort(residual, descending=excess > 0, stable=True)[: abs(excess)]
        offsets[order] -= 1 if excess > 0 else -1
    return [int(min(max(n + o, 1), m)) for o in offsets.tolist()]


@register("llm_allocation", "owl")
class OWL(LLMAllocation):
    """Outlier-weighed layerwise sparsity (Yin et al. 2023): fewer pruned weights in outlier-rich blocks."""

    needs_data = True

    def __init__(self, owl_lambda: float = 0.08, owl_m: float = 5.0, owl_ratios: list[float] | None = None):
        """``owl_ratios``: outlier ratios D_l from an earlier run (``report.allocation_options["outlier_ratios"]``)
        on the same dense model, calibration rows and ``owl_m``; the dense outlier pass is then skipped."""
        if not (isinstance(owl_lambda, (int, float)) and owl_lambda >= 0):
            raise InvalidArgumentError(f"owl_lambda must be >= 0 (0.08), got {owl_lambda!r}")
        if not (isinstance(owl_m, (int, float)) and owl_m > 0):
            raise InvalidArgumentError(f"owl_m must be > 0 (5), got {owl_m!r}")
        if owl_ratios is not None and not (isinstance(owl_ratios, (list, tuple)) and owl_ratios
                                           and all(isinstance(r, (int, float)) for r in owl_ratios)):
            raise InvalidArgumentError("owl_ratios must be a non-empty list of outlier percentages, one per block")
        self.owl_lambda, self.owl_m = float(owl_lambda), float(owl_m)
        self.outlier_ratios: list[float] = list(owl_ratios or [])
        self.given = owl_ratios is not None
        self.needs_data = not self.given

    def options(self) -> dict[str, Any]:
        """λ, M and the measured outlier ratios D_l (percent, one per block)."""
        return {"owl_lambda": self.owl_lambda, "owl_m": self.owl_m, "outlier_ratios": self.outlier_ratios}

    def check(self, sparsity: float, n: int | None, m: int | None) -> None:
        """Refuse a λ that could prune a whole block (s + 2λ >= 1)."""
        if m is None and sparsity + 2 * self.owl_lambda >= 1:
            raise InvalidArgumentError(
                f"owl_lambda={self.owl_lambda} is too large for sparsity {sparsity}: a block could be pruned "
                f"entirely (sparsity + 2λ must stay below 1); lower owl_lambda"
            )

    def allocate(self, ctx: AllocationContext) -> list[Target]:
        """Dense outlier pass (unless ``owl_ratios`` were given), then one target per block."""
        if self.given:
            if len(self.outlier_ratios) != len(ctx.blocks):
                raise InvalidArgumentError(f"owl_ratios has {len(self.outlier_ratios)} values for "
                                           f"{len(ctx.blocks)} blocks")
            return self._targets(self.outlier_ratios, ctx)
        ratios: list[float] = []

        def record(i: int, block: nn.Module, stats: dict[str, dict[str, Any]]) -> None:
            scores = [wanda_scores(weight_2d(layer).float(), stats[name]["scaler_row"].value).flatten()
                      for name, layer in find_linears(block).items()]
            ratios.append(outlier_ratio(torch.cat(scores), self.owl_m))

        sequential(ctx.model, ctx.blocks_path, ctx.blocks, ctx.rows, kinds=("scaler_row",), process=record,
                   modifies=False, device=ctx.device, batch_size=ctx.batch_size, progress=ctx.progress,
                   description="OWL outlier pass")
        self.outlier_ratios = ratios
        return self._targets(ratios, ctx)

    def _targets(self, ratios: list[float], ctx: AllocationContext) -> list[Target]:
        if ctx.m is not None:
            return [Target(1 - k / ctx.m, k, ctx.m) for k in owl_nm(ratios, ctx.n, ctx.m, self.owl_lambda)]
        return [Target(s) for s in owl_sparsities(ratios, ctx.sparsity, self.owl_lambda)]
