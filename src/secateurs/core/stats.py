"""Calibration statistics of each target layer's inputs, gathered by forward pre-hooks.

A criterion, allocation or solver declares the statistics it needs by name (``stats = ("scaler_row",)``); the
engine collects exactly those, once per layer, whichever way the model is walked (one pass over a flat model, or
block by block, :mod:`secateurs.core.sequential`).  Each statistic sees the layer's input as a (tokens, columns)
matrix whose columns match the (out, in) view of the weight: the last dimension for Linear (and GPT-2's Conv1D),
the unfolded patches ``in_channels x kernel`` for Conv1d/Conv2d (as SparseGPT's reference does for convolutions).

* ``scaler_row`` — running mean over samples of ``||X_j||²`` (Wanda, Sun et al. 2023; locuslab/wanda
  lib/layerwrapper.py ``WrappedGPT.add_batch``): ``sqrt(scaler_row)`` is ``||X_j||₂/sqrt(nsamples)``.
* ``hessian`` — running ``H = (2/n) Σ x xᵀ`` in float32 (SparseGPT, Frantar & Alistarh 2023,
  sparsegpt.py ``add_batch``).
* ``sum_row`` — running mean over samples of ``Σ_tokens X_j`` (DSnoT, Zhang et al. 2024; zyxxmu/DSnoT
  lib/layerwrapper.py ``sum_metric_row``): tokens-per-sample × the mean of input j.
* ``var_row`` — the variance of input j over tokens (DSnoT's ``var``): within each sequence, averaged over
  sequences weighted by their tokens, as the reference; over all rows pooled for flat (one-token) samples.
* ``mean_var_row`` — the mean and variance of input j over every token pooled (FLAP, An et al. 2024: the
  fluctuation metric and the bias compensation of structured LLM pruning, :mod:`secateurs.llm.structured.flap`).
* ``flap_fluctuation`` — FLAP's fluctuation exactly as its reference streams it, one calibration row at a time
  (the first row left out, deviations from the running mean), with the same running mean.

A sample is a sequence for (batch, tokens, features) inputs and a row for (batch, features) inputs; statistics
are kept in float32 whatever the model's dtype.
"""
from __future__ import annotations

import math
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelStructureError
from ..registry import get, register
from .targets import LINEAR_TYPES, Target

__all__ = ["ScalerRow", "Hessian", "MeanVarRow", "FlapFluctuation", "pooled_update", "input_columns", "check_collectable", "collect"]


class Statistic:
    """A running statistic of one layer's input columns; ``add`` folds in the inputs (any leading shape, last
    dimension = columns) of ``nseq`` samples."""

    def __init__(self, cols: int, device: torch.device):
        self.cols, self.nsamples = cols, 0

    def add(self, x: torch.Tensor, nseq: int) -> None:
        raise NotImplementedError


