"""SSP (Sorscher et al. 2022) and DBP (Abbas et al. 2024) on data where the answer is known, and the k-means."""
import warnings

import numpy as np
import pytest
import torch

import secateurs.data.dbp as dbp_mod
import secateurs.data.ssp  # noqa: F401  (registers the scorer)
from secateurs.data import score, select
from secateurs.data.dbp import cluster_complexity, dbp_budgets, dbp_select, quota_qp
from secateurs.data.kmeans import assign, faiss_available, kmeans
from secateurs.errors import InvalidArgumentError, MissingDataError, NonFiniteError


def blobs(seed=0, k=4, per=60, dim=16, spread=0.3):
    g = np.random.default_rng(seed)
    centres = g.normal(size=(k, dim)) * 3
    x = np.concatenate([c + spread * g.normal(size=(per, dim)) for c in centres]).astype(np.float32)
    return x, np.repeat(np.arange(k), per), centres


def test_ssp_duplicates_sit_nearest_their_centroid():
    x, _, centres = blobs()
    # a tight group of near-duplicates at each blob's centre, and one far outlier per blob
    dups = np.concatenate([c + 1e-4 * np.ones((5, x.shape[1])) for c in centres]).astype(np.float32)
    outliers = (centres + 2.5).astype(np.float32)
    data = torch.from_numpy(np.concatenate([x, dups, outliers]))
    s = score("ssp", data, n_clusters=4, metric="euclidean", seed=0)
    assert s.harder == "high" and len(s) == len(data)
    order = np.argsort(np.asarray(s))
    n = len(x)
    assert set(order[:20].tolist()) == set(range(n, n + 20))  # the 20 duplicates are the easiest
    assert set(order[-4:].tolist()) == set(range(n + 20, n + 24))  # the outliers the hardest
    kept = select(s, sparsity=0.5, method="hard")
    assert not set(kept.tolist()) & set(range(n, n + 20))
    # cosine (the default) agrees on direction duplicates; same seed, same scores
    s2 = score("ssp", data, n_clusters=4, seed=0)
    assert np.array_equal(s2, score("ssp", data, n_clusters=4, seed=0))
    assert np.asarray(s2)[n:n + 20].max() < np.median(np.asarray(s2)[:n])


def test_ssp_on_zoo_embeddings_and_precomputed(digits):
    torch.manual_seed(0)
    from secateurs import zoo

    model = zoo.build_model("lenet300")
    s = score("ssp", digits.train, encoder=model, n_clusters=10)
    assert len(s) == len(digits.train) and np.isfinite(s).all()
    with pytest.raises(MissingDataError):
        score("ssp", digits.train)  # images are not vectors: an encoder or embeddings are needed
    with pytest.raises(InvalidArgumentError):
        score("ssp", digits.train, embeddings=np.zeros((3, 4)))
    bad = np.ones((len(digits.train), 4))
    bad[3, 1] = np.nan
    with pytest.raises(NonFiniteError):
        score("ssp", digits.train, embeddings=bad)


@pytest.mark.parametrize("backend", ["sklearn", "minibatch"] + (["faiss"] if faiss_available() else []))
def test_kmeans_backends_recover_blobs(backend):
    x, y, _ = blobs(seed=1)
    res = kmeans(x, 4, backend=backend, seed=0, n_init=5)  # restarts: faiss starts from random rows
    # every blob is one cluster
    assert all(len(set(res.labels[y == c].tolist())) == 1 for c in range(4))
    assert res.backend == backend and res.sizes().tolist() == [60] * 4
    labels, dist = assign(x, res.centroids)
    assert np.array_equal(labels, res.labels) and np.allclose(dist, res.distance)


def test_kmeans_auto_falls_back_without_faiss(monkeypatch):
    from secateurs.data import kmeans as km

    monkeypatch.setattr(km, "SMALL_ROWS", 100)
    monkeypatch.setattr(km, "faiss_available", lambda: False)
    x, _, _ = blobs(seed=2)
    with pytest.warns(UserWarning, match="MiniBatchKMeans"):
        res = km.kmeans(x, 4, seed=0)
    assert res.backend == "minibatch"
    with pytest.raises(InvalidArgumentError):
        km.kmeans(x, 0)
    with pytest.raises(InvalidArgumentError):
        km.kmeans(x, 4, metric="manhattan")


def test_quota_qp_is_the_exact_projection():
    target = np.array([5.0, 1.0, 0.5, 3.5])
    x = quota_qp(target, lower=np.array([1, 1, 1, 0.0]), upper=np.array([3, 10, 10, 10.0]), total=8)
    # KKT by hand: x = clip(target - nu, lower, upper) with nu = 0.5 gives [3 (cap), 1 (floor), 1 (floor), 3.0],
    # which sums to 8
    assert np.allclose(x, [3.0, 1.0, 1.0, 3.0])
    with pytest.raises(InvalidArgumentError):
        quota_qp(target, np.ones(4) * 3, np.ones(4) * 4, total=8)


