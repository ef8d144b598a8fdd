"""DSnoT: training-free prune-and-grow refinement of a sparse mask (Zhang, Zhao, Lin, Sun, Yao, Han, Tanner, Liu &
Ji 2024, "Dynamic Sparse No Training: Training-Free Fine-tuning for Sparse LLMs", ICLR 2024), as a solver.

Given the keep mask chosen by any criterion (Wanda, SparseGPT's saliency, magnitude, RIA...), each output row i
swaps, one pair per cycle, a pruned weight back in and a kept weight out so that the *expected* reconstruction
error of the row moves towards 0.  The weights themselves are never changed (pruned entries are set to 0).
Faithful to zyxxmu/DSnoT@4c029df lib/prune.py ``prune_DSnoT`` (LLaMA path), with its defaults (main.py):

* ``M_ij = W_ij · sum_row_j`` — the expected contribution of weight ij to output i summed over a sample's tokens
  (:class:`~secateurs.core.stats.SumRow`, the reference's ``DSnoT_metric``);
* ``err_i = Σ_{j pruned} M_ij`` — the expected error dense − sparse of row i; its sign at the start is kept;
* **grow** (``metric_for_regrowing``): pruned weights ranked by ``M_ij / var_j^p`` (``pow_of_var_regrowing``
  p = 1; :class:`~secateurs.core.stats.VarRow`), stable ascending; if ``err_i > 0`` the next from the top
  (largest positive), else the next from the bottom (most negative) — each end has its own pointer;
* **prune**, unstructured: the kept weights ordered by Wanda's ``|W|·sqrt(scaler_row)`` (always Wanda, whatever
  the initial method, as the reference), then split by the sign of ``M`` — negatives in ascending Wanda order
  first, positives in descending Wanda order last (``return_reorder_indice``); if ``err_i < 0`` the next from
  the end (the positive-M weight of lowest Wanda score), else the next from the start (the negative-M weight of
  lowest Wanda score);
* **prune**, N:M: the kept weight of lowest *initial* score (the base criterion's: Wanda, SparseGPT's
  ``w²/[H⁻¹]_jj²``, magnitude) inside the M-group of the weight just grown, so every group stays N:M; a weight
  swapped out, or grown in, is never chosen again (its score is set to +inf);
* a row swaps only while ``|err_i| > update_threshold`` (0.1) — for N:M also while the sign of ``err_i`` after
  the swap equals its initial sign; unstructured skips that check, as the reference's ``--without_same_sign``
  (``type=bool``, default True, so always on); once a row stops it never restarts; at most ``max_cycle_time`` (50)
  cycles;
* by default the feed-forward layers of a transformer block keep the initial mask (``--skip_layer mlp``, the
  reference's default — only attention projections are refined): a layer inside a module named ``mlp``
  (LLaMA, GPT-2, Mistral..., the reference's ``name.split(".")[0] == "mlp"``) or named ``fc1``/``fc2`` (OPT, the
  reference's lib/prune_opt.py), and not inside an attention module (a name containing ``attn``/``attention``).
  ``skip_layer="self_attn"`` skips the attention layers instead, ``None`` (or ``"no_skip"``) refines every layer;
  ``skip_sub_layer`` skips layers with that own name (``"q_proj"``...).  A flat model's layers are refined.

Deliberate differences (each only where the reference's bookkeeping breaks; in the usual regime the swaps are
the reference's):

* a swap happens only if the grow candidate is a weight that was pruned at the start and still is, and the prune
  candidate is currently kept (and, N:M, has a finite score).  The reference's grow order also lists the kept
  weights (metric 0, in the middle) and a pointer can run into them, or past the other pointer, after which it
  prunes a kept weight without a swap or re-grows one — changing the row's sparsity.  With N:M (whose same-sign
  rule keeps a row growing from one end) this is common: on a small random Llama the reference's 2:4 left about
  15% fewer weights than 2:4 in the refined layers; at high unstructured sparsity its prune pointer can run off
  the kept list (an IndexError at 87.5%).  Here such a row stops, so every row keeps exactly its number of
  weights and N:M stays exactly N:M;
* a kept weight whose ``M`` is exactly 0 is placed between the negatives and the positives of the prune order
  (the reference's index arithmetic would list index 0 twice and drop it);
* an input of zero variance with ``M_ij = 0`` gives a grow metric of 0 rather than 0/0 = NaN.

The reference's ``--pow_of_var_pruning`` is parsed but never used, so it is not an option here.
"""
from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import torch

from ..core.plan import LayerPlan
from ..criteria.wanda import wanda_scores
from ..errors import InvalidArgumentError, PatternError
from ..patterns import NM, Pattern, Unstructured
from ..registry import option, register
from .base import Solver

