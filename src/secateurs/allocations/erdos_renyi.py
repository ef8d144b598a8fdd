"""Erdős–Rényi (ER) and Erdős–Rényi-Kernel (ERK) layer densities (Evci et al. 2020, "Rigging the Lottery", §3;
Mocanu et al. 2018 for ER).

density_l = ε · raw_l with raw_l = (n_in + n_out) / (n_in · n_out) for ER and raw_l = (sum(shape) / prod(shape))^p
for ERK (torch's (out, in, kh, kw) order).  ε is solved so the total number of kept weights is exactly (1 - S) · N;
a layer whose density would exceed 1 is made dense and ε is re-solved, as in google-research/rigl
`sparse_utils.get_sparsities_erdos_renyi`.  RigL's convention of keeping the first layer dense is the user's
choice here (``dense=["conv1"]``).

``erk_power_scale`` (ERK's option, p above, default 1 = Evci et al.) is google-research/jaxpruner's
``sparsity_distributions.get_sparsities_erdos_renyi(..., erk_power_scale)``: the raw ratio itself is raised to
the power before ε is solved (the kernel variant only, as there), so p < 1 makes the distribution softer — closer
to uniform (p → 0 tends to it) — and p > 1 sharper: ``secateurs.prune(model, 0.9, allocation="erk",
erk_power_scale=0.5)``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated

from ..core.select import Threshold
from ..registry import option, register
from .base import Allocation, LayerInfo, split_exactly


def er_raw(shape: tuple[int, ...], kernel: bool, power: float = 1.0) -> float:
    if kernel:
        return (sum(shape) / math.prod(shape)) ** power
    n_out, n_in = shape[0], (shape[1] if len(shape) > 1 else 1)
    return (n_in + n_out) / (n_in * n_out)


def er_densities(layers: Sequence[LayerInfo], keep: int, kernel: bool, power: float = 1.0) -> list[float]:
    """Per-layer densities min(1, ε·raw) with ε solved so Σ density·n_groups == keep."""
    raw = [er_raw(l.shape, kernel, power) for l in layers]
    dense: set[int] = set()
    while True:
        rest = keep - sum(layers[i].n_groups for i in dense)
        denom = sum(r * l.n_groups for i, (r, l) in enumerate(zip(raw, layers)) if i not in dense)
        eps = rest / denom if denom > 0 else 0.0
        over = {i for i, r in enumerate(raw) if i not in dense and eps * r > 1}
        if not over:
            return [1.0 if i in dense else eps * r for i, r in enumerate(raw)]
        dense |= over


class _ErdosRenyi(Allocation):
    kernel = False
    power = 1.0

    def counts(self, layers: Sequence[LayerInfo], budget: int, seed: int) -> tuple[list[int], list[Threshold | None]]:
        sizes = [l.n_groups for l in layers]
        dens = er_densities(layers, sum(sizes) - budget, self.kernel, self.power)
        pruned = [(1 - d) * n for d, n in zip(dens, sizes)]
        return split_exactly(pruned, sizes, budget), [None] * len(layers)


@register("allocation", "er")
class ER(_ErdosRenyi):
    """Erdős–Rényi: density ∝ (n_in+n_out)/(n_in·n_out) (Mocanu et al. 2018; Evci et al. 2020)."""


@register("allocation", "erk")
class ERK(_ErdosRenyi):
    """Erdős–Rényi-Kernel: density ∝ (sum(shape)/prod(shape))^erk_power_scale, over-full layers dense (Evci et al.
    2020; the power as jaxpruner's ``erk_power_scale``)."""

    kernel = True

    def __init__(self, erk_power_scale: Annotated[float, option(
            "power p of the raw ratio sum(shape)/prod(shape) (jaxpruner): 1 = Evci et al., < 1 nearer uniform",
            gt=0, allow_inf_nan=False)] = 1.0):
        self.power = float(erk_power_scale)

    def options(self) -> dict[str, float]:
        return {"erk_power_scale": self.power}
