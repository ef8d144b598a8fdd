"""SSP: self-supervised prototypes (Sorscher et al. 2022, "Beyond neural scaling laws: beating power law scaling via
data pruning", NeurIPS, Sec. 5).

Label-free difficulty: run k-means in an embedding space and score each example by its distance to the nearest
centroid (the "prototype"); examples close to a prototype are easy/redundant, far ones hard (``harder="high"``).
The paper clusters self-supervised SwAV embeddings and uses the cosine distance; it keeps the hardest examples when
data is plentiful and the easiest when it is scarce (``select(..., strategy="hard" | "easy")``).

Deviations and open points: the embedding is whatever encoder is given (``encoder=``: a zoo model's penultimate
features, which are *supervised*, or MiniLM for text; or precomputed ``embeddings=`` from any self-supervised
model); the number of clusters defaults to ``round(sqrt(n/2))`` capped at 1,000
(:func:`~secateurs.data.kmeans.default_n_clusters`) — the paper reports SSP to be insensitive to k within about an
order of magnitude of the number of classes, and ALGORITHMS.md marks its exact k and distance as unconfirmed.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..registry import register
from .embeddings import resolve_embeddings
from .kmeans import default_n_clusters, kmeans
from .score import Scores

__all__ = ["embeddings_for", "ssp"]


def embeddings_for(dataset: Any, embeddings: Any, encoder: Any, **embed_options: Any) -> np.ndarray:
    """Embeddings of a scorer's ``dataset`` (a zoo data set name, a ClassificationData — its ``train`` split — or any
    data set / tensor), from ``embeddings`` or ``encoder`` (:func:`~secateurs.data.embeddings.resolve_embeddings`).
    A zoo model name as ``encoder`` is taken pretrained on the named zoo data set."""
    from ..zoo import ClassificationData, load_dataset

    if isinstance(dataset, str):
        embed_options.setdefault("dataset_name", dataset)
        dataset = load_dataset(dataset)
    if isinstance(dataset, ClassificationData):
        embed_options.setdefault("dataset_name", dataset.name)
        dataset = dataset.train
    return resolve_embeddings(dataset, embeddings, encoder, **embed_options)


@register("scorer", "ssp")
def ssp(
    dataset: Any,
    *,
    embeddings: Any = None,
    encoder: Any = None,
    n_clusters: int | None = None,
    metric: str = "cosine",
    backend: str = "auto",
    seed: int = 0,
    batch_size: int = 256,
    layer: str | None = None,
    progress: bool = False,
) -> Scores:
    """Self-supervised-prototype difficulty (Sorscher et al. 2022, Sec. 5): distance to the nearest k-means centroid.

    ``score_i = d(e_i, c_{a(i)})`` with ``a(i) = argmin_j d(e_i, c_j)``, ``d`` the cosine distance ``1 − cos`` (default)
    or the Euclidean one.  No labels are used.  Embeddings: ``embeddings=`` (an ``(n, d)`` array aligned with the data
    set), or ``encoder=`` (see :func:`~secateurs.data.embeddings.embed`), or the inputs themselves when they already
    are vectors.  k-means backend per :func:`~secateurs.data.kmeans.kmeans` (sklearn for small data, faiss for large).
    Returns :class:`Scores` with ``harder="high"``; ``meta`` records k, the metric and the backend used.
    """
    x = embeddings_for(dataset, embeddings, encoder, batch_size=batch_size, layer=layer, progress=progress)
    k = default_n_clusters(x.shape[0]) if n_clusters is None else n_clusters
    result = kmeans(x, k, metric=metric, backend=backend, seed=seed)
    return Scores(result.distance, harder="high",
                  meta={"n_clusters": int(k), "metric": metric, "backend": result.backend, "seed": seed})
