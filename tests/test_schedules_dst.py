"""Dynamic sparse training: SET, RigL and GraNet (secateurs.schedules.set / rigl / granet, shared dst.py)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import secateurs
from secateurs import registry
from secateurs.core.masks import dense_grad, get_mask, masked_targets, set_mask
from secateurs.core.targets import resolve_targets
from secateurs.errors import InvalidArgumentError, PruningError
from secateurs.schedules.dst import cosine_decay, drop_and_grow
from secateurs.schedules.gmp import cubic_sparsity
from secateurs.schedules.granet import GraNet
from secateurs.schedules.rigl import RigL
from secateurs.schedules.set import SET
from secateurs.zoo import build_model, evaluate, fit, load_dataset

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 32), nn.ReLU(), nn.Linear(32, 10))


def batches(n: int, seed: int = 0, size: int = 32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 1, 8, 8, generator=g), torch.randint(0, 10, (size,), generator=g)) for _ in range(n)]


def train(model: nn.Module, pruner, opt: torch.optim.Optimizer, data, check=None) -> None:
    """The protocol's loop: forward, backward, optimizer.step(), pruner.step(); ``check(record)`` after updates."""
    pruner.attach_optimizer(opt)
    for x, y in data:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        record = pruner.step()
        if record is not None and check is not None:
            check(record)


def counts(model: nn.Module) -> dict[str, int]:
    return {t.key: int(get_mask(t).sum()) for t in masked_targets(model)}


# ---------------------------------------------------------------------------------------------- exact counts
@pytest.mark.parametrize("cls", [SET, RigL])
def test_sparse_to_sparse_counts_stay_exactly_on_schedule(cls):
    model = mlp()
    pruner = cls(model, 0.8, end_step=30, frequency=3, seed=1)
    # the schedule's per-layer counts are the engine's random ERK mask at the target sparsity
    ref = mlp()
    secateurs.prune(ref, 0.8, method="random", allocation="erk", seed=1)
    planned = counts(ref)
    assert counts(model) == planned
    total = sum(t.numel for t in pruner.targets)
    assert total - sum(planned.values()) == round(0.8 * total)
    seen = []

    def check(record):
        assert counts(model) == planned  # after every update, every layer
        assert record["mask_sparsity"] == pytest.approx(1 - sum(planned.values()) / total)
        # every update drops some weights, except RigL's last (cosine: f(T_end) = 0), which drops none
        assert (record["dropped"] == 0) == (cls is RigL and record["step"] == 30), record
        seen.append(record["step"])

    train(model, pruner, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), batches(35), check)
    assert seen == list(range(3, 31, 3))
    assert pruner.sparsity_at(17) == 0.8


def test_granet_counts_follow_the_cubic_schedule_and_regeneration_keeps_each_layer():
    model = mlp()

    class Spy(GraNet):
        def regrow(self, step, counts=None):
            before = self.active_counts()
            out = super().regrow(step, counts)
            assert self.active_counts() == before  # zero-cost: each layer regrows what it dropped
            assert out["dropped"] == sum(math.ceil(self.death_rate_at(step) * n)
                                         for t, n in before.items() if 0 < n < dict(self._sizes)[t])
            return out

    pruner = Spy(model, 0.9, initial_sparsity=0.5, end_step=24, total_steps=40, frequency=4, seed=0)
    pruner._sizes = [(t.key, t.numel) for t in pruner.targets]
    total = sum(t.numel for t in pruner.targets)
    assert total - sum(pruner.active_counts().values()) == round(0.5 * total)
    updates = []

    def check(record):
        s = cubic_sparsity(record["step"], 0.5, 0.9, 0, 24)
        assert record["target_sparsity"] == pytest.approx(s)
        assert total - sum(pruner.active_counts().values()) == round(s * total)  # exactly on schedule
        updates.append(record["step"])

    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    train(model, pruner, opt, batches(40), check)
    for t in pruner.targets:  # pruned by the gradual step or dropped: exactly zero, no momentum left
        off = ~get_mask(t)
        assert torch.all(t.leaf.detach()[off] == 0) and torch.all(opt.state[t.leaf]["momentum_buffer"][off] == 0)
    assert updates == list(range(4, 40, 4))  # regeneration continues after pruning ended (step 24)
    assert pruner.mask_sparsity() == pytest.approx(round(0.9 * total) / total)
    assert [r["pruned"] > 0 for r in pruner.history] == [s <= 24 for s in updates]


