"""One-shot pruning during training (pruning at initialization, train-prune-finetune) and ``secateurs train``."""
import json

import pytest
import torch

import secateurs
from secateurs.core.masks import masked_targets
from secateurs.errors import InvalidArgumentError, UnknownNameError
from secateurs.schedules import OneShot, train_sparse
from secateurs.zoo import calibration_batches, fit

from conftest import mlp


@pytest.mark.parametrize("method", ["snip", "grasp", "synflow", "random-erk"])
def test_at_init_prunes_before_training_and_masks_hold(method, digits):
    from secateurs.registry import get

    model = mlp(0)
    pruner = get("schedule", method).from_budget(model, sparsity=0.9, total_steps=20,
                                                 data=calibration_batches(digits))
    assert pruner.history[0]["step"] == 0
    assert secateurs.sparsity(model) == pytest.approx(0.9, abs=1e-4)
    masks = {t.key: t.weight.detach() == 0 for t in masked_targets(model)}
    loader, _ = digits.loaders(64, seed=0)
    fit(model, loader, 1, on_step=lambda s, o: pruner.step())
    for t in masked_targets(model):  # pruned weights stay exactly zero through SGD with momentum
        assert torch.all(t.weight.detach()[masks[t.key]] == 0)
    assert pruner.history == pruner.history[:1]  # never updated again


def test_oneshot_prunes_at_its_step_only(digits):
    model = mlp(0)
    pruner = OneShot(model, 0.8, at_step=5)
    assert secateurs.sparsity(model) == 0
    loader, _ = digits.loaders(64, seed=0)
    seen = []

    def hook(step, opt):
        if pruner.optimizer is None:
            pruner.attach_optimizer(opt)
        pruner.step()
        seen.append(pruner.sparsity())

    fit(model, loader, 1, optimizer="adam", lr=1e-3, on_step=hook)
    assert seen[3] == 0 and seen[4] == pytest.approx(0.8, abs=1e-4) and seen[-1] == pytest.approx(0.8, abs=1e-4)
    assert [h["step"] for h in pruner.history] == [5]
    assert pruner.sparsity_at(4) == 0 and pruner.sparsity_at(5) == 0.8


def test_bad_input():
    with pytest.raises(InvalidArgumentError):
        OneShot(mlp(0), 1.0)
    with pytest.raises(InvalidArgumentError):
        OneShot(mlp(0), 0.5, at_step=-1)
    with pytest.raises(UnknownNameError):
        train_sparse("lenet300", "digits", "nonsense", 0.9, epochs=1)


def test_train_sparse_result_shape():
    doc = train_sparse("lenet300", "digits", "random-erk", 0.9, epochs=2, seed=1)
    assert doc["sparsity"] == pytest.approx(0.9, abs=1e-4)
    assert [h["epoch"] for h in doc["history"]] == [1, 2]
    assert doc["accuracy"] == doc["history"][-1]["test_accuracy"]


def test_cli_train_json(runner):
    from secateurs.cli.app import app

    res = runner.invoke(app, ["train", "--model", "lenet300", "--method", "snip", "--sparsity", "0.9",
                              "--epochs", "2", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert set(doc) >= {"accuracy", "sparsity", "history"}
    assert doc["sparsity"] == pytest.approx(0.9, abs=1e-4) and len(doc["history"]) == 2
    bad = runner.invoke(app, ["train", "--method", "snip", "--sparsity", "1.5", "--epochs", "1"])
    assert bad.exit_code == 2 and "sparsity" in bad.output


def test_training_mask_cache_follows_every_change_of_the_mask():
    """Schedules keep a float copy of each mask (Mask.float_cache); an in-place change of the bool mask (as
    drop-and-grow makes) or a replaced buffer must be seen by the very next forward."""
    from secateurs.core.masks import get_mask_module

    model = mlp(0)
    pruner = OneShot(model, 0.5)
    pruner.step()
    t = pruner.targets[0]
    m = get_mask_module(t.module, t.param)
    assert m.float_cache
    w1 = t.weight.detach().clone()
    assert m._float is not None and torch.equal(w1, t.leaf.detach() * m.mask)
    m.mask[0].logical_not_()  # in place
    assert torch.equal(t.weight.detach(), t.leaf.detach() * m.mask)
    m.mask = m.mask.clone().fill_(True)  # a new buffer
    assert torch.equal(t.weight.detach(), t.leaf.detach())
    m.mask = m.mask.to(torch.bool).logical_not()
    assert torch.count_nonzero(t.weight) == 0


@pytest.mark.parametrize("name", ["gmp", "rigl", "iss"])
def test_schedules_train_a_bf16_model(name):
    """Masks (and their training cache), dense-gradient capture and shrinking work in the model's dtype."""
    from secateurs.registry import get

    model = mlp(0).to(torch.bfloat16)
    pruner = get("schedule", name).from_budget(model, sparsity=0.8, total_steps=40)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    pruner.attach_optimizer(opt)
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        x, y = torch.randn(16, 1, 8, 8, generator=g).to(torch.bfloat16), torch.randint(0, 10, (16,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x).float(), y).backward()
        opt.step()
        pruner.step()
    pruner.finish()
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert secateurs.sparsity(model) >= 0.8 - 1e-3
    assert torch.isfinite(model(torch.randn(2, 1, 8, 8).to(torch.bfloat16))).all()
