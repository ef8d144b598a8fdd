"""The zoo: fixed digits split, model shapes and metadata, trainer, and the safetensors cache."""
from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import secateurs.zoo as zoo
import secateurs.zoo.cache as zoo_cache
from secateurs.errors import CheckpointError, UnknownNameError

MODELS = ["lenet300", "lenet5", "resnet20", "vgg11"]


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_cache):
    """Trained models are cached in a temporary directory, never the user's."""


def test_registry_lists_models_and_datasets():
    assert set(MODELS) <= set(zoo.list_models())
    assert "digits" in zoo.list_datasets()


def test_digits_split_is_fixed_and_stratified(digits):
    xtr, ytr = digits.train.tensors
    xte, yte = digits.test.tensors
    assert (len(ytr), len(yte)) == (1347, 450)
    assert xtr.shape[1:] == (1, 8, 8) and xtr.dtype == torch.float32 and ytr.dtype == torch.int64
    assert digits.num_classes == 10 and digits.input_shape == (1, 8, 8)
    # stratified: every class has (almost exactly) a quarter of its examples in the test split
    train_counts, test_counts = Counter(ytr.tolist()), Counter(yte.tolist())
    for c in range(10):
        total = train_counts[c] + test_counts[c]
        assert abs(test_counts[c] - 0.25 * total) <= 1
    # standardised with the train statistics
    assert abs(xtr.mean().item()) < 1e-4 and abs(xtr.std().item() - 1) < 1e-4
    again = zoo.load_dataset("digits")
    for a, b in zip(digits.train.tensors + digits.test.tensors, again.train.tensors + again.test.tensors):
        assert torch.equal(a, b)


def test_loaders_are_seeded(digits):
    first = [y for _, y in digits.loaders(64, seed=3)[0]]
    second = [y for _, y in digits.loaders(64, seed=3)[0]]
    other = [y for _, y in digits.loaders(64, seed=4)[0]]
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))
    test_y = torch.cat([y for _, y in digits.loaders(64)[1]])
    assert torch.equal(test_y, digits.test.tensors[1])  # test loader keeps the order


def test_calibration_batches_are_class_balanced_and_seeded(digits):
    batches = zoo.calibration_batches(digits, n_per_class=10, seed=0, batch_size=32)
    y = torch.cat([b[1] for b in batches])
    assert [len(b[1]) for b in batches] == [32, 32, 32, 4]
    assert Counter(y.tolist()) == {c: 10 for c in range(10)}
    assert batches[0][0].shape == (32, 1, 8, 8)
    again = zoo.calibration_batches(digits, n_per_class=10, seed=0, batch_size=32)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    one = zoo.calibration_batches(digits.train, seed=1)
    assert len(one) == 1 and len(one[0][1]) == 100
    assert not torch.equal(one[0][0], zoo.calibration_batches(digits, seed=0)[0][0])


@pytest.mark.parametrize("name", MODELS)
def test_models_give_logits_and_metadata(name, digits):
    torch.manual_seed(0)
    model = zoo.build_model(name, num_classes=10)
    torch.manual_seed(0)
    twin = zoo.build_model(name, num_classes=10)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), twin.state_dict().values()))
    x = digits.train.tensors[0][:5]
    assert model(x).shape == (5, 10)
    assert model.zoo_name == name and model.zoo_config == {"num_classes": 10}
    assert model.num_classes == 10 and model.input_shape == (1, 8, 8)
    rebuilt = zoo.build_model(model.zoo_name, **model.zoo_config)
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    assert zoo.build_model(name, num_classes=3)(x).shape == (5, 3)


def test_resnet20_structure():
    model = zoo.build_model("resnet20")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) + 1 == 20  # 19 3x3 convolutions + fc (1x1 shortcuts are not counted)
    shortcuts = [m for n, m in model.named_modules() if n.endswith("shortcut") and isinstance(m, nn.Sequential)]
    assert len(shortcuts) == 2  # option B, at the two stage transitions
    feats = nn.Sequential(model.conv1, model.bn1, model.layer1, model.layer2, model.layer3)
    assert feats(torch.zeros(2, 1, 8, 8)).shape == (2, 64, 2, 2)


def test_unknown_model_suggests_a_name():
    with pytest.raises(UnknownNameError, match="Did you mean 'resnet20'"):
        zoo.build_model("resnet2")


def test_fit_lenet300_learns_and_is_deterministic(digits):
    runs = []
    for global_seed in (10, 11):
        torch.manual_seed(0)
        model = zoo.build_model("lenet300")
        train, test = digits.loaders(64, seed=0)
        torch.manual_seed(global_seed)  # another global RNG state per run: only `seed` may matter
        state = torch.get_rng_state()
        losses = zoo.fit(model, train, epochs=3, lr=0.05, seed=0, num_threads=1)
        assert torch.equal(torch.get_rng_state(), state)  # and fit leaves the global RNG where it was
        runs.append(model)
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0].state_dict().values(), runs[1].state_dict().values()))
    model = runs[0]
    model.train()
    metrics = zoo.evaluate(model, test)
    assert metrics["accuracy"] > 0.9 and metrics["loss"] > 0
    assert model.training  # evaluate restored train mode
    model.eval()
    zoo.evaluate(model, test)
    assert not model.training