def test_granet_schedule_equals_the_formula():
    model = mlp()
    g = GraNet(model, 0.9, initial_sparsity=0.3, start_step=10, end_step=110, total_steps=200, frequency=10)
    for t in (0, 10, 35, 60, 110, 150):
        p = min(1, max(0, (t - 10) / 100))
        assert g.sparsity_at(t) == pytest.approx(0.9 + (0.3 - 0.9) * (1 - p) ** 3)
    assert g.death_rate_at(0) == pytest.approx(0.5)
    assert g.death_rate_at(100) == pytest.approx(0.005 + (0.5 - 0.005) / 2)
    assert g.death_rate_at(200) == pytest.approx(0.005)


# ------------------------------------------------------------------------- regrown weights and optimizer state
@pytest.mark.parametrize("cls", [SET, RigL, GraNet])
@pytest.mark.parametrize("optim", ["sgd", "adamw"])
def test_regrown_weights_start_at_zero_with_reset_state(cls, optim):
    model = mlp()
    if cls is GraNet:
        pruner = GraNet(model, 0.8, initial_sparsity=0.8, end_step=4, total_steps=100, frequency=4, death_rate=0.3)
    else:
        pruner = cls(model, 0.8, end_step=100, frequency=4, anneal="constant")
    opt = (torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4) if optim == "sgd"
           else torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01))
    data = batches(12)
    train(model, pruner, opt, data[:3])  # momentum / moments everywhere the weights are active
    old = {t.key: get_mask(t).clone() for t in pruner.targets}
    train(model, pruner, opt, data[3:4])  # step 4: an update
    assert pruner.history and pruner.history[-1]["step"] == 4
    slots = ("momentum_buffer",) if optim == "sgd" else ("exp_avg", "exp_avg_sq")
    grown_total = 0
    for t in pruner.targets:
        new = get_mask(t)
        born, died = new & ~old[t.key], old[t.key] & ~new
        grown_total += int(born.sum())
        assert int(died.sum()) == int(born.sum())
        assert torch.all(t.weight.detach()[born] == 0) and torch.all(t.leaf.detach()[born] == 0)
        assert torch.all(t.leaf.detach()[died] == 0)
        for name in slots:
            state = opt.state[t.leaf][name]
            assert torch.all(state[born | died] == 0)
            assert state[new & old[t.key]].abs().sum() > 0  # kept weights keep their state
    assert grown_total > 0
    # masks hold between updates: pruned weights stay exactly zero, the mask does not move
    frozen = {t.key: get_mask(t).clone() for t in pruner.targets}
    train(model, pruner, opt, data[4:7])
    for t in pruner.targets:
        assert torch.equal(get_mask(t), frozen[t.key])
        assert torch.all(t.leaf.detach()[~frozen[t.key]] == 0)


def test_drop_and_grow_keeps_a_weight_dropped_and_grown_back():
    lin = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.1, 2.0, 3.0, 4.0]]))
    t = resolve_targets(lin)[0]
    set_mask(t, torch.tensor([[True, True, True, False]]))
    score = torch.tensor([[5.0, 0.0, 0.0, 1.0]])  # the dropped weight 0.1 has the largest growth score
    out = drop_and_grow(t, 1, score)
    assert out == {"dropped": 1, "grown": 0}
    assert torch.equal(get_mask(t), torch.tensor([[True, True, True, False]]))
    assert lin.parametrizations.weight.original[0, 0].item() == pytest.approx(0.1)  # reinit_when_same=False


# ------------------------------------------------------------------------------------------ RigL specifics
def test_rigl_grows_where_the_dense_gradient_is_largest():
    lin = nn.Linear(8, 2, bias=False)
    w = torch.tensor([[0.9, -0.05, 0.7, 0.6, 0.0, 0.0, 0.0, 0.0],
                      [0.0, 0.0, 0.0, 0.0, 0.8, -0.5, 0.02, 0.4]])
    keep = w != 0
    with torch.no_grad():
        lin.weight.copy_(w)
    t = resolve_targets(lin)[0]
    set_mask(t, keep)
    pruner = RigL(lin, 0.5, end_step=10, frequency=1)  # keeps the mask it finds: 8 of 16 already pruned
    assert torch.equal(get_mask(t), keep)
    coef = torch.tensor([[0.0, 9.0, 0.0, 0.0, 1.0, -7.0, 0.5, 0.3],
                         [0.2, -0.1, 3.0, 0.0, 0.0, 0.0, 0.0, -6.0]])
    opt = torch.optim.SGD(lin.parameters(), lr=0.0)
    pruner.attach_optimizer(opt)
    (lin.weight * coef).sum().backward()  # dL/dW of the effective weight = coef, at pruned entries too
    opt.step()
    assert torch.equal(dense_grad(t), coef)
    record = pruner.step()
    f = 0.3 / 2 * (1 + math.cos(math.pi * 1 / 10))
    assert record["drop_fraction"] == pytest.approx(f)
    k = int(8 * f)
    assert k == 2 and record["dropped"] == 2
    # drop |w| smallest among active: (1,6)=0.02 and (0,1)=-0.05; grow |coef| largest among the rest:
    # (0,1)=9 (just dropped: grown back, value kept) then (0,5)=7, then (1,7)=6 -> k=2 takes (0,1) and (0,5)
    expected = keep.clone()
    expected[1, 6] = False
    expected[0, 5] = True
    assert torch.equal(get_mask(t), expected)
    assert lin.parametrizations.weight.original[0, 5].item() == 0.0
    assert lin.parametrizations.weight.original[0, 1].item() == pytest.approx(-0.05)
    assert dense_grad(t) is not None  # step 2 is an update step too: capture re-armed


