"""Data-pruning scorers on tiny tasks whose answer is known: mislabeled examples get the highest EL2N, the lowest
AUM and the most forgetting; GraNd and entropy match their closed forms; seeds average; bad input is refused."""
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import secateurs.data as D
from secateurs import registry
from secateurs.errors import InvalidArgumentError, MissingDataError, NonFiniteError, UnknownNameError

N_PER_CLASS, CLASSES, FLIPPED = 30, 3, 6


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, CLASSES))


@pytest.fixture(scope="module")
def blobs():
    """Three well-separated Gaussian blobs in 64-d (shaped 1x8x8); the labels of FLIPPED examples are wrong."""
    g = torch.Generator().manual_seed(0)
    centers = 3.0 * torch.randn(CLASSES, 64, generator=g)
    y = torch.arange(CLASSES).repeat_interleave(N_PER_CLASS)
    x = centers[y] + 0.5 * torch.randn(len(y), 64, generator=g)
    flipped = torch.randperm(len(y), generator=g)[:FLIPPED]
    y_noisy = y.clone()
    y_noisy[flipped] = (y[flipped] + 1) % CLASSES
    return TensorDataset(x.reshape(-1, 1, 8, 8), y_noisy), set(flipped.tolist())


OPTS = dict(model=mlp, batch_size=16)


def top(scores, k):
    """The k hardest examples."""
    return set(np.argsort(-scores.difficulty(), kind="stable")[:k].tolist())


def test_el2n_ranks_mislabeled_highest(blobs):
    ds, flipped = blobs
    s = D.score("el2n", ds, seeds=2, epochs=3, total_epochs=30, **OPTS)
    assert isinstance(s, D.Scores) and s.harder == "high" and len(s) == len(ds)
    assert top(s, FLIPPED) == flipped
    assert s.meta["epochs"] == 3 and s.meta["total_epochs"] == 30 and s.meta["seeds"] == [0, 1]
    assert np.all((s >= 0) & (s <= math.sqrt(2) + 1e-9))  # ||p - onehot||_2 <= sqrt(2)


def test_aum_ranks_mislabeled_lowest(blobs):
    ds, flipped = blobs
    s = D.score("aum", ds, epochs=10, **OPTS)
    assert s.harder == "low"
    assert set(np.argsort(s)[:FLIPPED].tolist()) == flipped
    assert np.all(s[sorted(flipped)] < 0) and np.median(s) > 0  # negative margins only for the wrong labels


def test_forgetting_ranks_mislabeled_highest(blobs):
    ds, flipped = blobs
    s = D.score("forgetting", ds, epochs=12, **OPTS)
    learned = np.flatnonzero(s < 12)
    assert np.all(s[learned] <= 6)  # at most P // 2 events in P presentations
    clean = [i for i in range(len(ds)) if i not in flipped]
    assert np.mean(s[sorted(flipped)]) > np.mean(s[clean]) + 1  # wrong labels are forgotten far more often
    assert top(s, 4) <= flipped and s.meta["never_learned"] >= 4  # the most forgotten: wrong labels never learned
    assert np.mean(s[clean] == 0) > 0.6  # most clean examples are unforgettable


class NeverTwo(nn.Module):
    """An MLP that can never predict class 2: that logit is always 1 below the others (and gets no gradient)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2))

    def forward(self, x):
        two = self.net(x)
        return torch.cat([two, two.detach().min(dim=1, keepdim=True).values - 1], dim=1)


def test_forgetting_never_learned_count_as_most_forgotten(blobs):
    ds, _ = blobs
    y = ds.tensors[1].numpy()
    s = D.score("forgetting", ds, model=NeverTwo, batch_size=16, epochs=12, seeds=2)
    assert s.meta["never_learned"] == int((y == 2).sum()) and s.meta["never_learned_score"] == 12.0
    assert np.all(s[y == 2] == 12.0) and np.all(s[y != 2] <= 6)  # above anything a learned example reaches


def test_dynamics_record_every_presentation(blobs):
    ds, _ = blobs
    runs, x, y = D.collect(ds, model=mlp, seeds=1, epochs=4, total_epochs=8, batch_size=16)
    run = runs[0]
    assert np.all(run.presentations == 4) and run.epochs == 4 and run.total_epochs == 8
    assert not run.model.training
    assert np.all(run.forgetting <= 2)


def test_grand_matches_closed_form_for_a_linear_model():
    """For logits W x + b, grad_W CE = (p - e_y) x^T and grad_b = p - e_y: norm = ||p - e_y|| sqrt(||x||^2 + 1)."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(20, 5, generator=g), torch.randint(0, 3, (20,), generator=g)

    def linear():
        return nn.Linear(5, 3)

    s = D.score("grand", TensorDataset(x, y), model=linear, seeds=[7], epochs=0)
    torch.manual_seed(7)
    ref = nn.Linear(5, 3).double()
    p = torch.softmax(ref(x.double()), 1)
    err = (p - nn.functional.one_hot(y, 3)).norm(dim=1)
    expected = err * torch.sqrt(x.double().pow(2).sum(1) + 1)
    np.testing.assert_allclose(s, expected.detach().numpy(), rtol=1e-5)
    assert s.meta["epochs"] == 0


def test_grand_after_training_ranks_mislabeled_high(blobs):
    ds, flipped = blobs
    s = D.score("grand", ds, seeds=2, epochs=3, total_epochs=30, **OPTS)
    assert len(top(s, FLIPPED) & flipped) >= FLIPPED - 1


