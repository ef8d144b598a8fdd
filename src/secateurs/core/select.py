"""Exact k-smallest selection over many large score tensors without sorting them.

``torch.nn.utils.prune.global_unstructured`` concatenates every score and runs ``topk`` over the whole model,
peaking at many times the model's size.  Here the k-th smallest score is first bracketed from a fixed-size
random sample, then found exactly: one pass over each chunk counts the scores below the bracket and gathers the
few inside it, and ``kthvalue`` runs on that small band only.  Ties at the threshold are pruned in flat order,
so the number of pruned entries is exactly k and the result is deterministic.

The bracketing pass also yields each chunk's keep mask (``score >= lo`` is already final outside the band), so
once the threshold is known only the band's entries are fixed up, and the per-chunk counts come from the band:
global selection computes every score twice (sample, bracket) instead of once more for counting and for masks.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

# below this many scores, one kthvalue over the concatenation is simplest and fast
_DIRECT = 1 << 22
# sampled scores: a 6-sigma bracket then holds ~0.5% of the scores.  Per chunk of a many-layer model the sample
# and its band stay below torch's parallel grain (32768 entries), so gathering them opens no parallel region:
# on a busy machine every region of the intra-op pool waits for a time slice (milliseconds each)
_SAMPLE = 1 << 19
_GRAIN = 1 << 15

Chunk = Callable[[], torch.Tensor]  # returns a flat float tensor; may recompute (e.g. |W|) on every call


@dataclass(eq=False)
class _Known:
    """What the bracketing pass learned about one chunk for the threshold it found."""

    chunk: Chunk  # the callable these facts are about (matched by identity before use)
    below: int  # entries < value
    equal: int  # entries == value
    keep: torch.Tensor | None  # flat keep mask under the threshold's flat-order tie split; None once handed out


@dataclass(frozen=True)
class Threshold:
    """Prune every score ``< value`` and the first ``ties`` scores ``== value`` (in flat order).

    ``known`` (one entry per chunk, from :func:`kth_threshold`) lets :func:`count_pruned_split` and
    :func:`keep_masks` answer without reading the scores again; it plays no part in equality.
    """

    value: float
    ties: int
    known: tuple[_Known, ...] | None = field(default=None, compare=False, repr=False)

    @staticmethod
    def none() -> "Threshold":
        return Threshold(-math.inf, 0)

    def _known_for(self, chunks: Sequence[Chunk]) -> tuple[_Known, ...] | None:
        kn = self.known
        if kn is not None and len(kn) == len(chunks) and all(p.chunk is c for p, c in zip(kn, chunks)):
            return kn
        return None


def kth_threshold(chunks: Sequence[Chunk], sizes: Sequence[int], k: int, seed: int = 0) -> Threshold:
    """Threshold that prunes exactly the ``k`` smallest scores over all chunks (``sizes[i]`` entries each)."""
    n = sum(sizes)
    if k <= 0 or n == 0:
        return Threshold.none()
    k = min(k, n)
    if n > _DIRECT:
        th = _sampled(chunks, sizes, k, seed)
        if th is not None:
            return th
    # small inputs, or a sample that missed three times (astronomically rare): one kthvalue over everything
    allv = torch.cat([c().reshape(-1) for c in chunks])
    t = allv.kthvalue(k).values
    return Threshold(t.item(), k - int(torch.count_nonzero(allv < t)))


def _sampled(chunks: Sequence[Chunk], sizes: Sequence[int], k: int, seed: int) -> Threshold | None:
    n = sum(sizes)
    g = torch.Generator().manual_seed(seed)
    sample = []
    for c, size in zip(chunks, sizes):
        m = max(1, round(_SAMPLE * size / n))
        x = c().reshape(-1)  # the indices come from a CPU generator; the scores may live on a GPU
        sample.append(x.index_select(0, torch.randint(size, (m,), generator=g).to(x.device)).cpu())
    del x  # the last chunk's scores: not held through the bracketing pass
    sample = torch.cat(sample)
    m = sample.numel()
    rank = k / n * m
    margin = 6 * math.sqrt(m * (k / n) * (1 - k / n)) + 64
    for widen in (1, 4, 16):  # a miss is astronomically rare at 6 sigma; widen, then fall back to exact
        lo_i, hi_i = int(rank - widen * margin), int(rank + widen * margin)
        lo = sample.kthvalue(lo_i + 1).values.item() if lo_i >= 0 else -math.inf  # no need to sort it all
        hi = sample.kthvalue(hi_i + 1).values.item() if hi_i < m else math.inf
        scratch: list[torch.Tensor] = []
        parts = [_bracket(c, lo, hi, scratch) for c in chunks]
        below = sum(p[0] for p in parts)
        if k <= below:
            if lo == -math.inf:  # prune k of the already-pruned (-inf) entries, in flat order
                return Threshold(-math.inf, k)
            continue  # the k-th is below the bracket: a miss
        if k <= below + sum(p[2].numel() for p in parts):
            return _resolve(chunks, parts, below, k)
    return None


def flat_nonzero(b: torch.Tensor) -> torch.Tensor:
    """Ascending positions of the True entries of a flat bool tensor (``torch.nonzero(b).view(-1)``).

    A sparse mask on the CPU (the bracketing band, ties at a threshold: a fraction of a percent set) is scanned
    eight flags at a time as int64 words, and only the few non-zero words are looked into (in pieces below the
    parallel grain, so as many parallel regions open as for ``torch.nonzero``): ~6x faster than
    ``torch.nonzero`` over the flags, which costs more than the comparison that made them.
    """
    n = b.numel()
    n8 = n - n % 8
    if b.device.type != "cpu" or n < 1 << 16 or not b.is_contiguous() or b.storage_offset() % 8:
        return torch.nonzero(b).view(-1)
    words = torch.nonzero(b[:n8].view(torch.int64)).view(-1)
    if words.numel() > n8 // 64:  # dense (over 1 word in 8 set): the plain scan is as fast
        return torch.nonzero(b).view(-1)
    offsets = torch.arange(8)
    pos = []
    for w in words.split(_GRAIN // 8):
        cand = w.mul(8).unsqueeze(1).add(offsets).view(-1)  # the 8 positions of each word, ascending
        pos.append(cand.masked_select(b.index_select(0, cand)))
    if n8 < n:
        pos.append(torch.nonzero(b[n8:]).view(-1).add_(n8))
    return torch.cat(pos) if len(pos) != 1 else pos[0]


def _bracket(c: Chunk, lo: float, hi: float, scratch: list[torch.Tensor]) \
        -> tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One pass over a chunk: (entries below lo, keep mask ``x >= lo``, band positions, band scores).

    Entries below ``lo`` are pruned and entries above ``hi`` kept whatever the exact threshold, so only the band
    ``[lo, hi]`` (a fraction of a percent) is kept for the exact search.  When ``lo`` is -inf, already-pruned
    entries (-inf) count as below and stay out of the band.  ``scratch`` holds one bool buffer reused by every
    chunk for the band's flags (no flag tensor per chunk but the keep mask, which the caller keeps).
    """
    x = c().reshape(-1)
    keep = x > lo if lo == -math.inf else x >= lo
    below = x.numel() - int(torch.count_nonzero(keep))
    if hi == math.inf:
        band = keep
    else:
        buf = scratch[0] if scratch and scratch[0].numel() >= x.numel() and scratch[0].device == x.device else None
        if buf is None:
            buf = torch.empty(x.numel(), dtype=torch.bool, device=x.device)
            scratch[:] = [buf]
        band = torch.le(x, hi, out=buf[: x.numel()]).logical_and_(keep)
    idx = flat_nonzero(band)  # ascending, i.e. flat order
    return below, keep, idx, x.index_select(0, idx)


