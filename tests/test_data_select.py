"""Selectors: exact counts, hard/easy/random semantics, class balance and class coverage, CCS's cutoff, strata and
budgets against hand-computed cases, determinism, bad input."""
import math
import warnings

import numpy as np
import pytest

import secateurs.data as D
from secateurs.errors import InvalidArgumentError, NonFiniteError, UnknownNameError

STRATEGIES = ["hard", "easy", "random", "ccs"]


@pytest.mark.parametrize("n,rate,expected", [
    (1347, 0.9, 135), (1347, 0.3, 943), (10, 0.7, 3), (10, 0.25, 8), (4, 0.5, 2), (5, 0.9, 1), (30, 0.9, 3),
    (100, 0.0, 100), (7, 0.5, 4),  # 3.5 rounds half up
])
def test_keep_count(n, rate, expected):
    assert D.keep_count(n, rate) == expected


@pytest.mark.filterwarnings("ignore:the selection would keep no example")
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("rate", [0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95])
@pytest.mark.parametrize("n", [97, 500])
def test_exact_count_sorted_unique(strategy, rate, n):
    rng = np.random.default_rng(n)
    scores = rng.normal(size=n) ** 3  # skewed: uneven strata
    labels = rng.integers(0, 5, size=n)
    for balanced in (False, True):
        kept = D.select(scores, rate, strategy, labels=labels, seed=1, class_balanced=balanced)
        assert len(kept) == D.keep_count(n, rate)
        assert kept.dtype == np.int64 and np.all(np.diff(kept) > 0) and kept.min() >= 0 and kept.max() < n


def test_hard_easy_follow_harder():
    values = np.array([5.0, 1.0, 4.0, 2.0, 3.0, 0.0])
    assert list(D.select(values, 0.5, "hard")) == [0, 2, 4]
    assert list(D.select(values, 0.5, "easy")) == [1, 3, 5]
    aum_like = D.Scores(values, "low")  # low = hard: the same values now mean the opposite
    assert list(D.select(aum_like, 0.5, "hard")) == [1, 3, 5]
    assert list(D.select(aum_like, 0.5, "easy")) == [0, 2, 4]


def test_ties_are_broken_at_random_not_by_position():
    flat = np.zeros(100)
    picks = [tuple(D.select(flat, 0.9, "hard", seed=s)) for s in range(3)]
    assert len(set(picks)) == 3 and picks[0] != tuple(range(10))
    assert picks[0] == tuple(D.select(flat, 0.9, "hard", seed=0))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_determinism(strategy):
    scores = np.random.default_rng(0).random(300)
    a = D.select(scores, 0.8, strategy, seed=5)
    np.testing.assert_array_equal(a, D.select(scores, 0.8, strategy, seed=5))
    if strategy in ("random", "ccs"):
        assert not np.array_equal(a, D.select(scores, 0.8, strategy, seed=6))


def test_class_balanced_quotas():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    scores = np.arange(100.0)  # class 0 holds the easiest, class 2 the hardest
    kept = D.select(scores, 0.9, "hard", labels=labels, class_balanced=True)
    assert np.bincount(labels[kept]).tolist() == [5, 3, 2]
    assert set(kept) == {45, 46, 47, 48, 49, 77, 78, 79, 98, 99}  # the hardest of each class
    # unbalanced "hard" takes the 10 hardest overall: class 2 only -> two classes are emptied, then covered
    with pytest.warns(RuntimeWarning, match=r"class\(es\) \[0, 1\]"):
        plain = D.select(scores, 0.9, "hard", labels=labels)
    assert len(plain) == 10 and set(np.unique(labels[plain])) == {0, 1, 2}
    assert {49, 79} <= set(plain)  # the hardest example of each emptied class comes in...
    assert not {90, 91} & set(plain)  # ...and the easiest kept ones of the fullest class go out


def test_quotas_add_up_by_largest_remainder():
    labels = np.array([0] * 7 + [1] * 7 + [2] * 6)  # 20 examples, keep 10: 3.5 / 3.5 / 3.0
    kept = D.select(np.arange(20.0), 0.5, "random", labels=labels, class_balanced=True)
    assert sorted(np.bincount(labels[kept]).tolist()) == [3, 3, 4]