def test_entropy_label_free_with_a_trained_model():
    """Logits (x0, -x0): the boundary x0 = 0 has the maximal entropy log 2; far from it, almost none."""
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    x = torch.tensor([[0.0, 5.0], [0.5, 0.0], [4.0, 1.0], [-6.0, 0.0]])
    s = D.score("entropy", TensorDataset(x), model=model, epochs=0)
    assert s.harder == "high"
    assert s[0] == pytest.approx(math.log(2))
    assert list(np.argsort(-s)) == [0, 1, 2, 3]
    assert D.score("entropy", x, model=model, epochs=0)[0] == pytest.approx(math.log(2))  # a bare tensor too


def test_entropy_after_training_is_finite_and_deterministic(blobs):
    ds, _ = blobs
    a = D.score("entropy", ds, epochs=4, **OPTS)
    b = D.score("entropy", ds, epochs=4, **OPTS)
    np.testing.assert_array_equal(a, b)
    assert np.all((a >= 0) & (a <= math.log(CLASSES) + 1e-9))


def test_seeds_average_and_determinism(blobs):
    ds, _ = blobs
    both = D.score("el2n", ds, seeds=[3, 4], epochs=2, total_epochs=10, **OPTS)
    one = D.score("el2n", ds, seeds=[3], epochs=2, total_epochs=10, **OPTS)
    two = D.score("el2n", ds, seeds=1, seed=4, epochs=2, total_epochs=10, **OPTS)
    np.testing.assert_allclose(both, (one + two) / 2, rtol=1e-12)
    again = D.score("el2n", ds, seeds=[3, 4], epochs=2, total_epochs=10, **OPTS)
    np.testing.assert_array_equal(both, again)
    assert not np.array_equal(one, two)


def test_random_scores():
    ds = torch.zeros(50, 3)  # unlabeled: random needs no labels
    a, b = D.score("random", ds, seed=1), D.score("random", ds, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, D.score("random", ds, seed=2))
    assert len(a) == 50 and np.all((a >= 0) & (a < 1))


def test_zoo_dataset_by_name_and_defaults():
    s = D.score("el2n", "digits", model="lenet300", seeds=1)
    assert len(s) == 1347 and s.meta["epochs"] == 2 and s.meta["total_epochs"] == 20  # 10 % of lenet300's recipe


def test_label_based_scorers_refuse_unlabeled_data():
    x = torch.randn(10, 1, 8, 8)
    for method in ("el2n", "grand", "forgetting", "aum"):
        with pytest.raises(MissingDataError, match="needs class labels"):
            D.score(method, TensorDataset(x), model=mlp)
    with pytest.raises(MissingDataError, match="labels"):
        D.score("entropy", x, model=mlp)  # training needs labels; a trained module with epochs=0 does not


def test_bad_options_and_names(blobs):
    ds, _ = blobs
    with pytest.raises(UnknownNameError, match="Did you mean 'el2n'"):
        D.score("el2m", ds)
    with pytest.raises(InvalidArgumentError, match="does not take option"):
        D.score("el2n", ds, epoch=3)
    with pytest.raises(InvalidArgumentError, match="seeds must be"):
        D.score("el2n", ds, seeds=0, **OPTS)
    with pytest.raises(InvalidArgumentError, match="cannot exceed total_epochs"):
        D.score("el2n", ds, epochs=5, total_epochs=2, **OPTS)
    with pytest.raises(InvalidArgumentError, match="epochs must be >= 1"):
        D.score("forgetting", ds, epochs=0, **OPTS)
    with pytest.raises(InvalidArgumentError, match="model must be"):
        D.score("aum", ds, model=3)


def test_non_finite_and_misaligned_results_are_errors(monkeypatch):
    ds = TensorDataset(torch.zeros(4, 2), torch.tensor([0, 1, 0, 1]))

    def nan_scorer(dataset):
        return D.Scores([0.0, math.nan, 1.0, 2.0])

    def short_scorer(dataset):
        return D.Scores([0.0, 1.0])

    monkeypatch.setitem(registry._REGISTRY["scorer"], "nan_scorer", nan_scorer)
    monkeypatch.setitem(registry._REGISTRY["scorer"], "short_scorer", short_scorer)
    with pytest.raises(NonFiniteError, match="non-finite"):
        D.score("nan_scorer", ds)
    with pytest.raises(InvalidArgumentError, match="aligned"):
        D.score("short_scorer", ds)


def test_scores_array_and_json_round_trip(tmp_path):
    s = D.Scores([3.0, -1.0, 2.0], "low", {"method": "aum"})
    assert s[1:].harder == "low" and isinstance(s.mean(), float)
    np.testing.assert_array_equal(s.difficulty(), [-3.0, 1.0, -2.0])
    path = s.save(tmp_path / "s.json", labels=[0, 1, 1])
    back, labels = D.load_scores(path)
    np.testing.assert_array_equal(back, s)
    assert back.harder == "low" and back.meta == {"method": "aum"} and list(labels) == [0, 1, 1]
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]  # no temporary file left behind
    with pytest.raises(InvalidArgumentError, match="harder"):
        D.Scores([1.0], "hard")
    with pytest.raises(NonFiniteError):
        D.Scores([1.0, math.nan]).save(tmp_path / "nan.json")
    assert not (tmp_path / "nan.json").exists()
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(InvalidArgumentError, match="not a secateurs scores file"):
        D.load_scores(tmp_path / "bad.json")


def test_zoo_mlp_sized_for_feature_vectors():
    """Feature-vector data (e.g. sentence embeddings): the zoo MLP takes the data's width and class count."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 32, generator=g), torch.arange(4).repeat(15)
    s = D.score("aum", TensorDataset(x, y), model="lenet300", epochs=2, total_epochs=4)
    assert len(s) == 60 and s.meta["model"] == "lenet300"
