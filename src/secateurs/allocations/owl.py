"""OWL — Outlier Weighed Layerwise sparsity (Yin et al. 2023, "Outlier Weighed Layerwise Sparsity (OWL): A Missing
Secret Sauce for Pruning LLMs to High Sparsity", Sec. 3), as luuyin/OWL@dddb7a4 lib/prune_all.py
``prune_wanda_outlier`` computes it, for any criterion:

1. on the dense model, per group l (a block in the sequential pipeline; each layer in a one-pass run), the Wanda
   scores ``|W|·||X_j||₂`` of all its layers, concatenated — whatever criterion then prunes; ``D_l`` = the
   percentage of them greater than ``M · mean`` (``check_outlier_mean``; M = ``owl_m``);
2. ``D' = (D − min D)/(max D − min D) · 2λ``; density ``= D' − mean(D') + (1 − s)``; group sparsity
   ``= 1 − density``, set to 0.01 where it would be ≤ 0.  The sparsities average to s and span exactly 2λ; they
   lie in ``[s−λ, s+λ]`` when the outlier ratios are spread symmetrically and in ``[s−2λ, s+2λ]`` in general.
   Groups with more outliers are pruned less.  One ratio per decoder block (the code's granularity, OWL issue #12).

Each layer's count is its group's sparsity times its size, rounded by largest remainders so that the total is
exactly the target (the reference rounds per row, which can miss it slightly).

For N:M patterns OWL follows ``prune_wanda_outlier_structure`` ("OWL-wanda n:m"): the scaled ratios
``(D − min)/(max − min) · λ`` are centred and rounded, and group l keeps ``N + r_l`` of every M (clamped to
[1, M]) — a mixed N:M model; the rounded offsets are balanced to sum to zero so the average sparsity stays
1 − N/M (the reference's plain ``np.round`` can shift it, e.g. to 54% for a 6-block model at 2:4).  λ is then in
weights per group: the README uses λ=2, M=6; with λ < 1 every offset rounds to 0 and the result is plain N:M.

Defaults λ=0.08, M=5 (the README's LLaMA-7B 70% setting; main.py's own default M is 3).  Deliberate
differences: when every group has the same outlier ratio the reference divides by zero, here the allocation is
uniform; a configuration whose largest group sparsity would reach 1 is refused.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import torch

from ..core.select import Threshold
from ..criteria.wanda import layer_wanda_scores
from ..errors import InvalidArgumentError
from ..registry import option, register
from .base import Allocation, LayerInfo, split_exactly


def _wanda(layer: LayerInfo) -> torch.Tensor:
    """OWL's outlier scores of one layer: Wanda's |W|·||X_j||₂ from the layer's weights and input norms."""
    if layer.stats is None or "scaler_row" not in layer.stats:
        raise InvalidArgumentError(f"OWL needs the input norms of layer {layer.name!r} (statistic 'scaler_row'); "
                                   f"it was not called on the calibration data")
    return layer_wanda_scores(layer.target, layer.stats)


def outlier_ratio(scores: torch.Tensor, owl_m: float) -> float:
    """Percentage of entries greater than ``owl_m · mean`` (OWL's ``check_outlier_mean``)."""
    return float((scores > scores.mean() * owl_m).sum().item()) / scores.numel() * 100


def owl_sparsities(ratios: list[float], sparsity: float, owl_lambda: float) -> list[float]:
    """Group sparsities from outlier ratios, unstructured (Yin et al. 2023; ``prune_wanda_outlier``)."""
    d = torch.tensor(ratios, dtype=torch.float64)
    span = float(d.max() - d.min())
    scaled = (d - d.min()) / span * (2 * owl_lambda) if span > 0 else torch.zeros_like(d)
    density = scaled - scaled.mean() + (1 - sparsity)
    return [s if s > 0 else 0.01 for s in (1 - density).tolist()]


def owl_nm(ratios: list[float], n: int, m: int, owl_lambda: float) -> list[int]:
    """Kept N per group, mixed N:M (``prune_wanda_outlier_structure``): ``N + round(centred scaled ratio)``, the
    rounded offsets balanced to sum to zero (largest remainders first)."""
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