class _RunningRowMean(Statistic):
    """Running mean over samples of ``Σ_tokens f(X_j)`` per input column j: ``value *= n/(n+b);
    value += Σ f(x_j)/(n+b)`` for a batch of b samples, as the references accumulate it."""

    def __init__(self, cols: int, device: torch.device):
        super().__init__(cols, device)
        self.value = torch.zeros(cols, device=device, dtype=torch.float32)

    @staticmethod
    def f(x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def column_sum(self, x: torch.Tensor) -> torch.Tensor:
        """``Σ_tokens f(x_j)`` per column of a (tokens, columns) float32 matrix."""
        return self.f(x).sum(dim=0)

    def add(self, x: torch.Tensor, nseq: int) -> None:
        x = x.reshape(-1, x.shape[-1]).float()
        self.value *= self.nsamples / (self.nsamples + nseq)
        self.nsamples += nseq
        self.value += self.column_sum(x) / self.nsamples


@register("statistic", "scaler_row")
class ScalerRow(_RunningRowMean):
    """Running mean over samples of ``||X_j||²`` per input column j (Wanda's ``scaler_row``):
    ``scaler *= n/(n+b); scaler += ||x_j||²/(n+b)`` for a batch of b samples.  ``||x_j||²`` is computed as the
    reference does (``torch.norm(x, p=2) ** 2``, not a sum of squares), so that with the same inputs the scores
    round alike and near-ties break alike (``benchmarks/llm_reference.py --teacher-forced-only``)."""

    @staticmethod
    def f(x: torch.Tensor) -> torch.Tensor:
        return x * x

    def column_sum(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(x, ord=2, dim=0) ** 2


@register("statistic", "hessian")
class Hessian(Statistic):
    """Running ``H = (2/n) Σ x xᵀ`` in float32 (SparseGPT, Frantar & Alistarh 2023, ``add_batch``)."""

    def __init__(self, cols: int, device: torch.device):
        super().__init__(cols, device)
        self.value = torch.zeros(cols, cols, device=device, dtype=torch.float32)

    def add(self, x: torch.Tensor, nseq: int) -> None:
        x = x.reshape(-1, x.shape[-1]).float()
        self.value *= self.nsamples / (self.nsamples + nseq)
        self.nsamples += nseq
        x = math.sqrt(2 / self.nsamples) * x
        self.value.addmm_(x.t(), x)


@register("statistic", "sum_row")
class SumRow(_RunningRowMean):
    """Running mean over samples of ``Σ_tokens X_j`` per input column j (DSnoT's ``sum_metric_row``, Zhang et al.
    2024, zyxxmu/DSnoT lib/layerwrapper.py ``add_batch``): ``value *= n/(n+b); value += Σ x_j/(n+b)`` for a batch
    of b samples — the update of :class:`ScalerRow` with ``x`` in place of ``x²``.  ``W_ij · value_j`` is then the
    expected contribution of weight ij to the sum over a sample's tokens of output i (the expected value of the
    paper's reconstruction-error term, without a factor ``1/tokens``: the reference omits it, and its
    ``update_threshold`` is on this scale)."""

    @staticmethod
    def f(x: torch.Tensor) -> torch.Tensor:
        return x


@register("statistic", "var_row")
class VarRow(Statistic):
    """Population variance of each input column over tokens (DSnoT's ``var``, Zhang et al. 2024, zyxxmu/DSnoT
    lib/layerwrapper.py ``add_batch``).

    As the reference, for samples of several tokens (a sequence, a conv input's patches) it is the variance
    *within* each sample, averaged over samples weighted by their token counts
    (``var = (var·n + var_s·t_s)/(n + t_s)``; the reference sees one sequence per call, so its per-call variance
    is a per-sequence one).  For one-token samples (a flat model's rows, whose within-sample variance is 0) the
    variance is pooled over every row seen (Chan et al.'s parallel update): the limit the reference's per-batch
    variance tends to, but independent of the batch size."""

    def __init__(self, cols: int, device: torch.device):
        super().__init__(cols, device)
        self.value = torch.zeros(cols, device=device, dtype=torch.float32)
        self.ntokens = 0
        self._mean = torch.zeros(cols, device=device, dtype=torch.float32)  # pooled mode only

    def add(self, x: torch.Tensor, nseq: int) -> None:
        x = x.reshape(-1, x.shape[-1]).float()
        tokens = x.shape[0]
        self.nsamples += nseq
        if nseq > 0 and tokens % nseq == 0 and tokens // nseq > 1:  # sequences: within-sample variance
            per = tokens // nseq
            for s in x.reshape(nseq, per, -1):
                v = torch.var(s, dim=0, unbiased=False)
                self.value = v if self.ntokens == 0 else (self.value * self.ntokens + v * per) / (self.ntokens + per)
                self.ntokens += per
            return
        if tokens == 0:
            return
        self._mean, self.value, self.ntokens = pooled_update(self._mean, self.value, self.ntokens, x)


def pooled_update(mean: torch.Tensor, var: torch.Tensor, n: int,
                  x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Fold the rows of ``x`` (tokens, columns) into a running per-column (mean, population variance) of ``n`` rows
    (Chan, Golub & LeVeque 1979, the parallel update): exact whatever the batch sizes."""
    tokens = x.shape[0]
    if tokens == 0:
        return mean, var, n
    m = x.mean(dim=0)
    m2 = ((x - m) ** 2).sum(dim=0)
    total = n + tokens
    delta = m - mean
    m2_all = var * n + m2 + delta ** 2 * (n * tokens / total)
    return mean + delta * (tokens / total), m2_all / total, total


@register("statistic", "mean_var_row")
class MeanVarRow(Statistic):
    """Per input column: the mean (``mean``) and population variance (``value``) over *every* calibration token
    pooled, the statistics of FLAP (An et al. 2024, eq. 5-7; CASIA-IVA-Lab/FLAP lib/layerwrapper.py ``BiasGPT``:
    ``baseline_inp`` is the mean, ``fluc_inp`` the fluctuation).  The reference streams an approximation (the sum
    over a sample's tokens of the squared deviation from the running mean, the first sample left out); this is the
    exact pooled value by :func:`pooled_update`, the same up to a constant factor in the limit, which FLAP's
    per-layer standardisation removes."""

    def __init__(self, cols: int, device: torch.device):
        super().__init__(cols, device)
        self.value = torch.zeros(cols, device=device, dtype=torch.float32)
        self.mean = torch.zeros(cols, device=device, dtype=torch.float32)
        self.ntokens = 0

    def add(self, x: torch.Tensor, nseq: int) -> None:
        x = x.reshape(-1, x.shape[-1]).float()
        self.nsamples += nseq
        self.mean, self.value, self.ntokens = pooled_update(self.mean, self.value, self.ntokens, x)


@register("statistic", "flap_fluctuation")
class FlapFluctuation(Statistic):
    """FLAP's streamed fluctuation (An et al. 2024, eq. 5), transcribed from the reference's update
    (CASIA-IVA-Lab/FLAP lib/layerwrapper.py ``BiasGPT.add_batch``, which its ``prune_flap`` calls with one
    calibration row at a time).  With ``n`` rows seen, running mean ``m_n`` (``mean``) of the rows' token means and
    row ``n+1`` of tokens ``x_t``::

        m_{n+1} = m_n · n/(n+1) + mean_t(x_t) / (n+1)
        F_{n+1} = F_n · (n−1)/n + Σ_t (x_t − m_{n+1})² / (n+1),      F_1 = 0

    (the reference's in-place update makes both factors of its product use the new mean, so the increment is a
    square; the first row contributes nothing).  Rows are folded one at a time whatever the batch size, so the
    value does not depend on how the calibration rows are batched.  ``value`` is ``F``, ``mean`` is ``m``."""

    def __init__(self, cols: int, device: torch.device):
        super().__init__(cols, device)
        self.value = torch.zeros(cols, device=device, dtype=torch.float32)
        self.mean = torch.zeros(cols, device=device, dtype=torch.float32)

    def add(self, x: torch.Tensor, nseq: int) -> None:
        x = x.reshape(-1, x.shape[-1]).float()
        rows = nseq if nseq > 0 and x.shape[0] % nseq == 0 else x.shape[0]
        for r in x.reshape(rows, -1, x.shape[-1]):
            n = self.nsamples
            self.mean = self.mean * (n / (n + 1)) + r.mean(dim=0) / (n + 1)
            if n == 0:
                self.value = torch.zeros_like(self.value)
            else:
                self.value = self.value * ((n - 1) / n) + ((r - self.mean) ** 2).sum(dim=0) / (n + 1)
            self.nsamples += 1


def _conv_geometry(mod: nn.Module) -> tuple[tuple[int, ...], ...] | None:
    """(kernel, dilation, padding, stride) as 2-D tuples for a zero-padded, ungrouped Conv1d/Conv2d; else None."""
    if not isinstance(mod, (nn.Conv1d, nn.Conv2d)) or mod.groups != 1 or mod.padding_mode != "zeros":
        return None
    k, d, s = tuple(mod.kernel_size), tuple(mod.dilation), tuple(mod.stride)
    p = mod.padding
    if isinstance(p, str):
        if p == "valid":
            p = (0,) * len(k)
        elif all(s_ == 1 and (d_ * (k_ - 1)) % 2 == 0 for s_, d_, k_ in zip(s, d, k)):  # symmetric "same"
            p = tuple(d_ * (k_ - 1) // 2 for d_, k_ in zip(d, k))
        else:
            return None
    p = tuple(p)
    if isinstance(mod, nn.Conv1d):
        return (1, *k), (1, *d), (0, *p), (1, *s)
    return k, d, p, s


def check_collectable(t: Target) -> None:
    """Raise :class:`ModelStructureError` (before anything runs) if input statistics cannot be taken for ``t``."""
    if t.param == "weight" and (isinstance(t.module, LINEAR_TYPES) or _conv_geometry(t.module) is not None):
        return
    raise ModelStructureError(
        f"layer {t.name!r} ({type(t.module).__name__}): activation statistics are taken for Linear, GPT-2 Conv1D "
        f"and ungrouped zero-padded Conv1d/Conv2d weights only; leave it out with ignore=[{t.name!r}] or use a "
        f"weights/gradients criterion"
    )


def input_columns(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The layer input as a (tokens, columns) matrix matching the (out, in) weight view, and its sample count."""
    geo = _conv_geometry(module)
    if geo is not None:
        k, d, p, s = geo
        if isinstance(module, nn.Conv1d):
            x = x.unsqueeze(-2)
        cols = F.unfold(x, k, dilation=d, padding=p, stride=s)  # (B, C*kh*kw, L), columns ordered as W.reshape
        return cols.transpose(1, 2).reshape(-1, cols.shape[1]), x.shape[0]
    nseq = x.shape[0] if x.dim() >= 2 else 1
    return x.reshape(-1, x.shape[-1]), nseq


@contextmanager
def collect(targets: Sequence[Target], kinds: Sequence[str], device: torch.device) -> Iterator[list[dict[str, Any]]]:
    """Forward pre-hooks on every target that feed its inputs into the requested statistics.

    Yields one dict per target (filled as the model runs), ``{kind: Statistic}``.  Targets called on the very
    same input tensor (q/k/v, gate/up) share one set of statistics: they are identical by construction, and
    computing a Hessian once instead of three times is most of SparseGPT's statistics cost.  The sharing is
    decided on the first call and checked on every later one.
    """
    stats: list[dict[str, Any]] = [{} for _ in targets]
    source: dict[int, int] = {}  # target -> the target whose statistics it shares
    seen: dict[int, Any] = {}  # target -> weakref of its last input
    last: list[Any] = [None, None]  # (index, weakref) of the previous hook call
    started = [False] * len(targets)
    handles = []
    for i, t in enumerate(targets):

        def hook(mod: nn.Module, args: tuple, kwargs: dict, _i: int = i) -> None:
            x = args[0] if args else kwargs["input"]
            prev, prev_ref = last
            last[0], last[1] = _i, weakref.ref(x)
            seen[_i] = last[1]
            if not started[_i]:
                started[_i] = True
                if prev_ref is not None and prev_ref() is x and started[prev] and prev != _i:
                    source[_i] = source.get(prev, prev)
                    stats[_i] = stats[source[_i]]
                    return
                stats[_i].update({k: get("statistic", k)(targets[_i].shape2d[1], device) for k in kinds})
            elif _i in source:
                if seen[source[_i]]() is not x:
                    raise ModelStructureError(f"{targets[_i].name} and {targets[source[_i]].name} shared an input "
                                              f"on the first calibration batch but not later; use batch_size=1")
                return
            rows, nseq = input_columns(mod, x.detach())
            for statistic in stats[_i].values():
                statistic.add(rows, nseq)

        handles.append(t.module.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        yield stats
    finally:
        for h in handles:
            h.remove()
