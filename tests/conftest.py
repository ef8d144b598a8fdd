import os

import pytest
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(1)


def mlp(seed=0, out=10):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, out))


def convnet(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )


@pytest.fixture
def batches():
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)) for _ in range(3)]


def modes(model):
    """Every submodule's own ``training`` flag and every parameter's ``requires_grad``, by name."""
    return ({n: m.training for n, m in model.named_modules()},
            {n: p.requires_grad for n, p in model.named_parameters()})


def snapshot(model):
    """Everything that defines the model: names, values (bit-exact), the module classes, each submodule's
    train/eval flag and each parameter's requires_grad."""
    return {k: v.clone() for k, v in model.state_dict().items()}, [type(m) for m in model.modules()], modes(model)


def same(model, snap):
    state, types, flags = snap
    now = model.state_dict()
    return (
        set(now) == set(state)
        and all(torch.equal(now[k], v) for k, v in state.items())
        and [type(m) for m in model.modules()] == types
        and modes(model) == flags
    )


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """SECATEURS_CACHE pointed at a fresh temporary directory."""
    monkeypatch.setenv("SECATEURS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def digits():
    from secateurs import zoo

    return zoo.load_dataset("digits")


@pytest.fixture(scope="module")
def runner():
    """Typer's CLI runner, for the command-line tests."""
    from typer.testing import CliRunner

    return CliRunner()


@pytest.fixture
def shared_cache(tmp_path_factory, monkeypatch):
    """SECATEURS_CACHE shared by every test of a session: zoo models are trained once per session."""
    monkeypatch.setenv("SECATEURS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def quick_lenet5(monkeypatch):
    """The dense zoo lenet5 trains 12 epochs (0.96 test accuracy on digits) instead of its recipe's 60 (~15 s per
    test process): for tests of the commands around it, not of the recipe. A different recipe, a different cache
    file, so the 60-epoch model is never replaced."""
    from secateurs.zoo import cache

    monkeypatch.setitem(cache.RECIPES, "lenet5", {**cache.RECIPES["lenet5"], "epochs": 12})