@register("allocation", "owl")
class OWL(Allocation):
    """Outlier-weighed layerwise sparsity (Yin et al. 2023): fewer pruned weights where activations have outliers."""

    stats = ("scaler_row",)

    def __init__(self, owl_lambda: Annotated[float, option("λ: layer sparsities spread over s ± λ", ge=0,
                                                         allow_inf_nan=False)] = 0.08,
                 owl_m: Annotated[float, option("outlier threshold M: |W|·||X|| above M × the layer mean", gt=0,
                                                allow_inf_nan=False)] = 5.0,
                 owl_ratios: Annotated[list[float] | None, option("outlier ratios D_l (percent, one per group) "
                                                                  "of an earlier run", min_length=1)] = None):
        """``owl_ratios``: outlier ratios D_l from an earlier run (``report.allocation_options["outlier_ratios"]``)
        on the same dense model, calibration data and ``owl_m``; the statistics are then not needed."""
        self.owl_lambda, self.owl_m = float(owl_lambda), float(owl_m)
        self.given = owl_ratios is not None
        self.outlier_ratios: list[float] = list(owl_ratios or [])
        self.observed: dict[int, float] = {}  # group -> ratio, from observe()
        if self.given:
            self.stats = ()

    def options(self) -> dict[str, Any]:
        """λ, M and the measured outlier ratios D_l (percent, one per group)."""
        return {"owl_lambda": self.owl_lambda, "owl_m": self.owl_m, "outlier_ratios": self.outlier_ratios}

    def check(self, sparsity: float, n: int | None, m: int | None) -> None:
        """Refuse a λ that could prune a whole group (s + 2λ >= 1)."""
        if m is None and sparsity + 2 * self.owl_lambda >= 1:
            raise InvalidArgumentError(
                f"owl_lambda={self.owl_lambda} is too large for sparsity {sparsity}: a group could be pruned "
                f"entirely (sparsity + 2λ must stay below 1); lower owl_lambda"
            )

    def observe(self, layers: Sequence[LayerInfo]) -> None:
        """One block's outlier ratio, computed while its weights are in memory (a streamed checkpoint)."""
        if not self.given:
            scores = torch.cat([_wanda(l).reshape(-1).float().cpu() for l in layers])
            self.observed[layers[0].group] = outlier_ratio(scores, self.owl_m)

    def _ratios(self, layers: Sequence[LayerInfo]) -> dict[int, float]:
        groups = sorted({l.group for l in layers})
        if self.given:
            if len(self.outlier_ratios) <= max(groups):
                raise InvalidArgumentError(f"owl_ratios has {len(self.outlier_ratios)} values for "
                                           f"{max(groups) + 1} groups (blocks)")
            return {g: self.outlier_ratios[g] for g in groups}
        out = {}
        for g in groups:
            if g in self.observed:
                out[g] = self.observed[g]
                continue
            members = [l for l in layers if l.group == g]
            scores = torch.cat([_wanda(l).reshape(-1).float().cpu() for l in members])
            out[g] = outlier_ratio(scores, self.owl_m)
        if not self.outlier_ratios:  # the first call sees every layer; later ones (min_keep loop) subsets
            self.outlier_ratios = [out[g] for g in groups]
        return out

    def counts(self, layers: Sequence[LayerInfo], budget: int, seed: int) -> tuple[list[int], list[Threshold | None]]:
        ratios = self._ratios(layers)
        groups = sorted(ratios)
        total = sum(l.n_groups for l in layers)
        sp = dict(zip(groups, owl_sparsities([ratios[g] for g in groups], budget / max(total, 1), self.owl_lambda)))
        caps = [l.n_groups for l in layers]
        return split_exactly([sp[l.group] * l.n_groups for l in layers], caps, budget), [None] * len(layers)

    def nm_keep(self, layers: Sequence[LayerInfo], n: int, m: int) -> list[int]:
        ratios = self._ratios(layers)
        groups = sorted(ratios)
        keep = dict(zip(groups, owl_nm([ratios[g] for g in groups], n, m, self.owl_lambda)))
        return [keep[l.group] for l in layers]