#: Key of the stats dict under which :class:`secateurs.criteria.dsnot.DSnoTCriterion` leaves, per target name, a
#: callable returning the base criterion's (out, in) scores — the N:M prune order.  Without it, Wanda's.
BASE_SCORES = "dsnot_base_scores"


def dsnot_mask(weight2d: torch.Tensor, keep2d: torch.Tensor, sum_row: torch.Tensor, var_row: torch.Tensor,
               prune_metric: torch.Tensor, *, m: int | None = None, max_cycle_time: int = 50,
               update_threshold: float = 0.1, pow_of_var_regrowing: float = 1.0,
               without_same_sign: bool = True) -> torch.Tensor:
    """DSnoT's prune-and-grow cycles on one (out, in) weight; returns the new keep mask (same count per row).

    ``prune_metric``: Wanda's ``|W|·sqrt(scaler_row)`` (unstructured) or, with ``m`` (N:M groups of M), the
    initial criterion's scores.  ``sum_row``/``var_row``: the inputs' :class:`SumRow`/:class:`VarRow`."""
    W = weight2d.float()
    rows, cols = W.shape
    dev = W.device
    keep = keep2d.to(device=dev, dtype=torch.bool).clone()
    init_pruned = ~keep
    metric = W * sum_row.to(dev).float().reshape(1, -1)  # expected contribution to output i's token sum
    grow = metric.masked_fill(keep, 0)
    err = grow.sum(dim=1, keepdim=True)  # expected (dense − sparse) of each row
    sign0 = torch.sign(err)
    if pow_of_var_regrowing:
        scaled = grow / torch.pow(var_row.to(dev).float().reshape(1, -1), pow_of_var_regrowing)
        grow = torch.where(grow == 0, grow, scaled)  # 0/0 (a silent input) -> 0, not NaN
        del scaled
    grow_order = torch.sort(grow, dim=1, stable=True).indices
    del grow
    step = torch.tensor([1, -1], device=dev)
    gptr = torch.zeros(rows, 2, dtype=torch.long, device=dev)
    gptr[:, 1] = cols - 1

    if m is None:  # prune order: kept weights by Wanda score, negatives of M first, positives reversed last
        by_score = torch.sort(prune_metric.float().to(dev).masked_fill(~keep, math.inf), dim=1, stable=True).indices
        nkeep = keep.sum(dim=1, keepdim=True)
        pos = torch.arange(cols, device=dev).expand(rows, cols)
        v = metric.gather(1, by_score)
        key = torch.where(v < 0, pos, torch.where(v > 0, 3 * cols - pos, cols + pos))
        key = torch.where(pos < nkeep, key, 4 * cols + pos)  # the pruned ones trail, never reached
        prune_order = by_score.gather(1, torch.sort(key, dim=1, stable=True).indices)
        del by_score, v, key
        pptr = torch.zeros(rows, 2, dtype=torch.long, device=dev)
        pptr[:, 1] = nkeep[:, 0] - 1
    else:
        base = prune_metric.float().to(dev).masked_fill(init_pruned, math.inf)
        offsets = torch.arange(m, device=dev).reshape(1, m)

    active = torch.ones(rows, 1, dtype=torch.bool, device=dev)
    zero = torch.zeros_like(err)
    for _ in range(max_cycle_time):
        if not bool(active.any()):
            break
        # grow: from the top of the grow order if the sparse row falls short (err > 0), else from the bottom
        gside = (err > 0).long()
        gi = gptr.gather(1, gside)
        g_ok = (gi >= 0) & (gi < cols)
        g_idx = grow_order.gather(1, gi.clamp(0, cols - 1))
        g = metric.gather(1, g_idx)
        g_ok &= init_pruned.gather(1, g_idx) & ~keep.gather(1, g_idx)
        if m is None:
            pside = (err < 0).long()
            pi = pptr.gather(1, pside)
            p_ok = (pi >= 0) & (pi < nkeep)
            p_idx = prune_order.gather(1, pi.clamp(0, cols - 1))
        else:  # the lowest initial score still kept in the grown weight's group
            start = g_idx - g_idx % m
            pv, pj = base.gather(1, start + offsets).min(dim=1, keepdim=True)
            p_idx = start + pj
            p_ok = torch.isfinite(pv)
        p_ok &= keep.gather(1, p_idx)
        p = metric.gather(1, p_idx)
        after = err + p - g
        update = active & (err.abs() > update_threshold)
        if m is not None or not without_same_sign:
            update &= sign0 == torch.sign(after)
        update &= g_ok & p_ok
        # advance the pointers that were used (rows that stopped are frozen: their pointers no longer matter)
        gptr.scatter_(1, gside, gi + step[gside] * active)
        if m is None:
            pptr.scatter_(1, pside, pi + step[pside] * active)
        else:
            base.scatter_(1, p_idx, torch.where(update, math.inf, pv))
        keep.scatter_(1, p_idx, keep.gather(1, p_idx) & ~update)
        keep.scatter_(1, g_idx, keep.gather(1, g_idx) | update)
        err += torch.where(update, p, zero)
        err -= torch.where(update, g, zero)
        active = update
    return keep


