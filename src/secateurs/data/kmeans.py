"""k-means for embedding-based data pruning (SSP, DBP): scikit-learn for small data, faiss for large.

Lloyd's k-means (Lloyd 1982) minimises ``Σ_i ||x_i − c_{a(i)}||²``.  With ``metric="cosine"`` it is *spherical*
k-means (Dhillon & Modha 2001): points and centroids live on the unit sphere and the distance is ``1 − cos``, as in
SemDeDup / DBP (faiss ``Kmeans(spherical=True)`` on L2-normalised embeddings).

Memory is bounded by the embedding matrix: centroids are fitted on a seeded subsample of at most
``max_points_per_centroid × k`` rows (faiss's own default is 256 per centroid), and the assignment of every row to its
nearest centroid is computed chunk by chunk (a chunk's ``rows × k`` distance block stays under ``chunk_bytes``), so
no copy of the full matrix is ever made, even for cosine distances.

Backends (``backend=``):

* ``"sklearn"`` — :class:`sklearn.cluster.KMeans` (k-means++ seeding, ``n_init`` restarts): exact, for small data.
* ``"faiss"`` — :class:`faiss.Kmeans` (Johnson et al. 2019), much faster for large data; an optional dependency
  (``pip install faiss-cpu``).
* ``"minibatch"`` — :class:`sklearn.cluster.MiniBatchKMeans` (Sculley 2010), streamed with ``partial_fit``; the
  fallback for large data when faiss is not installed (a :class:`UserWarning` says so).
* ``"auto"`` (default) — ``"sklearn"`` when ``n_rows ≤ SMALL_ROWS`` (50,000), else ``"faiss"``, or
  ``"minibatch"`` with a warning when faiss is missing.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError, MissingDataError, NonFiniteError

__all__ = ["BACKENDS", "KMeansResult", "METRICS", "SMALL_ROWS", "assign", "as_embeddings", "default_n_clusters", "faiss_available",
           "kmeans"]

BACKENDS = ("auto", "sklearn", "faiss", "minibatch")
METRICS = ("euclidean", "cosine")
SMALL_ROWS = 50_000  # up to here sklearn's exact KMeans is fast enough; beyond it faiss is 10-100x faster
_CHUNK_BYTES = 32 * 2**20  # distance block per chunk during the assignment


@dataclass(frozen=True)
class KMeansResult:
    """Centroids ``(k, d)`` float32 (unit norm for cosine), each row's cluster ``labels`` ``(n,)`` int64 and its
    ``distance`` ``(n,)`` float64 to that nearest centroid (Euclidean, or ``1 − cos``), and which backend ran."""

    centroids: np.ndarray
    labels: np.ndarray
    distance: np.ndarray
    metric: str
    backend: str

    @property
    def n_clusters(self) -> int:
        return int(self.centroids.shape[0])

    def sizes(self) -> np.ndarray:
        """Number of rows in each cluster, ``(k,)`` int64."""
        return np.bincount(self.labels, minlength=self.n_clusters).astype(np.int64)


def faiss_available() -> bool:
    """Whether the optional ``faiss`` package can be imported."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def as_embeddings(x: Any, name: str = "embeddings") -> np.ndarray:
    """A 2-D float32 C-contiguous view of ``x`` (numpy array or tensor), copied only when its dtype/layout differ.

    Raises InvalidArgumentError for a wrong shape and NonFiniteError for NaN/Inf (checked chunk by chunk)."""
    try:
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InvalidArgumentError(f"{name} must be a non-empty 2-D (examples, features) array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise InvalidArgumentError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    step = max(1, _CHUNK_BYTES // (4 * arr.shape[1]))
    for start in range(0, arr.shape[0], step):
        if not np.isfinite(arr[start:start + step]).all():
            raise NonFiniteError(f"{name} contain NaN or Inf (first bad chunk starts at row {start})")
    return arr


def _normalised(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _resolve_backend(backend: str, n: int) -> str:
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "faiss" and not faiss_available():
        raise MissingDataError("backend='faiss' needs the optional faiss package: pip install faiss-cpu")
    if backend != "auto":
        return backend
    if n <= SMALL_ROWS:
        return "sklearn"
    if faiss_available():
        return "faiss"
    warnings.warn(
        f"k-means on {n} rows: faiss is not installed, falling back to scikit-learn's MiniBatchKMeans "
        "(slower, slightly worse clusters); pip install faiss-cpu for the fast path",
        UserWarning,
        stacklevel=3,
    )
    return "minibatch"


def _training_rows(x: np.ndarray, k: int, max_per_centroid: int, rng: np.random.Generator) -> np.ndarray:
    """A seeded subsample (sorted row indices) of at most ``k × max_per_centroid`` rows, or all rows."""
    n = x.shape[0]
    cap = k * max_per_centroid
    if n <= cap:
        return np.arange(n)
    return np.sort(rng.choice(n, size=cap, replace=False))


def kmeans(
    embeddings: Any,
    n_clusters: int,
    *,
    metric: str = "euclidean",
    backend: str = "auto",
    seed: int = 0,
    n_iter: int | None = None,
    n_init: int | None = None,
    max_points_per_centroid: int = 256,
) -> KMeansResult:
    """Cluster ``embeddings`` (n, d) into ``n_clusters`` groups; return centroids, labels and distances.

    Args:
        embeddings: ``(n, d)`` array or tensor (float32 is used as is, other dtypes are converted once).
        n_clusters: ``k``, in ``[1, n]``.
        metric: ``"euclidean"`` (Lloyd) or ``"cosine"`` (spherical k-means; distance ``1 − cos``).
        backend: ``"auto"``, ``"sklearn"``, ``"faiss"`` or ``"minibatch"`` (module docstring).
        seed: seeds the subsample and the backend's initialisation: same seed, same clusters.
        n_iter: maximum Lloyd iterations; None: each backend's default (sklearn's ``max_iter`` 300, faiss's ``niter``
            25; at most 10 passes over the subsample for the minibatch backend).
        n_init: restarts, the best inertia kept; None: 3 for sklearn, 1 for faiss (``nredo``) and minibatch.
        max_points_per_centroid: centroids are fitted on at most ``k ×`` this many rows (faiss's default 256).

    Raises:
        InvalidArgumentError: bad ``n_clusters``/``metric``/``backend``; NonFiniteError: NaN/Inf in the data;
        MissingDataError: ``backend="faiss"`` without faiss installed.
    """
    x = as_embeddings(embeddings)
    n, d = x.shape
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)) or not 1 <= n_clusters <= n:
        raise InvalidArgumentError(f"n_clusters must be an integer in [1, {n}] (the number of examples), got {n_clusters!r}")
    if metric not in METRICS:
        raise InvalidArgumentError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    for name, value in (("n_iter", n_iter), ("n_init", n_init), ("max_points_per_centroid", max_points_per_centroid)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InvalidArgumentError(f"{name} must be an integer >= 1, got {value!r}")
    k = int(n_clusters)
    chosen = _resolve_backend(backend, n)
    rng = np.random.default_rng(seed)
    rows = _training_rows(x, k, max_points_per_centroid, rng)
    train = x[rows] if len(rows) < n else x  # a subsample copy (≤ k·256 rows), never a copy of the whole matrix
    if metric == "cosine":
        train = _normalised(train)  # a new array: the caller's embeddings are untouched

    if chosen == "sklearn":
        from sklearn.cluster import KMeans

        km = KMeans(n_clusters=k, n_init=n_init or 3, max_iter=n_iter or 300, random_state=seed).fit(train)
        centroids = km.cluster_centers_.astype(np.float32)
    elif chosen == "faiss":
        import faiss

        km = faiss.Kmeans(d, k, niter=n_iter or 25, nredo=n_init or 1, seed=int(seed) % (2**31), spherical=metric == "cosine",
                          verbose=False, max_points_per_centroid=max_points_per_centroid)
        km.train(np.ascontiguousarray(train, dtype=np.float32))
        centroids = np.asarray(km.centroids, dtype=np.float32)
    else:
        from sklearn.cluster import MiniBatchKMeans

        batch = 1024
        km = MiniBatchKMeans(n_clusters=k, random_state=seed, batch_size=batch, n_init=n_init or 1)
        order_rng = np.random.default_rng(seed + 1)
        size = max(batch, k)  # every partial_fit batch must hold at least k rows
        for _ in range(min(n_iter or 10, 10)):  # a few passes over the subsample: MiniBatchKMeans converges in few
            order = order_rng.permutation(len(train))
            for start in range(0, len(order), size):
                km.partial_fit(train[order[start:start + size]])
        centroids = km.cluster_centers_.astype(np.float32)
    if metric == "cosine":
        centroids = _normalised(centroids).astype(np.float32)
    del train
    labels, distance = assign(x, centroids, metric=metric)
    return KMeansResult(centroids=centroids, labels=labels, distance=distance, metric=metric, backend=chosen)


def assign(embeddings: Any, centroids: Any, *, metric: str = "euclidean") -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of every row and the distance to it, chunk by chunk (memory: one ``rows × k`` block).

    The nearest centroid is found with the expanded form ``||x||² − 2x·c + ||c||²`` (or the largest cosine); the
    returned distance is then recomputed directly as ``||x − c||`` (or ``1 − cos``) so that exact duplicates of a
    centroid get a distance of 0 up to rounding, not the cancellation error of the expanded form.
    """
    x = as_embeddings(embeddings)
    c = as_embeddings(centroids, "centroids")
    if c.shape[1] != x.shape[1]:
        raise InvalidArgumentError(f"centroids have {c.shape[1]} features, embeddings {x.shape[1]}")
    if metric not in METRICS:
        raise InvalidArgumentError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    n, k = x.shape[0], c.shape[0]
    labels = np.empty(n, dtype=np.int64)
    distance = np.empty(n, dtype=np.float64)
    if metric == "cosine":
        c = _normalised(c).astype(np.float32)
    c_sq = (c.astype(np.float64) ** 2).sum(1).astype(np.float32)
    step = max(1, min(n, _CHUNK_BYTES // (4 * max(k, x.shape[1]))))
    for start in range(0, n, step):
        chunk = x[start:start + step]
        if metric == "cosine":
            norms = np.maximum(np.linalg.norm(chunk, axis=1), 1e-12)
            sims = chunk @ c.T  # (rows, k); dividing by the row norm does not change the argmax
            best = sims.argmax(1)
            cos = np.einsum("ij,ij->i", chunk.astype(np.float64), c[best].astype(np.float64)) / norms
            dist = np.clip(1.0 - cos, 0.0, 2.0)
        else:
            scores = c_sq[None, :] - 2.0 * (chunk @ c.T)  # ||x||² is the same for every centroid: left out
            best = scores.argmin(1)
            diff = chunk.astype(np.float64) - c[best].astype(np.float64)
            dist = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        labels[start:start + len(chunk)] = best
        distance[start:start + len(chunk)] = dist
    return labels, distance


def default_n_clusters(n: int) -> int:
    """``round(sqrt(n / 2))`` clipped to ``[1, min(n, 1000)]`` — the usual rule of thumb for k-means when the
    number of concepts is unknown (Sorscher et al. 2022 report SSP to be insensitive to k within about a factor of
    ten of the number of classes)."""
    return int(max(1, min(n, 1000, round(math.sqrt(n / 2)))))
