"""Gradual magnitude pruning (Zhu & Gupta 2017): the cubic schedule, exact sparsity per update, masks that hold
under SGD momentum and AdamW, gradual 2:4, gradual ERK-SNIP, presets and bad input."""
import math

import pytest
import torch
from torch import nn

import secateurs
from secateurs import registry
from secateurs.core.masks import get_mask
from secateurs.errors import InvalidArgumentError, MissingDataError, PatternError, UnknownNameError
from secateurs.schedules.gmp import GradualMagnitude
from secateurs.zoo import build_model, calibration_batches, evaluate, fit, load_dataset

from conftest import mlp, same, snapshot


def zoo_lenet300(seed=0):
    torch.manual_seed(seed)
    return build_model("lenet300")


def pruned_count(pruner):
    return sum(int((~get_mask(t)).sum()) for t in pruner.targets)


def total(pruner):
    return sum(t.numel for t in pruner.targets)


def train_random(model, pruner, steps, opt, check=None, seed=0):
    """A plain loop on random 8x8 inputs: the pruner is stepped after every optimizer step."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        record = pruner.step()
        if check is not None:
            check(record)


# ------------------------------------------------------------------------------------------------ the schedule
def test_schedule_is_zhu_gupta_eq1_clamped_outside_start_end():
    s_i, s_f, t0, end, dt = 0.1, 0.8, 10, 110, 10
    g = GradualMagnitude(mlp(), s_f, t0, end, dt, initial_sparsity=s_i)
    n = (end - t0) // dt

    def eq1(t):
        return s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** 3

    for t in (10, 17, 35, 60, 99, 110):
        assert g.sparsity_at(t) == pytest.approx(eq1(t), abs=1e-12)
    assert g.sparsity_at(35) == pytest.approx(0.8 - 0.7 * 0.75 ** 3)
    assert g.sparsity_at(0) == g.sparsity_at(9) == pytest.approx(s_i)  # before start: s_i
    assert g.sparsity_at(111) == g.sparsity_at(10_000) == pytest.approx(s_f)  # after end: s_f
    steps = [g.sparsity_at(t) for t in range(0, 130)]
    assert all(a <= b + 1e-15 for a, b in zip(steps, steps[1:]))  # never decreases


def test_update_steps_every_frequency_and_at_end_step():
    g = GradualMagnitude(mlp(), 0.5, 10, 105, 10)
    assert g.update_steps() == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 105]
    assert [t for t in range(200) if g.is_update_step(t)] == g.update_steps()
    assert GradualMagnitude(mlp(), 0.5, 0, 30, 10).update_steps() == [0, 10, 20, 30]


def test_registered_as_gmp_and_from_budget_defaults():
    assert registry.get("schedule", "gmp") is GradualMagnitude
    g = GradualMagnitude.from_budget(mlp(), sparsity=0.9, total_steps=1000)
    assert (g.start_step, g.end_step, g.frequency, g.final_sparsity) == (0, 750, 10, 0.9)
    g = GradualMagnitude.from_budget(mlp(), sparsity=0.9, total_steps=40, frequency=3, allocation="uniform")
    assert (g.end_step, g.frequency, g.allocation) == (30, 3, "uniform")


def test_journey_preset_starts_at_25_and_ends_at_75_percent():
    g = GradualMagnitude.journey(mlp(), 0.75, 400)
    assert (g.start_step, g.end_step, g.frequency) == (100, 300, 4)
    assert g.sparsity_at(100) == 0.0 and g.sparsity_at(300) == 0.75
    # average density = mean over the run of the density the masks hold (dense before the first update)
    applied, brute = 0.0, []
    for t in range(400):
        if g.is_update_step(t):
            applied = g.sparsity_at(t)
        brute.append(1 - applied)
    assert g.average_density(400) == pytest.approx(sum(brute) / 400)
    assert 0.25 + 0.25 * 0.25 < g.average_density(400) < 1


# ------------------------------------------------------------------------------------------------ exact sparsity
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_each_update_hits_the_schedule_and_masks_hold_on_digits(optimizer):
    """LeNet-300-100 on digits with the zoo trainer: after each update the number of pruned weights is exactly
    round(sparsity_at(step) * N); between updates every pruned weight stays exactly zero (effective weight and
    the trained original), with SGD momentum + weight decay and with AdamW."""
    data = load_dataset("digits")
    train, test = data.loaders(batch_size=64, seed=0)
    model = zoo_lenet300()
    pruner = GradualMagnitude(model, 0.9, 3, 33, 5)
    n, seen = total(pruner), []

    def on_step(step, opt):
        if pruner.optimizer is None:
            pruner.attach_optimizer(opt)
        record = pruner.step()
        assert pruner.step_count == step
        if record is not None:
            seen.append(step)
            assert pruned_count(pruner) == round(pruner.sparsity_at(step) * n)
            assert record["sparsity"] == pytest.approx(pruner.sparsity_at(step), abs=1 / n)
        for t in pruner.targets:  # pruned weights are exactly zero, the originals too (state was reset)
            off = ~get_mask(t)
            assert torch.all(t.weight.detach()[off] == 0) and torch.all(t.leaf.detach()[off] == 0)

    fit(model, train, epochs=2, lr=0.05 if optimizer == "sgd" else 3e-3, optimizer=optimizer, weight_decay=5e-4,
        on_step=on_step)
    pruner.finish()
    assert seen == [3, 8, 13, 18, 23, 28, 33]
    assert pruned_count(pruner) == round(0.9 * n)
    assert secateurs.sparsity(model) == pytest.approx(0.9, abs=1 / n)
    assert evaluate(model, test)["accuracy"] > 0.5  # it still learned while being pruned


def test_masks_only_grow_and_optimizer_state_of_pruned_weights_is_reset():
    model = mlp()
    pruner = GradualMagnitude(model, 0.8, 2, 12, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    pruner.attach_optimizer(opt)
    masks = [get_mask(t).clone() for t in pruner.targets]

    def check(record):
        if record is None:
            return
        for i, t in enumerate(pruner.targets):
            new = get_mask(t)
            assert not torch.any(new & ~masks[i])  # a pruned weight never comes back
            buf = opt.state[t.leaf]["momentum_buffer"]
            assert torch.all(buf[~new] == 0)
            masks[i] = new.clone()

    train_random(model, pruner, 14, opt, check)
    assert pruned_count(pruner) == round(0.8 * total(pruner))


def test_start_step_zero_prunes_to_initial_sparsity_at_construction():
    model = mlp()
    pruner = GradualMagnitude(model, 0.9, 0, 10, 5, initial_sparsity=0.5)
    assert pruned_count(pruner) == round(0.5 * total(pruner))
    assert pruner.history[0]["step"] == 0 and pruner.history[0]["target_sparsity"] == 0.5


def test_finish_before_end_step_prunes_to_the_final_sparsity():
    model = mlp()
    pruner = GradualMagnitude(model, 0.7, 0, 100, 10)
    train_random(model, pruner, 25, torch.optim.SGD(model.parameters(), lr=0.01))
    assert pruned_count(pruner) == round(pruner.sparsity_at(20) * total(pruner))
    with pytest.warns(RuntimeWarning, match="before end_step"):
        pruner.finish()
    assert pruned_count(pruner) == round(0.7 * total(pruner))
    assert pruner.history[-1]["finish"] is True
    pruner.finish()  # idempotent
    assert len([h for h in pruner.history if h.get("finish")]) == 1


def test_state_dict_round_trip():
    model = mlp()
    pruner = GradualMagnitude(model, 0.5, 0, 10, 2)
    train_random(model, pruner, 5, torch.optim.SGD(model.parameters(), lr=0.01))
    other = GradualMagnitude(mlp(), 0.5, 0, 10, 2)
    other.load_state_dict(pruner.state_dict())
    assert other.step_count == 5 and other.history == pruner.history and other._applied == pruner._applied


# ------------------------------------------------------------------------------------------------ any pattern/criterion
def test_gradual_2_4_steps_through_3_4_and_ends_exactly_2_4():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))
    pruner = GradualMagnitude(model, 0.5, 2, 20, 3, pattern="2:4")
    assert [pruner.sparsity_at(t) for t in (0, 2, 3, 5, 8, 11, 20, 30)] == [0, 0, 0, 0.25, 0.25, 0.5, 0.5, 0.5]
    # the level is the multiple of 1/4 nearest the cubic ramp
    assert all(abs(pruner.sparsity_at(t) - pruner.ramp(t)) <= 0.125 + 1e-12 for t in range(25))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    pruner.attach_optimizer(opt)
    kept_per_group = []

    def check(record):
        if record is not None and "pattern" in record:
            n_keep = int(record["pattern"].split(":")[0])
            for t in pruner.targets:
                groups = get_mask(t).reshape(t.shape[0], -1, 4).sum(-1)
                assert torch.all(groups == n_keep)
            kept_per_group.append(n_keep)
        for t in pruner.targets:
            assert torch.all(t.weight.detach()[~get_mask(t)] == 0)

    train_random(model, pruner, 22, opt, check)
    pruner.finish()
    assert kept_per_group == [3, 2]
    for t in pruner.targets:
        w = t.weight.detach().reshape(t.shape[0], -1, 4)
        assert torch.all((w != 0).sum(-1) <= 2) and torch.all(get_mask(t).reshape(t.shape[0], -1, 4).sum(-1) == 2)
    assert secateurs.sparsity(model) == pytest.approx(0.5, abs=1e-3)


def test_gradual_erk_snip_uses_the_engine_with_data():
    data = load_dataset("digits")
    batches = calibration_batches(data, n_per_class=2, seed=0)
    model = zoo_lenet300()
    pruner = GradualMagnitude(model, 0.8, 1, 9, 4, method="snip", allocation="erk", data=batches)
    train_random(model, pruner, 10, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    assert [h["step"] for h in pruner.history] == [1, 5, 9]
    assert [r.method for r in pruner.reports] == ["snip", "snip"] and pruner.reports[-1].allocation == "erk"
    assert secateurs.sparsity(model) == pytest.approx(0.8, abs=2e-3)
    # ERK: the smallest layer (the 100 -> 10 output layer) is the densest
    dens = [1 - float((~get_mask(t)).float().mean()) for t in pruner.targets]
    assert dens[-1] == max(dens) and dens[1] == min(dens)


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("args, kw, err, msg", [
    ((0.5, 0, 10, 2), {"initial_sparsity": 0.6}, InvalidArgumentError, "below initial_sparsity"),
    ((0.5, 10, 5, 2), {}, InvalidArgumentError, "must be after start_step"),
    ((0.5, 10, 10, 2), {}, InvalidArgumentError, "must be after start_step"),
    ((0.5, 0, 10, 0), {}, InvalidArgumentError, "frequency"),
    ((0.5, 0, 10, -3), {}, InvalidArgumentError, "frequency"),
    ((0.5, 0, 10, 2.5), {}, InvalidArgumentError, "frequency"),
    ((1.0, 0, 10, 2), {}, InvalidArgumentError, "final_sparsity"),
    ((-0.1, 0, 10, 2), {}, InvalidArgumentError, "final_sparsity"),
    ((math.nan, 0, 10, 2), {}, InvalidArgumentError, "final_sparsity"),
    ((0.5, 0, 10, 2), {"initial_sparsity": -0.2}, InvalidArgumentError, "initial_sparsity"),
    ((0.5, -1, 10, 2), {}, InvalidArgumentError, "start_step"),
    ((0.7, 0, 10, 2), {"pattern": "2:4"}, PatternError, "ends at sparsity 0.5"),
    ((0.5, 0, 10, 2), {"pattern": "2:4", "allocation": "erk"}, InvalidArgumentError, "not supported"),
    ((0.5, 0, 10, 2), {"method": "magnitud"}, UnknownNameError, "Did you mean 'magnitude'"),
    ((0.5, 0, 10, 2), {"allocation": "ekr"}, UnknownNameError, "erk"),
    ((0.5, 0, 10, 2), {"owl_lamda": 0.1}, InvalidArgumentError, "does not take option"),
    ((0.5, 0, 10, 2), {"bake": True}, InvalidArgumentError, "bake"),
    ((0.5, 0, 10, 2), {"method": "snip"}, MissingDataError, "needs data"),
    ((0.5, 0, 10, 2), {"pattern": "3:8"}, PatternError, "ends at sparsity"),
])
def test_bad_input_raises_before_any_weight_is_touched(args, kw, err, msg):
    model = mlp()
    snap = snapshot(model)
    with pytest.raises(err, match=msg):
        GradualMagnitude(model, *args, **kw)
    assert same(model, snap)


def test_nm_pattern_on_a_layer_it_does_not_fit_is_refused_up_front():
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4))  # 6 inputs: not divisible by 4
    snap = snapshot(model)
    with pytest.raises(PatternError, match="not divisible"):
        GradualMagnitude(model, 0.5, 0, 10, 2, pattern="2:4")
    assert same(model, snap)
