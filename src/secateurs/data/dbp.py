"""DBP: density-based pruning (Abbas et al. 2024, "Effective pruning of web-scale datasets based on complexity of
concept clusters", ICLR; reference code amro-kamal/effective_pruning@42c8e54).

Steps (paper Sec. 3, reference ``compute_avg_dist_to_cluster_centroid.py``, ``compute_centroid_distances.py``,
``prune.py``):

1. Spherical k-means on the embeddings (SemDeDup's clustering, cosine distance ``1 − cos``).
2. Per cluster j: ``d_intra_j`` = mean distance of its members to its centroid; ``d_inter_j`` = mean ``1 − cos`` to
   its ``num_nns`` (20) nearest other centroids.  Complexity ``C_j = d_inter_j · d_intra_j`` (NaN → mean of the rest).
3. ``P = softmax(C / τ)`` (τ = 0.5, prune.py's default).
4. Quotas ``N_j`` from the QP ``min_x ||x − P·N||²`` s.t. ``Σ x = N`` (examples kept) and
   ``min(m, |C_j| − 1) ≤ x_j ≤ |C_j|``, ``m = int(N / k · balance)`` (``--cls-bal-ratio`` 0.5; ``balance=0`` → m = 1).
5. In each cluster keep the ``N_j`` *least prototypical* examples (farthest from the centroid: ``--which-to-keep
   hard``, the default).

How it fits :func:`~secateurs.data.score` + :func:`~secateurs.data.select`: the quotas depend on the rate, so DBP is
split in two.  The scorer ``"dbp"`` returns each example's distance to its centroid (``harder="high"``) and records
the clustering in ``meta`` (``clusters``: cluster of every example; ``complexity``: ``C_j``; ``sizes``, ``d_intra``,
``d_inter``).  The selector ``"dbp"`` (``select(scores, rate, strategy="dbp", clusters=..., complexity=...)``)
computes the quotas for that rate and keeps the hardest ``N_j`` of every cluster; :func:`dbp_select` does the same in
one call from the :class:`Scores`.  ``select(dbp_scores, strategy="hard")`` is plain global distance-to-centroid
selection, not DBP.

Deviations: the QP is solved exactly as a projection onto a capped simplex (bisection on the multiplier,
:func:`quota_qp`) instead of OSQP, and the quotas are rounded by largest remainder so that they add up to exactly
``N`` (the reference rounds each with ``rint``, so its total can be off by a few).  SemDeDup deduplication, which the
paper runs first, is not part of DBP here.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError, MissingDataError
from ..registry import register
from .kmeans import default_n_clusters, kmeans
from .score import Scores
from .select import keep_count, ranked
from .ssp import embeddings_for

__all__ = ["cluster_complexity", "dbp", "dbp_budgets", "dbp_select", "dbp_selector", "quota_qp"]

NUM_NNS = 20  # compute_centroid_distances.py --num_NNs
TEMPERATURE = 0.5  # prune.py --temperature
BALANCE = 0.5  # prune.py --cls-bal-ratio


def cluster_complexity(
    centroids: np.ndarray, labels: np.ndarray, distance: np.ndarray, num_nns: int = NUM_NNS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(C, d_intra, d_inter)`` per cluster (Abbas et al. 2024, Sec. 3.2).

    ``d_intra_j`` = mean of ``distance`` over the members of cluster j; ``d_inter_j`` = mean of ``1 − cos(c_j, c_i)``
    over the ``min(num_nns, k − 1)`` most similar other centroids; ``C_j = d_inter_j · d_intra_j``.  An empty cluster
    (or k = 1) gives NaN, replaced by the mean of the other complexities as in prune.py (1.0 when all are NaN).
    """
    k = centroids.shape[0]
    sizes = np.bincount(labels, minlength=k)
    sums = np.bincount(labels, weights=distance, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        d_intra = np.where(sizes > 0, sums / np.maximum(sizes, 1), np.nan)
    c = centroids.astype(np.float64)
    c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    nn = min(num_nns, k - 1)
    if nn >= 1:
        sims = c @ c.T
        np.fill_diagonal(sims, -np.inf)  # exclude self, as the reference drops the first neighbour
        top = -np.sort(-sims, axis=1)[:, :nn]
        d_inter = np.mean(1.0 - top, axis=1)
    else:
        d_inter = np.full(k, np.nan)
    comp = d_inter * d_intra
    if np.isnan(comp).all():
        comp = np.ones(k)
    else:
        comp = np.where(np.isnan(comp), np.nanmean(comp), comp)
    return comp, d_intra, d_inter


def quota_qp(target: np.ndarray, lower: np.ndarray, upper: np.ndarray, total: float) -> np.ndarray:
    """Exact solution of ``min_x ||x − target||²`` s.t. ``Σ x = total``, ``lower ≤ x ≤ upper`` (the DBP QP).

    KKT: ``x_j = clip(target_j − ν, lower_j, upper_j)`` for the one ν with ``Σ x = total``; ``Σ x`` decreases in ν,
    so ν is found by bisection to machine precision.  Requires ``Σ lower ≤ total ≤ Σ upper``.
    """
    target, lower, upper = (np.asarray(a, dtype=np.float64) for a in (target, lower, upper))
    if lower.sum() > total + 1e-9 or upper.sum() < total - 1e-9:
        raise InvalidArgumentError(f"the quota QP is infeasible: bounds allow {lower.sum():g}..{upper.sum():g}, "
                                   f"need {total:g}")
    lo, hi = float(np.min(target - upper)) - 1.0, float(np.max(target - lower)) + 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.clip(target - mid, lower, upper).sum() > total:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(1.0, abs(mid)):
            break
    return np.clip(target - 0.5 * (lo + hi), lower, upper)


def dbp_budgets(
    sizes: Any, complexity: Any, keep: int, temperature: float = TEMPERATURE, balance: float = BALANCE
) -> np.ndarray:
    """Examples to keep per cluster, ``N_j`` (int64, adding up to ``keep``) — Abbas et al. 2024, Eq. for ``N_j``.

    ``P = softmax(C / temperature)``; ``x`` = :func:`quota_qp` of ``P · keep`` with bounds
    ``[min(m, |C_j| − 1), |C_j|]``, ``m = int(keep / k · balance)`` (``balance=0``: m = 1); then floors plus the
    largest remainders (never above a cluster's size) so that the total is exactly ``keep``.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    comp = np.asarray(complexity, dtype=np.float64)
    k = len(sizes)
    if sizes.ndim != 1 or comp.shape != sizes.shape or k == 0:
        raise InvalidArgumentError(f"sizes and complexity must be 1-D and aligned, got {sizes.shape} and {comp.shape}")
    if (sizes < 0).any() or not np.isfinite(comp).all():
        raise InvalidArgumentError("cluster sizes must be >= 0 and complexities finite")
    if not (isinstance(temperature, (int, float)) and temperature > 0 and math.isfinite(temperature)):
        raise InvalidArgumentError(f"temperature must be a finite number > 0, got {temperature!r}")
    if not (isinstance(balance, (int, float)) and 0.0 <= balance <= 1.0):
        raise InvalidArgumentError(f"balance (the reference's cls_bal_ratio) must be in [0, 1], got {balance!r}")
    n = int(sizes.sum())
    if isinstance(keep, bool) or not isinstance(keep, (int, np.integer)) or not 1 <= keep <= n:
        raise InvalidArgumentError(f"keep must be an integer in [1, {n}], got {keep!r}")
    z = comp / temperature
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    m = int(keep / k * balance) if balance > 0 else 1
    lower = np.maximum(np.minimum(m, sizes - 1), 0).astype(np.float64)
    upper = sizes.astype(np.float64)
    if lower.sum() > keep:  # tiny keep with many clusters: the floors alone exceed it; relax them
        lower = np.zeros(k)
    x = quota_qp(probs * keep, lower, upper, keep)
    base = np.floor(x + 1e-9).astype(np.int64)
    base = np.clip(base, 0, sizes)
    short = keep - int(base.sum())
    if short > 0:
        room = base < sizes
        frac = np.where(room, x - base, -np.inf)
        order = np.lexsort((np.arange(k), -frac))
        order = order[room[order]][:short]
        base[order] += 1
    elif short < 0:  # float noise pushed a floor up: take back from the smallest remainders
        frac = np.where(base > lower, x - base, np.inf)
        base[np.argsort(frac, kind="stable")[:-short]] -= 1
    return base


def _cluster_meta(meta_or_none: Any, name: str, n: int | None) -> Any:
    if meta_or_none is None:
        raise MissingDataError(f"the dbp selector needs {name}=: pass scores.meta[{name!r}] from score('dbp', ...) "
                               "(or use secateurs.data.dbp.dbp_select(scores, rate))")
    arr = np.asarray(meta_or_none)
    if n is not None and arr.shape != (n,):
        raise InvalidArgumentError(f"{name} must have one entry per example ({n}), got shape {arr.shape}")
    return arr


@register("selector", "dbp")
def dbp_selector(
    difficulty: np.ndarray,
    keep: int,
    *,
    rng: np.random.Generator,
    rate: float,
    clusters: Any = None,
    complexity: Any = None,
    temperature: float = TEMPERATURE,
    balance: float = BALANCE,
) -> np.ndarray:
    """DBP selection (Abbas et al. 2024): per-cluster quotas from the complexity softmax, hardest ``N_j`` per cluster.

    ``clusters``: cluster id of every example; ``complexity``: ``C_j`` of every cluster (both in the ``meta`` of the
    ``"dbp"`` scorer's :class:`Scores`).  Ties in distance are broken at random with ``rng``.
    """
    n = len(difficulty)
    labels = _cluster_meta(clusters, "clusters", n)
    if not np.all(labels == np.round(labels)) or labels.min() < 0:
        raise InvalidArgumentError("clusters must be non-negative integer cluster ids")
    labels = labels.astype(np.int64)
    comp = np.asarray(_cluster_meta(complexity, "complexity", None), dtype=np.float64)
    if comp.ndim != 1 or labels.max() >= len(comp):
        raise InvalidArgumentError(f"complexity must hold one value per cluster (cluster ids go up to {labels.max()}, "
                                   f"got {comp.shape} values)")
    sizes = np.bincount(labels, minlength=len(comp))
    present = sizes > 0  # with a subset of the examples (class-balanced selection) some clusters may be empty
    budgets = np.zeros(len(comp), dtype=np.int64)
    budgets[present] = dbp_budgets(sizes[present], comp[present], keep, temperature, balance)
    kept = []
    for j in np.flatnonzero(budgets):
        members = np.flatnonzero(labels == j)
        kept.append(members[ranked(difficulty[members], rng)[: budgets[j]]])
    return np.concatenate(kept) if kept else np.empty(0, dtype=np.int64)


dbp_selector.prefers = "hard"
dbp_selector.per_example_options = ("clusters",)
dbp_selector.meta_options = ("clusters", "complexity")  # select() fills these from the scores' meta


@register("scorer", "dbp")
def dbp(
    dataset: Any,
    *,
    embeddings: Any = None,
    encoder: Any = None,
    n_clusters: int | None = None,
    num_nns: int = NUM_NNS,
    backend: str = "auto",
    seed: int = 0,
    batch_size: int = 256,
    layer: str | None = None,
    progress: bool = False,
) -> Scores:
    """DBP's clustering (Abbas et al. 2024, Sec. 3): cosine distance of every example to its spherical-k-means
    centroid (``harder="high"``), with the clustering in ``meta`` for the ``"dbp"`` selector.

    ``meta``: ``clusters`` (cluster id per example), ``complexity`` (``C_j = d_inter · d_intra``), ``d_intra``,
    ``d_inter``, ``sizes``, ``n_clusters``, ``num_nns``, ``backend``.  Embedding options as for ``"ssp"``.
    """
    x = embeddings_for(dataset, embeddings, encoder, batch_size=batch_size, layer=layer, progress=progress)
    if isinstance(num_nns, bool) or not isinstance(num_nns, int) or num_nns < 1:
        raise InvalidArgumentError(f"num_nns must be an integer >= 1, got {num_nns!r}")
    k = default_n_clusters(x.shape[0]) if n_clusters is None else n_clusters
    result = kmeans(x, k, metric="cosine", backend=backend, seed=seed)
    comp, d_intra, d_inter = cluster_complexity(result.centroids, result.labels, result.distance, num_nns)
    meta = {
        "n_clusters": int(k), "num_nns": num_nns, "backend": result.backend, "seed": seed,
        "clusters": result.labels.tolist(), "complexity": comp.tolist(), "sizes": result.sizes().tolist(),
        "d_intra": [None if math.isnan(v) else v for v in d_intra.tolist()],
        "d_inter": [None if math.isnan(v) else v for v in d_inter.tolist()],
    }
    return Scores(result.distance, harder="high", meta=meta)


def dbp_select(
    scores: Scores, rate: float, *, temperature: float = TEMPERATURE, balance: float = BALANCE, seed: int = 0
) -> np.ndarray:
    """DBP in one call: the ascending indices kept at pruning ``rate`` from the :class:`Scores` of ``score("dbp")``."""
    meta = getattr(scores, "meta", {}) or {}
    difficulty = np.asarray(scores, dtype=np.float64)
    keep = keep_count(len(difficulty), rate)
    kept = dbp_selector(difficulty, keep, rng=np.random.default_rng(seed), rate=rate,
                        clusters=meta.get("clusters"), complexity=meta.get("complexity"),
                        temperature=temperature, balance=balance)
    return np.sort(kept).astype(np.int64)