def _resolve(chunks, parts, below: int, k: int) -> Threshold:
    """Exact threshold from the gathered bands, and each chunk's final keep mask (band entries fixed up)."""
    band = torch.cat([p[3].cpu() for p in parts])  # chunks may sit on different devices
    t = band.kthvalue(k - below).values
    ties = k - below - int(torch.count_nonzero(band < t))
    known, left = [], ties
    for c, (b, keep, idx, val) in zip(chunks, parts):
        # index_select/index_fill_ rather than x[i] indexing: on CPU these stay single-threaded for a band's
        # few thousand entries instead of paying a parallel region's start-up each
        lt = torch.nonzero(val < t).view(-1)
        eq = torch.nonzero(val == t).view(-1)  # band positions of ties, in flat order
        take = min(left, eq.numel())
        left -= take
        keep.index_fill_(0, idx.index_select(0, torch.cat([lt, eq[:take]])), False)
        known.append(_Known(c, b + lt.numel(), eq.numel(), keep))
    return Threshold(t.item(), ties, tuple(known))


def _keep_one(x: torch.Tensor, value: float, ties: int) -> tuple[torch.Tensor, int]:
    """Keep mask of one flat score tensor; prunes its first ``ties`` entries equal to ``value``. Returns the
    mask and the tie budget left."""
    keep = x >= value
    if ties > 0:
        eq = flat_nonzero(x == value)[:ties]
        keep.index_fill_(0, eq, False)
        ties -= eq.numel()
    return keep, ties


def keep_masks(chunks: Sequence[Chunk], th: Threshold) -> list[torch.Tensor]:
    """Boolean keep masks (flat) for each chunk under threshold ``th``; ties pruned in flat order across chunks."""
    known = th._known_for(chunks)
    out, ties = [], th.ties
    for i, c in enumerate(chunks):
        p = known[i] if known is not None else None
        if p is not None and p.keep is not None:
            keep, p.keep = p.keep, None  # hand the mask over once: the caller owns it and may modify it
            ties -= min(ties, p.equal)
        else:
            keep, ties = _keep_one(c().reshape(-1), th.value, ties)
        out.append(keep)
    return out


def count_pruned_split(chunks: Sequence[Chunk], th: Threshold) -> tuple[list[int], list[Threshold]]:
    """How many entries of each chunk ``th`` prunes, and the per-chunk thresholds that prune exactly those
    (the shared tie budget split in flat order, as keep_masks does)."""
    known = th._known_for(chunks)
    counts, local, ties = [], [], th.ties
    for i, c in enumerate(chunks):
        if known is not None:  # counted by kth_threshold already
            p = known[i]
            take = min(ties, p.equal)
            n_lt, kn = p.below, (p,)  # the local threshold keeps the chunk's mask (same tie split)
        else:
            x = c().reshape(-1)
            take = min(ties, int(torch.count_nonzero(x == th.value))) if ties > 0 else 0
            n_lt, kn = int(torch.count_nonzero(x < th.value)), None
        ties -= take
        counts.append(n_lt + take)
        local.append(Threshold(th.value, take, kn))
    return counts, local


def prune_lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Prune mask (True = remove) of exactly the ``k`` lowest entries of ``scores`` (ties in flat order, i.e. the
    first ``k`` of a stable ascending sort), shaped like ``scores``."""
    chunk: Chunk = lambda: scores  # noqa: E731  (one object, so the threshold's bookkeeping is reused)
    th = kth_threshold([chunk], [scores.numel()], k)
    return keep_masks([chunk], th)[0].logical_not_().reshape(scores.shape)