def test_dbp_budgets_on_a_hand_made_clustering():
    sizes = np.array([100, 100, 100])
    comp = np.array([0.0, 0.5, 1.0])
    b = dbp_budgets(sizes, comp, keep=60, temperature=0.5, balance=0.0)
    p = np.exp(comp / 0.5) / np.exp(comp / 0.5).sum()  # softmax(C / tau): 0.0900, 0.2447, 0.6652
    assert b.sum() == 60 and b.tolist() == [5, 15, 40]  # round(p * 60) = 5.4, 14.7, 39.9 -> largest remainders
    assert np.allclose(b, p * 60, atol=1)
    # balance 0.5: at least int(60 / 3 * 0.5) = 10 per cluster; the QP redistributes the rest
    b = dbp_budgets(sizes, comp, keep=60, balance=0.5)
    assert b.sum() == 60 and b[0] == 10 and b[2] > b[1] > 10
    # caps: a small complex cluster is kept entirely, the surplus flows to the others
    b = dbp_budgets(np.array([100, 100, 8]), comp, keep=60, balance=0.0)
    assert b[2] == 8 and b.sum() == 60
    # a lower temperature concentrates the budget on the complex clusters
    assert dbp_budgets(sizes, comp, 60, temperature=0.1, balance=0)[2] > dbp_budgets(sizes, comp, 60, balance=0)[2]
    with pytest.raises(InvalidArgumentError):
        dbp_budgets(sizes, comp, keep=0)
    with pytest.raises(InvalidArgumentError):
        dbp_budgets(sizes, comp, keep=10, temperature=0)


def test_dbp_scorer_and_selector_keep_the_least_prototypical_per_cluster():
    g = np.random.default_rng(0)
    # two tight clusters and one diffuse cluster, on the sphere (cosine)
    dirs = np.eye(8)[:3] * 5
    spreads = [0.2, 0.2, 0.8]
    x = np.concatenate([d + s * g.normal(size=(80, 8)) for d, s in zip(dirs, spreads)]).astype(np.float32)
    s = score("dbp", torch.from_numpy(x), n_clusters=3, seed=0)
    clusters = np.asarray(s.meta["clusters"])
    comp = np.asarray(s.meta["complexity"])
    assert len(set(clusters[:80])) == len(set(clusters[80:160])) == len(set(clusters[160:])) == 1
    diffuse = clusters[200]
    assert comp.argmax() == diffuse  # the diffuse cluster is the most complex
    kept = dbp_select(s, rate=0.75, seed=0)
    assert len(kept) == 60
    per = np.bincount(clusters[kept], minlength=3)
    assert per[diffuse] == per.max() and per.sum() == 60
    for j in range(3):  # within each cluster: the farthest from the centroid
        members = np.flatnonzero(clusters == j)
        chosen = np.intersect1d(members, kept)
        dropped = np.setdiff1d(members, kept)
        if len(chosen) and len(dropped):
            assert np.asarray(s)[chosen].min() >= np.asarray(s)[dropped].max()
    # through select(): the registered selector with the scorer's meta gives the same subset
    via = select(s, sparsity=0.75, method="dbp", clusters=s.meta["clusters"], complexity=s.meta["complexity"])
    assert np.array_equal(np.sort(via), kept)
    # the clusters recorded in the scores' meta are found by select() itself
    assert np.array_equal(np.sort(select(s, sparsity=0.75, method="dbp")), kept)
    plain = np.asarray(s, dtype=float)  # a plain array has no clusters: the selector says what it needs
    with pytest.raises(MissingDataError):
        select(plain, sparsity=0.75, method="dbp")


def test_cluster_complexity_by_hand():
    centroids = np.array([[1.0, 0], [0, 1.0], [-1.0, 0]])
    labels = np.array([0, 0, 1, 2, 2, 2])
    distance = np.array([0.1, 0.3, 0.0, 0.2, 0.2, 0.5])
    comp, d_intra, d_inter = cluster_complexity(centroids, labels, distance, num_nns=1)
    assert np.allclose(d_intra, [0.2, 0.0, 0.3])
    assert np.allclose(d_inter, [1.0, 1.0, 1.0])  # nearest other centroid is orthogonal for each
    assert np.allclose(comp, d_inter * d_intra)
    comp2, _, d_inter2 = cluster_complexity(centroids, labels, distance, num_nns=20)  # capped at k - 1
    assert np.allclose(d_inter2, [1.5, 1.0, 1.5])
