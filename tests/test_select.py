"""core.select: the exact k-smallest selection, on its sampled-threshold path (above ``_DIRECT`` scores: every
real LLM) as well as the direct one.

The sampled path is reached cheaply by lowering ``_DIRECT``/``_SAMPLE`` (monkeypatched), and once for real with
a few Linear layers totalling more than 4M weights.  The oracle is a stable ascending sort of the concatenated
flat scores: exactly its first ``k`` entries are pruned (ties in flat order across chunks)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import secateurs
from secateurs.core import select
from secateurs.core.masks import get_mask_module
from secateurs.core.select import count_pruned_split, flat_nonzero, keep_masks, kth_threshold, prune_lowest
from secateurs.patterns import parse


def oracle_keep(scores: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    """Keep masks that prune the first k entries of a stable ascending sort of the concatenation."""
    flat = torch.cat([s.reshape(-1) for s in scores])
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    keep[torch.sort(flat, stable=True).indices[:k]] = False
    return list(keep.split([s.numel() for s in scores]))


def chunks_of(scores: list[torch.Tensor]):
    return [(lambda s=s: s) for s in scores]


@pytest.fixture
def small_limits(monkeypatch):
    """Send anything above 2,000 scores down the sampled path, with a 512-entry sample; count its calls."""
    monkeypatch.setattr(select, "_DIRECT", 2000)
    monkeypatch.setattr(select, "_SAMPLE", 512)
    calls = {"sampled": 0, "hit": 0}
    real = select._sampled

    def spy(*a, **kw):
        calls["sampled"] += 1
        th = real(*a, **kw)
        calls["hit"] += th is not None
        return th

    monkeypatch.setattr(select, "_sampled", spy)
    return calls


def _select(scores, k, seed=0):
    cs = chunks_of(scores)
    th = kth_threshold(cs, [s.numel() for s in scores], k, seed)
    return th, cs, keep_masks(cs, th)


@pytest.mark.parametrize("k", [1, 137, 5000, 9000, 11999, 12000])
def test_sampled_exact_topk_distinct(small_limits, k):
    g = torch.Generator().manual_seed(1)
    scores = [torch.randperm(n, generator=g).float() + off for n, off in ((4000, 0.5), (5000, 0.25), (3000, 0.0))]
    th, _, keeps = _select(scores, k)
    assert small_limits["hit"] == 1
    assert sum(int((~m).sum()) for m in keeps) == k
    for got, want in zip(keeps, oracle_keep(scores, k)):
        assert torch.equal(got, want)


def test_sampled_ties_are_pruned_in_flat_order(small_limits):
    g = torch.Generator().manual_seed(2)
    scores = [torch.randint(0, 7, (n,), generator=g).float() for n in (3000, 2500, 4500)]  # ~1,400 ties a value
    for k in (1, 999, 4321, 9999):
        _, _, keeps = _select(scores, k)
        assert sum(int((~m).sum()) for m in keeps) == k
        for got, want in zip(keeps, oracle_keep(scores, k)):
            assert torch.equal(got, want)
    assert small_limits["hit"] == 4


def test_sampled_counts_and_local_thresholds_agree_with_masks(small_limits):
    g = torch.Generator().manual_seed(3)
    scores = [torch.randint(0, 50, (n,), generator=g).float() for n in (2100, 3300, 1800)]
    k = 4000
    th, cs, _ = _select(scores, k)
    # count_pruned_split reads the bookkeeping kth_threshold gathered; recomputing from fresh callables agrees
    fresh = chunks_of(scores)
    counts, local = count_pruned_split(cs, kth_threshold(cs, [s.numel() for s in scores], k))
    counts2, local2 = count_pruned_split(fresh, th)
    want = oracle_keep(scores, k)
    assert counts == counts2 == [int((~w).sum()) for w in want]
    assert sum(counts) == k
    for c, lt, w in zip(cs, local, want):  # the engine's per-layer hint selects exactly the layer's share
        assert torch.equal(keep_masks([c], lt)[0], w)
    for c, lt, w in zip(fresh, local2, want):  # and so does the plain (value, ties) threshold
        assert torch.equal(keep_masks([c], lt)[0], w)


def test_sampled_deterministic_and_seed_free(small_limits):
    g = torch.Generator().manual_seed(4)
    scores = [torch.randn(n, generator=g) for n in (3000, 4000)]
    rng = torch.get_rng_state()
    results = [[m.clone() for m in _select(scores, 5555, seed)[2]] for seed in (0, 0, 1, 12345)]
    assert torch.equal(torch.get_rng_state(), rng)  # the sample has its own generator
    for r in results[1:]:  # same seed, same masks; another seed draws another sample but the result is exact
        assert all(torch.equal(a, b) for a, b in zip(results[0], r))
    assert all(torch.equal(a, b) for a, b in zip(results[0], oracle_keep(scores, 5555)))


@pytest.mark.parametrize("k", [10, 2999, 3000, 3001, 7000])
def test_sampled_minus_inf_scores_go_first(small_limits, k):
    """Earlier masks score -inf (masks compose): the k smallest are taken among them first, in flat order."""
    g = torch.Generator().manual_seed(5)
    scores = [torch.rand(n, generator=g) for n in (4000, 4000)]
    scores[0][::4] = -math.inf  # 1000 pruned earlier
    scores[1][1::2] = -math.inf  # 2000 pruned earlier
    th, _, keeps = _select(scores, k)
    assert sum(int((~m).sum()) for m in keeps) == k
    for got, want in zip(keeps, oracle_keep(scores, k)):
        assert torch.equal(got, want)
    if k >= 3000:
        assert all(not m[s == -math.inf].any() for m, s in zip(keeps, scores))
    else:
        assert th.value == -math.inf and th.ties == k


def test_sampled_miss_falls_back_to_exact(small_limits, monkeypatch):
    """Scores that change between the sampling and the bracketing pass make every bracket miss; the exact
    fallback still prunes exactly the k smallest of what the chunks return in the end."""
    monkeypatch.setattr(select, "_SAMPLE", 1 << 15)  # a sample large enough that even the widest bracket is finite
    base = torch.arange(6000, dtype=torch.float32)
    calls = [0]

    def drifting():
        calls[0] += 1
        return base if calls[0] > 1 else base + 1e6  # the sample sees values far above the real ones

    th = kth_threshold([drifting], [6000], 3000)
    assert small_limits["sampled"] == 1 and small_limits["hit"] == 0
    assert sum(count_pruned_split([lambda: base], th)[0]) == 3000
    assert torch.equal(keep_masks([lambda: base], th)[0], base >= 3000)


def test_prune_lowest_above_the_limit(small_limits):
    g = torch.Generator().manual_seed(6)
    s = torch.randint(0, 30, (60, 70), generator=g).float()
    got = prune_lowest(s, 2222)
    assert got.shape == s.shape and int(got.sum()) == 2222
    assert torch.equal(~got.reshape(-1), oracle_keep([s], 2222)[0])
    assert small_limits["hit"] == 1


@pytest.mark.parametrize("n", [70_000, 1 << 17, (1 << 18) + 5])
@pytest.mark.parametrize("density", [0.0, 1e-4, 3e-3, 0.05, 0.5])
def test_flat_nonzero_equals_nonzero(n, density):
    g = torch.Generator().manual_seed(n)
    b = torch.rand(n, generator=g) < density
    b[-1] = density > 0.01  # the tail past the last whole int64 word
    assert torch.equal(flat_nonzero(b), torch.nonzero(b).view(-1))
    assert torch.equal(flat_nonzero(b[8:]), torch.nonzero(b[8:]).view(-1))  # a view at an 8-aligned offset
    assert torch.equal(flat_nonzero(b[3:]), torch.nonzero(b[3:]).view(-1))  # and a misaligned one


# --------------------------------------------------------------------------------------- through the engine
def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 80), nn.ReLU(), nn.Linear(80, 32))


def _keeps(model):
    return [get_mask_module(m).mask for m in model if isinstance(m, nn.Linear)]


def _weights(model):
    return [m.weight.detach().clone() for m in model if isinstance(m, nn.Linear)]


def test_engine_global_magnitude_sampled(small_limits):
    model = _mlp()
    w = _weights(model)
    n = sum(x.numel() for x in w)
    secateurs.prune(model, 0.8, allocation="global")
    assert small_limits["hit"] >= 1
    k = round(0.8 * n)
    keeps = _keeps(model)
    assert sum(int((~m).sum()) for m in keeps) == k
    for got, want in zip(keeps, oracle_keep([x.abs() for x in w], k)):
        assert torch.equal(got.reshape(-1), want)


def test_engine_masks_compose_on_the_sampled_path(small_limits):
    model = _mlp(1)
    w = _weights(model)
    n = sum(x.numel() for x in w)
    secateurs.prune(model, 0.5, allocation="global")
    first = [m.clone() for m in _keeps(model)]
    secateurs.prune(model, 0.85, allocation="global")
    second = _keeps(model)
    assert sum(int((~m).sum()) for m in second) == round(0.85 * n)
    assert all(not (b & ~a).any() for a, b in zip(first, second))  # pruned once, pruned for good
    # the second round ranks the survivors' magnitudes; the earlier-pruned score -inf
    scores = [torch.where(a, x.abs(), -math.inf) for a, x in zip(first, w)]
    for got, want in zip(second, oracle_keep(scores, round(0.85 * n))):
        assert torch.equal(got.reshape(-1), want)


def test_engine_min_keep_on_the_sampled_path(small_limits):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(64, 96), nn.Linear(96, 80), nn.Linear(80, 32))
    with torch.no_grad():
        model[2].weight.mul_(1e-3)  # global magnitude alone would empty the last layer
    n = sum(m.weight.numel() for m in model)
    secateurs.prune(model, 0.9, allocation="global", min_keep=300)
    keeps = _keeps(model)
    assert int(keeps[2].sum()) == 300  # the floor, exactly
    assert sum(int((~m).sum()) for m in keeps) == round(0.9 * n)
    assert small_limits["hit"] >= 1
    # within the floored layer, its 300 largest weights are the ones kept
    s = model[2].parametrizations.weight.original.detach().abs().reshape(-1)
    assert torch.equal(keeps[2].reshape(-1), oracle_keep([s], s.numel() - 300)[0])


def test_engine_block_pattern_on_the_sampled_path(small_limits, monkeypatch):
    monkeypatch.setattr(select, "_DIRECT", 500)  # 1,024 blocks of 4x4 in all
    model = _mlp(3)
    w = _weights(model)
    secateurs.prune(model, 0.75, allocation="global", pattern="4x4")
    keeps = _keeps(model)
    assert small_limits["hit"] >= 1
    groups = [parse("4x4").group_scores(x.abs()) for x in w]  # the pattern's own block scores (sums)
    k = round(0.75 * sum(g.numel() for g in groups))
    assert sum(int((~m).sum()) for m in keeps) == 16 * k
    for got, want, x in zip(keeps, oracle_keep(groups, k), w):
        blocks = got.reshape(x.shape[0] // 4, 4, x.shape[1] // 4, 4)
        assert (blocks.all(3).all(1) | ~blocks.any(3).any(1)).all()  # whole blocks only
        assert torch.equal(blocks[:, 0, :, 0].reshape(-1), want)


def test_engine_layer_scope_and_nm_beside_the_sampled_path(small_limits):
    """The layer scope selects through kth_threshold per layer (sampled here for layers above the limit);
    N:M compares inside its groups of M and never reaches it."""
    model = _mlp(4)
    w = _weights(model)
    secateurs.prune(model, 0.6, allocation="uniform")
    keeps = _keeps(model)
    assert sum(int((~m).sum()) for m in keeps) == round(0.6 * sum(x.numel() for x in w))
    for got, x in zip(keeps, w):  # each layer prunes exactly its lowest, whatever its share
        assert torch.equal(got.reshape(-1), oracle_keep([x.abs()], int((~got).sum()))[0])
    assert small_limits["hit"] >= 2  # 64x96 and 96x80 are above 2,000
    before = small_limits["sampled"]
    nm = _mlp(4)
    secateurs.prune(nm, pattern="2:4")
    assert small_limits["sampled"] == before
    for m in _keeps(nm):
        assert (m.reshape(-1, 4).sum(1) == 2).all()


def test_real_call_above_the_limit():
    """No monkeypatching: 3 x Linear(1024, 1536) = 4.7M weights > 4M take the sampled path for real."""
    torch.manual_seed(7)
    model = nn.Sequential(*[nn.Linear(1024, 1536, bias=False) for _ in range(3)])
    w = [m.weight.detach().abs().reshape(-1).clone() for m in model]
    n = sum(x.numel() for x in w)
    assert n > select._DIRECT
    k = round(0.9 * n)
    th = kth_threshold(chunks_of(w), [x.numel() for x in w], k)
    assert th.known is not None  # only the sampled path gathers per-chunk bookkeeping
    secateurs.prune(model, 0.9, allocation="global")
    keeps = [get_mask_module(m).mask.reshape(-1) for m in model]
    assert sum(int((~m).sum()) for m in keeps) == k
    for got, want in zip(keeps, oracle_keep(w, k)):
        assert torch.equal(got, want)