def test_fit_trains_through_parametrizations(digits):
    class Mask(nn.Module):
        def __init__(self, mask):
            super().__init__()
            self.register_buffer("mask", mask)

        def forward(self, w):
            return w * self.mask

    torch.manual_seed(0)
    model = zoo.build_model("lenet300")
    mask = (torch.rand_like(model.fc1.weight) > 0.5).float()
    parametrize.register_parametrization(model.fc1, "weight", Mask(mask))
    before = model.fc1.parametrizations.weight.original.clone()
    train, _ = digits.loaders(128, seed=0)
    zoo.fit(model, train, epochs=1, seed=0, optimizer="adam", lr=1e-3)
    assert not torch.equal(model.fc1.parametrizations.weight.original, before)
    assert torch.all(model.fc1.weight[mask == 0] == 0)


def test_fit_rejects_bad_optimizer(digits):
    train, _ = digits.loaders(64)
    with pytest.raises(ValueError, match="optimizer"):
        zoo.fit(zoo.build_model("lenet300"), train, epochs=1, optimizer="rmsprop")


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_pretrained_is_cached_and_bit_identical(tmp_path, monkeypatch):
    first = zoo.pretrained("lenet300", epochs=2)
    assert not first.training and first.zoo_name == "lenet300"
    assert first.zoo_metrics["accuracy"] > 0.9
    path = zoo.cache_path("lenet300", epochs=2)
    assert path.exists() and path.is_relative_to(tmp_path / "cache" / "zoo")
    assert "lenet300" in path.name and "digits" in path.name and "seed0" in path.name
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind

    def no_training(*args, **kw):
        raise AssertionError("pretrained() trained although the weights were cached")

    monkeypatch.setattr(zoo_cache, "fit", no_training)
    second = zoo.pretrained("lenet300", epochs=2)
    a, b = _state(first), _state(second)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert second.zoo_metrics == pytest.approx(first.zoo_metrics)
    # a different recipe (epochs) or seed is a different file, so would train
    assert zoo.cache_path("lenet300", epochs=3) != path
    assert zoo.cache_path("lenet300", epochs=2, seed=1) != path
    with pytest.raises(AssertionError, match="trained"):
        zoo.pretrained("lenet300", epochs=3)


def test_pretrained_retrains_from_scratch_deterministically(tmp_path):
    one = zoo.pretrained("lenet5", epochs=1, cache_dir=tmp_path / "a")
    two = zoo.pretrained("lenet5", epochs=1, cache_dir=tmp_path / "b")
    a, b = _state(one), _state(two)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_corrupt_cache_file_is_rebuilt(tmp_path):
    first = zoo.pretrained("lenet300", epochs=1)
    path = zoo.cache_path("lenet300", epochs=1)
    path.write_bytes(b"\x00not a safetensors file" * 10)
    with pytest.raises(CheckpointError):
        zoo_cache._load_cached(path, zoo.build_model("lenet300"))
    with pytest.warns(RuntimeWarning, match="retraining"):
        rebuilt = zoo.pretrained("lenet300", epochs=1)
    a, b = _state(first), _state(rebuilt)
    assert all(torch.equal(a[k], b[k]) for k in a)
    zoo_cache._load_cached(path, zoo.build_model("lenet300"))  # the file was rewritten and is valid again


def test_cache_file_of_another_architecture_is_rebuilt():
    path = zoo.cache_path("lenet300", epochs=1)
    path.parent.mkdir(parents=True)
    from safetensors.torch import save_file

    save_file({"fc1.weight": torch.zeros(3, 3)}, str(path))
    with pytest.warns(RuntimeWarning, match="do not match"):
        model = zoo.pretrained("lenet300", epochs=1)
    assert model.fc1.weight.shape == (300, 64)


def test_fit_resumed_part_way_sees_the_original_data_order(digits):
    """start_step past whole epochs still draws their shuffles: the resumed run gets the same batches."""
    from secateurs.zoo import fit

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(64, 10)
            self.seen = []

        def forward(self, x):
            self.seen.append(x[:, 0, 0, :2].clone())
            return self.fc(x.flatten(1))

    loader, _ = digits.loaders(256, seed=0)
    full, resumed = Recorder(), Recorder()
    fit(full, loader, 3, seed=0)
    start = len(loader) + 2  # one whole epoch and two steps in
    fit(resumed, loader, 3, seed=0, start_step=start)
    assert len(resumed.seen) == len(full.seen) - start
    assert all(torch.equal(a, b) for a, b in zip(full.seen[start:], resumed.seen))
