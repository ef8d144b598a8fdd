"""Exact k-smallest selection over many large score tensors without sorting them.

``torch.nn.utils.prune.global_unstructured`` concatenates every score and runs ``topk`` over the whole model,
peaking at many times the model's size.  Here the k-th smallest score is first bracketed from a fixed-size
random sample, then found exactly: one pass counts the scores below the bracket and gathers the few inside it,
and ``kthvalue`` runs on that small band only.  Ties at the threshold are pruned in flat order, so the number
of pruned entries is exactly k and the result is deterministic.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

# below this many scores, one kthvalue over the concatenation is simplest and fast
_DIRECT = 1 << 22
_SAMPLE = 1 << 20

Chunk = Callable[[], torch.Tensor]  # returns a flat float tensor; may recompute (e.g. |W|) on every call


@dataclass(frozen=True)
class Threshold:
    """Prune every score ``< value`` and the first ``ties`` scores ``== value`` (in flat order)."""

    value: float
    ties: int

    @staticmethod
    def none() -> "Threshold":
        return Threshold(-math.inf, 0)


def kth_threshold(chunks: Sequence[Chunk], sizes: Sequence[int], k: int, seed: int = 0) -> Threshold:
    """Threshold that prunes exactly the ``k`` smallest scores over all chunks (``sizes[i]`` entries each)."""
    n = sum(sizes)
    if k <= 0 or n == 0:
        return Threshold.none()
    k = min(k, n)
    if n <= _DIRECT:
        allv = torch.cat([c().reshape(-1) for c in chunks])
        t = allv.kthvalue(k).values
        return Threshold(t.item(), k - int(torch.count_nonzero(allv < t)))
    g = torch.Generator().manual_seed(seed)
    sample = []
    for c, size in zip(chunks, sizes):
        m = max(1, round(_SAMPLE * size / n))
        sample.append(c().reshape(-1)[torch.randint(size, (m,), generator=g)])
    sample = torch.sort(torch.cat(sample)).values
    m = sample.numel()
    rank = k / n * m
    margin = 6 * math.sqrt(m * (k / n) * (1 - k / n)) + 64
    for widen in (1, 4, 16):  # a miss is astronomically rare at 6 sigma; widen, then fall back to exact
        lo_i, hi_i = int(rank - widen * margin), int(rank + widen * margin)
        lo = sample[lo_i].item() if lo_i >= 0 else -math.inf
        hi = sample[hi_i].item() if hi_i < m else math.inf
        below, band = 0, []
        for c in chunks:
            x = c().reshape(-1)
            if lo == -math.inf:  # already-pruned entries score -inf: count them, keep them out of the band
                below += int(torch.count_nonzero(x == lo))
                band.append(x[(x > lo) & (x <= hi)])
            else:
                below += int(torch.count_nonzero(x < lo))
                band.append(x[(x >= lo) & (x <= hi)])
        band = torch.cat(band)
        if k <= below:  # only possible when lo is -inf
            return Threshold(-math.inf, k)
        if below < k <= below + band.numel():
            t = band.kthvalue(k - below).values
            return Threshold(t.item(), k - below - int(torch.count_nonzero(band < t)))
    allv = torch.cat([c().reshape(-1) for c in chunks])  # pragma: no cover
    t = allv.kthvalue(k).values
    return Threshold(t.item(), k - int(torch.count_nonzero(allv < t)))


def keep_masks(chunks: Sequence[Chunk], th: Threshold) -> list[torch.Tensor]:
    """Boolean keep masks (flat) for each chunk under threshold ``th``; ties pruned in flat order across chunks."""
    out, ties = [], th.ties
    for c in chunks:
        x = c().reshape(-1)
        keep = x >= th.value
        if ties > 0:
            eq = x == th.value
            n_eq = int(torch.count_nonzero(eq))
            if n_eq:
                keep &= ~(eq & (eq.cumsum(0) <= ties))
                ties -= min(n_eq, ties)
        out.append(keep)
    return out


def count_pruned_split(chunks: Sequence[Chunk], th: Threshold) -> tuple[list[int], list[Threshold]]:
    """How many entries of each chunk ``th`` prunes, and the per-chunk thresholds that prune exactly those
    (the shared tie budget split in flat order, as keep_masks does)."""
    counts, local, ties = [], [], th.ties
    for c in chunks:
        x = c().reshape(-1)
        take = min(ties, int(torch.count_nonzero(x == th.value))) if ties > 0 else 0
        ties -= take
        counts.append(int(torch.count_nonzero(x < th.value)) + take)
        local.append(Threshold(th.value, take))
    return counts, local


def lowest_k_keep(x: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """Flat keep mask of one tensor that prunes exactly its ``k`` smallest entries."""
    chunk = lambda: x.reshape(-1)  # noqa: E731
    return keep_masks([chunk], kth_threshold([chunk], [x.numel()], k, seed))[0]