def is_attention(name: str) -> bool:
    """A layer inside an attention module (a parent's name contains ``attn`` or ``attention``)."""
    return any("attn" in p.lower() or "attention" in p.lower() for p in name.split(".")[:-1])


def is_feed_forward(name: str) -> bool:
    """A transformer block's feed-forward layer: inside an ``mlp`` module, or named ``fc1``/``fc2`` (OPT)."""
    parts = name.split(".")
    return not is_attention(name) and ("mlp" in parts[:-1] or parts[-1] in ("fc1", "fc2"))


def skipped(name: str, skip_layer: str | None, skip_sub_layer: str | None) -> bool:
    """Whether DSnoT leaves layer ``name`` with its initial mask (the reference's ``--skip_layer``,
    ``--skip_sub_layer``)."""
    if skip_sub_layer is not None and name.split(".")[-1] == skip_sub_layer:
        return True
    return (skip_layer == "mlp" and is_feed_forward(name)) or (skip_layer == "self_attn" and is_attention(name))


@register("solver", "dsnot")
class DSnoT(Solver):
    """Prune-and-grow per output row towards zero expected reconstruction error; the kept weights are unchanged
    (Zhang et al. 2024, DSnoT); 50 cycles, threshold 0.1, variance power 1, MLP layers skipped."""

    stats = ("scaler_row", "sum_row", "var_row")
    selects = False

    def __init__(
        self,
        max_cycle_time: Annotated[int, option("at most this many prune-and-grow cycles per row", ge=0)] = 50,
        update_threshold: Annotated[float, option("a row swaps while |expected error| exceeds this", ge=0,
                                                  allow_inf_nan=False)] = 0.1,
        pow_of_var_regrowing: Annotated[float, option("power p of the input variance dividing the grow metric",
                                                      ge=0, allow_inf_nan=False)] = 1.0,
        skip_layer: Annotated[Literal["mlp", "self_attn", "no_skip"] | None,
                              option("blocks' layers that keep the initial mask (None or no_skip: none)")] = "mlp",
        skip_sub_layer: Annotated[Annotated[str, option("", min_length=1)] | None,
                                  option("layers with this own name (q_proj...) keep the initial mask")] = None,
        without_same_sign: Annotated[bool, option("unstructured: skip the same-sign check (the reference's "
                                                  "--without_same_sign)")] = True,
    ):
        self.max_cycle_time, self.update_threshold = max_cycle_time, float(update_threshold)
        self.pow_of_var_regrowing = float(pow_of_var_regrowing)
        self.skip_layer = None if skip_layer == "no_skip" else skip_layer
        self.skip_sub_layer = None if skip_sub_layer == "no_skip" else skip_sub_layer
        self.without_same_sign = without_same_sign

    def options(self) -> dict[str, Any]:
        return {"max_cycle_time": self.max_cycle_time, "update_threshold": self.update_threshold,
                "pow_of_var_regrowing": self.pow_of_var_regrowing, "skip_layer": self.skip_layer,
                "skip_sub_layer": self.skip_sub_layer, "without_same_sign": self.without_same_sign}

    def check(self, pattern: Pattern, selecting: bool) -> None:
        if selecting:
            raise InvalidArgumentError("solver 'dsnot' refines a mask chosen by a criterion and a scope; pass "
                                       "scope='row' (DSnoT's) or 'layer', or use method='dsnot', base=...")
        if not isinstance(pattern, (Unstructured, NM)):
            raise PatternError(f"dsnot supports unstructured and N:M patterns (as the reference), not {pattern.name}")

    def solve(self, weight2d: torch.Tensor, keep2d: torch.Tensor | None, stats: dict[str, Any], plan: LayerPlan,
              name: str) -> tuple[torch.Tensor, torch.Tensor]:
        keep = keep2d
        if not skipped(name, self.skip_layer, self.skip_sub_layer) and not bool(keep.all()):
            wanda = wanda_scores(weight2d, stats["scaler_row"].value)
            if plan.is_nm:
                base = stats.get(BASE_SCORES, {}).get(name)
                prune_metric = base() if base is not None else wanda
            else:
                prune_metric = wanda
            keep = dsnot_mask(weight2d, keep2d, stats["sum_row"].value, stats["var_row"].value, prune_metric,
                              m=plan.m if plan.is_nm else None, max_cycle_time=self.max_cycle_time,
                              update_threshold=self.update_threshold,
                              pow_of_var_regrowing=self.pow_of_var_regrowing,
                              without_same_sign=self.without_same_sign)
        return weight2d.masked_fill(~keep, 0), keep