def test_empty_class_allowed_when_told():
    labels = np.array([0] * 18 + [1] * 2)
    scores = np.concatenate([np.arange(18.0) + 10, [0.0, 1.0]])  # class 1 is the easiest
    with pytest.warns(RuntimeWarning, match="absent from the subset"):
        kept = D.select(scores, 0.5, "hard", labels=labels, keep_every_class=False)
    assert set(labels[kept]) == {0}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert set(labels[D.select(scores, 0.5, "easy", labels=labels)]) == {0, 1}  # no warning needed


def test_too_few_kept_to_cover_every_class():
    labels = np.arange(20) % 10
    with pytest.raises(InvalidArgumentError, match="cannot cover all 10 classes"):
        D.select(np.arange(20.0), 0.8, "hard", labels=labels)
    with pytest.warns(RuntimeWarning, match="absent from the subset"):
        assert len(D.select(np.arange(20.0), 0.8, "hard", labels=labels, keep_every_class=False)) == 4


# ------------------------------------------------------------------ CCS


def test_ccs_budgets_hand_computed():
    # strata sizes 0, 5, 1, 10, 3 and 10 to keep; visited smallest first:
    # size 0: min(0, 10 // 5 = 2) = 0; size 1: min(1, 10 // 4 = 2) = 1; size 3: min(3, 9 // 3 = 3) = 3;
    # size 5: min(5, 6 // 2 = 3) = 3; size 10: min(10, 3 // 1) = 3
    assert D.ccs_budgets(np.array([0, 5, 1, 10, 3]), 10).tolist() == [0, 3, 1, 3, 3]
    # equal sizes: ties visit lower strata first; 7 // 3 = 2, 5 // 2 = 2, 3 // 1 = 3
    assert D.ccs_budgets(np.array([4, 4, 4]), 7).tolist() == [2, 2, 3]
    assert D.ccs_budgets(np.array([2, 2]), 4).tolist() == [2, 2]
    with pytest.raises(InvalidArgumentError):
        D.ccs_budgets(np.array([1, 1]), 3)


def test_ccs_budgets_always_add_up():
    rng = np.random.default_rng(0)
    for _ in range(200):
        sizes = rng.integers(0, 30, size=rng.integers(1, 60))
        total = int(rng.integers(0, sizes.sum() + 1))
        b = D.ccs_budgets(sizes, total)
        assert b.sum() == total and np.all(b <= sizes) and np.all(b >= 0)


def test_stratify_equal_width_includes_max():
    ids = D.stratify(np.array([-5.0, -4.0, -3.01, -1.0]), 4)  # width 1: [-5,-4) [-4,-3) [-3,-2) [-2,-1]
    assert ids.tolist() == [0, 1, 1, 3]  # the (negative) maximum lands in the last stratum
    assert D.stratify(np.full(5, 2.0), 50).tolist() == [0] * 5