def test_rigl_drop_fraction_follows_the_cosine_decay():
    model = mlp()
    pruner = RigL(model, 0.9, end_step=40, frequency=5)
    for t in (0, 5, 20, 33, 40):
        assert pruner.drop_fraction_at(t) == pytest.approx(0.15 * (1 + math.cos(math.pi * t / 40)))
    assert pruner.drop_fraction_at(60) == pytest.approx(0.0)
    assert cosine_decay(0.3, 0.5) == pytest.approx(0.15)
    active = pruner.active_counts()
    updatable = {t.key for t in pruner.updatable()}

    def check(record):
        f = 0.15 * (1 + math.cos(math.pi * record["step"] / 40))
        assert record["drop_fraction"] == pytest.approx(f)
        assert record["dropped"] == sum(int(n * f) for k, n in active.items() if k in updatable)

    train(model, pruner, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), batches(45), check)
    assert [r["step"] for r in pruner.history] == [5, 10, 15, 20, 25, 30, 35, 40]


def test_dense_gradients_are_captured_only_for_update_steps():
    model = mlp()
    pruner = RigL(model, 0.8, end_step=20, frequency=4)
    ts = pruner.targets
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    armed = []
    pruner.attach_optimizer(opt)
    for x, y in batches(10):
        armed.append(dense_grad(ts[0]) is not None)  # before this step's forward
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        pruner.step()
    assert armed == [s % 4 == 0 for s in range(1, 11)]
    pruner.finish()
    assert all(dense_grad(t) is None for t in ts)
    assert SET(mlp(), 0.8, frequency=1).grows_by_gradient is False  # SET never captures


@pytest.mark.parametrize("make", [lambda m: RigL(m, 0.8, end_step=10, frequency=2),
                                  lambda m: GraNet(m, 0.9, end_step=6, total_steps=10, frequency=2)])
def test_no_gradient_is_a_clear_error_and_changes_nothing(make):
    model = mlp()
    pruner = make(model)
    assert pruner.step() is None  # step 1: not an update step
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(PruningError, match="backward"):
        pruner.step()  # step 2 updates, but no backward ran since step 1
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


# ------------------------------------------------------------------------------------------------ determinism
@pytest.mark.parametrize("cls", [SET, RigL, GraNet])
def test_same_seed_same_masks(cls):
    def run(seed: int, global_seed: int) -> dict[str, torch.Tensor]:
        model = mlp()
        torch.manual_seed(global_seed)  # only `seed` may matter, not the global RNG (left where it was)
        state = torch.get_rng_state()
        pruner = cls.from_budget(model, sparsity=0.85, total_steps=30, seed=seed, frequency=3)
        train(model, pruner, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), batches(30))
        assert pruner.history and torch.equal(torch.get_rng_state(), state)
        return {t.key: get_mask(t).clone() for t in pruner.targets}

    a, b, c = run(3, 10), run(3, 11), run(4, 10)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


# ------------------------------------------------------------------------------------- protocol and options
def test_from_budget_protocol_and_registry():
    for name, cls in (("set", SET), ("rigl", RigL), ("granet", GraNet)):
        assert registry.get("schedule", name) is cls
    r = RigL.from_budget(mlp(), sparsity=0.9, total_steps=1000)
    assert (r.frequency, r.end_step, r.drop_fraction, r.anneal) == (10, 750, 0.3, "cosine")
    s = SET.from_budget(mlp(), sparsity=0.9, total_steps=1000)
    assert (s.frequency, s.end_step, s.drop_fraction, s.anneal) == (10, 750, 0.3, "constant")
    g = GraNet.from_budget(mlp(), sparsity=0.9, total_steps=1600, frequency=20)
    assert (g.initial_sparsity, g.end_step, g.total_steps, g.frequency) == (0.5, 1100, 1600, 20)
    assert g.sparsity() == pytest.approx(0.5, abs=1e-3)
    assert GraNet.from_budget(mlp(), sparsity=0.4, total_steps=100).initial_sparsity == 0.0


def test_dense_layers_stay_dense_and_first_masks_are_kept():
    model = mlp()
    pruner = RigL(model, 0.8, end_step=20, frequency=2, dense=["5"])
    last = dict((t.name, t) for t in pruner.targets)["5"]
    assert bool(get_mask(last).all())
    train(model, pruner, torch.optim.SGD(model.parameters(), lr=0.05), batches(8))
    assert bool(get_mask(last).all()) and len(pruner.history) == 4
    assert last not in pruner.updatable()


@pytest.mark.parametrize("bad", [
    lambda m: RigL(m, 0.9, end_step=10, frequency=0),
    lambda m: RigL(m, 1.0, end_step=10),
    lambda m: RigL(m, 0.9, end_step=5, start_step=5),
    lambda m: RigL(m, 0.9, end_step=10, drop_fraction=1.5),
    lambda m: RigL(m, 0.9, end_step=10, anneal="linear"),
    lambda m: RigL(m, 0.9, end_step=10, allocation="nope"),
    lambda m: SET(m, 0.9, anneal="cosine"),
    lambda m: GraNet(m, 0.5, initial_sparsity=0.7, end_step=10, total_steps=20),
    lambda m: GraNet(m, 0.9, end_step=30, total_steps=20),
    lambda m: GraNet(m, 0.9, end_step=10, total_steps=20, death_rate_min=0.6),
    lambda m: GraNet(m, 0.9, end_step=10, total_steps=20, allocation="globl"),
    lambda m: GraNet(m, 0.9, end_step=10, total_steps=20, allocation="owl"),
    lambda m: SET(m, 0.9, init_method="magnitud"),
    lambda m: RigL.from_budget(m, sparsity=0.9, total_steps=0),
])
def test_bad_input_is_refused_before_any_weight_is_touched(bad):
    model = mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InvalidArgumentError):
        bad(model)
    assert not masked_targets(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ------------------------------------------------------------------------------------------------ real training
@pytest.mark.parametrize("cls", [SET, RigL, GraNet])
def test_lenet300_on_digits_at_90_percent(cls, digits):
    train_loader, test_loader = digits.loaders(batch_size=32, seed=0)
    torch.manual_seed(0)
    model = build_model("lenet300")
    epochs = 3
    pruner = cls.from_budget(model, sparsity=0.9, total_steps=epochs * len(train_loader), seed=0)

    def on_step(step: int, opt: torch.optim.Optimizer) -> None:
        if pruner.optimizer is None:
            pruner.attach_optimizer(opt)
        pruner.step()

    fit(model, train_loader, epochs, lr=0.01, optimizer="adam", weight_decay=0.0, seed=0, num_threads=1,
        on_step=on_step)
    pruner.finish()
    assert len(pruner.history) >= 5  # from_budget: every max(10, T//100) steps until 75% of the run
    total = sum(t.numel for t in pruner.targets)
    assert pruner.mask_sparsity() == round(0.9 * total) / total
    assert secateurs.sparsity(model) >= pruner.mask_sparsity()
    assert evaluate(model, test_loader)["accuracy"] > 0.8


def test_convolutions_lenet5_counts_on_schedule(digits):
    torch.manual_seed(0)
    model = build_model("lenet5")
    pruner = RigL(model, 0.9, end_step=12, frequency=3, seed=0)
    planned = pruner.active_counts()
    assert len(planned) == 5
    x, y = digits.train.tensors

    def check(record):
        assert pruner.active_counts() == planned
        assert (record["grown"] == 0) == (record["step"] == 12), record  # f(T_end) = 0: the last grows none

    train(model, pruner, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
          [(x[i:i + 32], y[i:i + 32]) for i in range(0, 12 * 32, 32)], check)
    assert len(pruner.history) == 4


@pytest.mark.parametrize("stop", [30, 12])
def test_granet_reaches_the_final_sparsity_with_end_step_off_the_update_grid(stop, digits):
    """end_step 23 with updates every 5 steps: the update at 25 prunes to the final sparsity; stopping at step 12
    (before end_step) still ends exactly there after finish()."""
    loader, _ = digits.loaders(64, seed=0)
    model = mlp()
    pruner = GraNet(model, 0.9, end_step=23, total_steps=30, frequency=5, seed=0)
    total = sum(t.numel for t in pruner.targets)
    steps = 0
    for x, y in list(loader) * 2:  # 44 batches
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        pruner.step()
        steps += 1
        if steps == stop:
            break
    if stop == 30:
        rec = next(r for r in pruner.history if r["step"] == 25)
        assert rec["mask_sparsity"] == round(0.9 * total) / total
    pruner.finish()
    assert pruner.mask_sparsity() == round(0.9 * total) / total