def test_ccs_hand_computed_case():
    """Scores 0..99, 90 % pruned with beta 0.3: the 30 hardest (70..99) are cut; 0..69 in 5 strata of width 13.8
    hold 14 each (0-13, 14-27, 28-41, 42-55, 56-69); 10 kept = 2 per stratum."""
    scores = np.arange(100.0)
    kept = D.select(scores, 0.9, "ccs", beta=0.3, strata=5, seed=3)
    assert len(kept) == 10 and kept.max() < 70
    assert np.bincount(kept // 14, minlength=5).tolist() == [2, 2, 2, 2, 2]


def test_ccs_skewed_strata_follow_budgets():
    # 60 easy examples in one stratum, 4 + 3 + 2 + 1 in four rarer strata; 21 kept, no cutoff:
    # sizes (60, 4, 3, 2, 1) -> the four small strata whole (1, 2, 3, 4), then the 11 left from the big one
    scores = np.concatenate([np.zeros(60), np.full(4, 1.0), np.full(3, 2.0), np.full(2, 3.0), [4.0]])
    kept = D.select(scores, 0.7, "ccs", beta=0.0, strata=5, seed=0)
    assert len(kept) == 21  # round(70 * 0.3)
    counts = [int(np.sum(scores[kept] == v)) for v in (0, 1, 2, 3, 4)]
    assert counts == [11, 4, 3, 2, 1]  # rare strata kept whole: coverage; hard-only would take none of value 0


def test_ccs_default_beta_table():
    assert [D.default_beta(r) for r in (0.0, 0.3, 0.5, 0.69, 0.7, 0.75, 0.8, 0.9, 0.95)] == \
        [0.0, 0.0, 0.0, 0.0, 0.1, 0.1, 0.2, 0.3, 0.3]
    scores = np.arange(1000.0)
    kept = D.select(scores, 0.9, "ccs", seed=0)  # default beta 0.3: nothing above the 70th percentile
    assert kept.max() < 700


def test_ccs_cutoff_scores_and_low_is_hard():
    scores = np.arange(100.0)
    cut_by = D.Scores(np.r_[np.zeros(10), np.ones(90)], "low")  # the first 10 are the "mislabeled" (low AUM)
    kept = D.select(scores, 0.8, "ccs", beta=0.1, strata=4, cutoff_scores=cut_by, seed=0)
    assert len(kept) == 20 and kept.min() >= 10
    aum = D.Scores(-np.arange(100.0), "low")  # low = hard: the cutoff removes the most negative, 90..99
    assert D.select(aum, 0.8, "ccs", beta=0.1, seed=0).max() < 90


def test_ccs_class_balanced():
    labels = np.repeat([0, 1], 50)
    kept = D.select(np.arange(100.0), 0.9, "ccs", labels=labels, class_balanced=True, seed=0)
    assert np.bincount(labels[kept]).tolist() == [5, 5]


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5, float("nan"), "0.5", True])
def test_bad_rate(rate):
    with pytest.raises(InvalidArgumentError, match="rate must be a number in"):
        D.select(np.arange(10.0), rate, "hard")


def test_bad_input():
    with pytest.raises(NonFiniteError, match="non-finite"):
        D.select(np.array([1.0, math.nan, 2.0]), 0.5, "hard")
    with pytest.raises(NonFiniteError):
        D.select(np.array([1.0, math.inf, 2.0]), 0.5, "ccs")
    with pytest.raises(InvalidArgumentError, match="aligned"):
        D.select(np.arange(10.0), 0.5, "hard", labels=np.zeros(9, dtype=int))
    with pytest.raises(InvalidArgumentError, match="one-dimensional"):
        D.select(np.zeros((3, 3)), 0.5, "hard")
    with pytest.raises(InvalidArgumentError, match="keeps none"):
        D.select(np.arange(4.0), 0.9, "hard")
    with pytest.raises(UnknownNameError, match="Did you mean 'ccs'"):
        D.select(np.arange(10.0), 0.5, "css")
    with pytest.raises(InvalidArgumentError, match="does not take option"):
        D.select(np.arange(10.0), 0.5, "hard", beta=0.1)
    with pytest.raises(InvalidArgumentError, match="cannot exceed the pruning rate"):
        D.select(np.arange(10.0), 0.5, "ccs", beta=0.6)
    with pytest.raises(InvalidArgumentError, match="strata"):
        D.select(np.arange(10.0), 0.5, "ccs", strata=0)
    with pytest.raises(InvalidArgumentError, match="class_balanced=True needs labels"):
        D.select(np.arange(10.0), 0.5, "hard", class_balanced=True)
    with pytest.raises(InvalidArgumentError, match="non-negative integer"):
        D.select(np.arange(4.0), 0.5, "hard", labels=[0.5, 1, 2, 3])
    with pytest.raises(InvalidArgumentError, match="cutoff_scores has 3 entries"):
        D.select(np.arange(10.0), 0.5, "ccs", cutoff_scores=np.zeros(3))


def test_keep_file_round_trip(tmp_path):
    path = D.save_keep(tmp_path / "keep.json", np.array([1, 5, 7]), 10, rate=0.7, strategy="hard")
    idx, n, info = D.load_keep(path)
    assert idx.tolist() == [1, 5, 7] and n == 10 and info["rate"] == 0.7 and info["kept"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["keep.json"]
    (tmp_path / "x.json").write_text("[1, 2]")
    with pytest.raises(InvalidArgumentError, match="not a secateurs keep file"):
        D.load_keep(tmp_path / "x.json")
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        D.load_keep(tmp_path / "missing.json")
