"""Lottery tickets: IMP levels, exact rewinding (init, step k, learning rate only), controls, driver, CLI, errors."""
import json
import math

import pytest
import torch
from torch import nn

import secateurs
from secateurs.cli.app import app
from secateurs.core.masks import get_mask, masked_targets
from secateurs.errors import InvalidArgumentError, PruningError
from secateurs.schedules.lottery import LotteryTicket, model_state, prune_count, rounds_for, run_lottery
from secateurs.zoo import fit

from conftest import convnet, mlp


def _masks(model):
    return {t.key: get_mask(t).clone() for t in masked_targets(model)}


def _train_loader(digits, n=256):
    x, y = digits.train.tensors
    ds = torch.utils.data.TensorDataset(x[:n], y[:n])
    return torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))


# ------------------------------------------------------------------------------------------------ rewinding
def test_late_rewinding_restores_exact_tensors_of_step_k(digits):
    net = convnet(0)  # BatchNorm: running statistics are part of what is rewound
    loader = _train_loader(digits)  # 8 steps per epoch
    k, epochs = 5, 2
    pruner = LotteryTicket(net, 0.3, rewind_step=k, total_steps=epochs * len(loader))
    assert pruner.rewind_state is None
    seen = {}

    def on_step(step, _opt):
        pruner.step()
        if step == k:  # the test's own copy of the state after optimizer step k
            seen.update({n: v.detach().clone() for n, v in net.state_dict().items()})

    fit(net, loader, epochs, lr=0.05, on_step=on_step)
    assert pruner.step_count == epochs * len(loader) and pruner.history[0]["step"] == k
    trained = {n: v.detach().clone() for n, v in net.state_dict().items()}
    pruner.prune_round()
    assert pruner.step_count == k and pruner.start_step == k and pruner.round == 1
    now = net.state_dict()
    masks = {n[: -len(".0.mask")]: v for n, v in now.items() if n.endswith(".0.mask")}
    assert len(masks) == 3
    for name, value in seen.items():
        if name.endswith(".0.mask"):
            continue
        prefix = name[: -len(".original")]
        if prefix in masks:  # pruned weight: survivors exactly as at step k, pruned entries exactly zero
            keep = masks[prefix]
            assert torch.equal(now[name][keep], value[keep]) and not now[name][~keep].any()
        else:  # biases, BatchNorm affine parameters and running statistics
            assert torch.equal(now[name], value), name
    assert not torch.equal(seen["0.bias"], trained["0.bias"])  # training moved it: the rewind is real
    # the effective weights are the step-k weights under the new mask
    w = net[0].weight
    assert torch.equal(w, seen["0.parametrizations.weight.original"] * masks["0.parametrizations.weight"])


def test_rewind_to_init_and_resume_from_start_step(digits):
    net = mlp(1)
    init = {n: v.clone() for n, v in net.state_dict().items()}
    loader = _train_loader(digits)
    pruner = LotteryTicket(net, 0.2)
    fit(net, loader, 1, on_step=lambda s, o: pruner.step())
    pruner.prune_round()
    for (name, before), t in zip(((n, init[n]) for n in ("1.weight", "3.weight", "5.weight")), pruner.targets):
        keep = get_mask(t)
        assert torch.equal(t.weight[keep], before[keep]) and not t.weight[~keep].any()
    for name in ("1.bias", "3.bias", "5.bias"):
        assert torch.equal(net.state_dict()[name], init[name])
    # the next level trains the whole run again (start_step 0); masks hold through training
    mask = _masks(net)
    fit(net, loader, 1, start_step=pruner.start_step, on_step=lambda s, o: pruner.step())
    assert pruner.step_count == len(loader)
    assert all(torch.equal(mask[k], v) for k, v in _masks(net).items())
    assert all(not t.weight[~get_mask(t)].any() for t in pruner.targets)


def test_lr_rewinding_keeps_trained_survivors(digits):
    net = mlp(2)
    loader = _train_loader(digits)
    pruner = LotteryTicket(net, 0.5, rewind="lr", allocation="global")
    fit(net, loader, 1, on_step=lambda s, o: pruner.step())
    trained = {n: v.clone() for n, v in net.state_dict().items()}
    pruner.prune_round()
    assert pruner.step_count == 0
    for t in pruner.targets:
        keep = get_mask(t)
        assert torch.equal(t.weight[keep], trained[f"{t.name}.parametrizations.weight.original"][keep])
    # global magnitude: every weight pruned this level is no larger than every survivor, across layers
    kept = torch.cat([t.weight[get_mask(t)].abs() for t in pruner.targets])
    dropped = torch.cat([trained[f"{t.name}.parametrizations.weight.original"][~get_mask(t)].abs()
                         for t in pruner.targets])
    assert dropped.max() <= kept.min()


# ------------------------------------------------------------------------------------------------ density
def test_layerwise_density_follows_ceil_recurrence_and_paper_lenet_rule():
    net = mlp(0)
    pruner = LotteryTicket(net, 0.2, output_rate=0.1)  # Frankle & Carbin's LeNet rule: 20% hidden, 10% output
    numels = [t.numel for t in pruner.targets]
    expect = list(numels)
    previous = _masks(net)
    for r in range(1, 8):
        planned = pruner.planned_remaining(1)
        pruner.prune_round()
        expect = [e - prune_count(p, e) for e, p in zip(expect, (0.2, 0.2, 0.1))]
        assert pruner.remaining() == expect == planned
        dens = pruner.layer_density()
        assert dens["1.weight"] == pytest.approx(0.8 ** r, abs=2 / numels[0])
        assert dens["3.weight"] == pytest.approx(0.8 ** r, abs=r / numels[1])
        assert dens["5.weight"] == pytest.approx(0.9 ** r, abs=r / numels[2])
        now = _masks(net)
        assert all(not (now[k] & ~previous[k]).any() for k in now)  # old masks are kept
        previous = now
        # pruned by magnitude at init (rewound weights are the init): survivors outrank the pruned, per layer
        for t in pruner.targets:
            orig = pruner.rewind_state[f"{t.name}.parametrizations.weight.original"].abs()
            assert orig[~get_mask(t)].max() <= orig[get_mask(t)].min()
    assert secateurs.sparsity(net) == pytest.approx(1 - pruner.density())


def test_global_density_is_one_minus_p_to_the_r():
    net = convnet(3)
    pruner = LotteryTicket(net, 0.2, allocation="global", ignore="8")  # the paper's ResNet rule: fc not pruned
    assert [t.name for t in pruner.targets] == ["0", "3"]
    total = sum(t.numel for t in pruner.targets)
    remaining = total
    for r in range(1, 11):
        planned = pruner.planned_remaining(1)
        pruner.prune_round()
        remaining -= math.ceil(0.2 * remaining)
        assert sum(pruner.remaining()) == remaining == planned[0]
        assert pruner.density() == pytest.approx(0.8 ** r, abs=r / total)
    assert get_mask(secateurs.core.targets.Target("8", net[8])) is None
    assert rounds_for(0.9, 0.2) == 11 and 0.8 ** 11 <= 0.1 < 0.8 ** 10 and rounds_for(0.2, 0.2) == 1


def test_prune_count_is_ceil_without_float_noise():
    assert prune_count(0.07, 100) == 7 and prune_count(0.2, 11) == 3 and prune_count(0.2, 1) == 1
    assert 0.07 * 100 > 7  # what a bare ceil would round up to 8


def test_rate_zero_layer_stays_dense_and_layers_keep_one_weight():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    pruner = LotteryTicket(net, 0.9, layer_rates={"2": 0.0})
    pruner.prune_round()  # 12 - ceil(0.9 * 12) = 1
    assert pruner.remaining() == [1, 6] and pruner.planned_remaining(3) == [1, 6]
    with pytest.raises(InvalidArgumentError, match="nothing left to prune"):
        pruner.prune_round()


# ------------------------------------------------------------------------------------------------ controls
def test_controls_have_the_tickets_layer_densities():
    net = convnet(0)
    pruner = LotteryTicket(net, 0.4, allocation="global")
    pruner.prune_round()
    pruner.prune_round()
    ticket = _masks(net)

    reinit = pruner.reinit_control(convnet(7))
    assert all(torch.equal(ticket[k], v) for k, v in _masks(reinit).items()) and len(_masks(reinit)) == 3
    assert not torch.equal(reinit[0].parametrizations.weight.original, net[0].parametrizations.weight.original)
    assert all(not t.weight[~get_mask(t)].any() for t in masked_targets(reinit))

    rand = pruner.random_mask_control(convnet(9), seed=5)
    rmasks = _masks(rand)
    for k, m in ticket.items():
        assert int(rmasks[k].sum()) == int(m.sum())  # same number of weights per layer...
        if m.sum() < m.numel():
            assert not torch.equal(rmasks[k], m)  # ...in other places
    start = pruner.round_start
    for t in masked_targets(rand):  # on the weights the ticket starts from (here: its initialisation)
        keep = get_mask(t)
        assert torch.equal(t.weight[keep], start[f"{t.name}.parametrizations.weight.original"][keep])
    assert torch.equal(rand.state_dict()["1.running_var"], start["1.running_var"])
    fresh = convnet(9)
    torch.manual_seed(123)  # another global RNG state than the first call's: only `seed` may matter
    state = torch.get_rng_state()
    again = _masks(pruner.random_mask_control(fresh, seed=5))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left where it was
    assert all(torch.equal(again[k], v) for k, v in rmasks.items())  # deterministic given the seed
    other = _masks(pruner.random_mask_control(convnet(9), seed=6))
    assert not any(torch.equal(other[k], v) for k, v in rmasks.items() if v.sum() < v.numel())


def test_control_needs_same_architecture_and_a_pruned_level():
    pruner = LotteryTicket(mlp(0), 0.2)
    with pytest.raises(InvalidArgumentError, match="prune_round"):
        pruner.random_mask_control(mlp(1), seed=0)
    pruner.prune_round()
    with pytest.raises(InvalidArgumentError, match="architecture"):
        pruner.reinit_control(convnet(0))


# ------------------------------------------------------------------------------------------------ driver + CLI
def test_run_lottery_end_to_end_is_deterministic(digits):
    kw = dict(rounds=2, prune_rate=0.5, epochs=2, rewind_step=10, seed=1, output_rate=0.25, num_threads=1)
    res = run_lottery("lenet300", digits, **kw)
    rows = res.rounds
    assert [r.round for r in rows] == [0, 1, 2]
    assert rows[0].density == 1.0 and rows[0].reinit_accuracy is None
    assert rows[2].layer_density == pytest.approx({"fc1.weight": 0.25, "fc2.weight": 0.25, "fc3.weight": 0.5625},
                                                  abs=1e-3)
    assert rows[0].ticket_accuracy > 0.85  # two epochs of LeNet-300-100 on digits
    for r in rows[1:]:
        assert 0.5 < r.ticket_accuracy <= 1 and 0 < r.reinit_accuracy <= 1 and 0 < r.random_mask_accuracy <= 1
    assert res.settings["steps_per_run"] == 2 * 22 and res.settings["rewind_step"] == 10
    again = run_lottery("lenet300", digits, **kw)
    assert [r.to_dict() for r in again.rounds] == [r.to_dict() for r in rows]


def test_run_lottery_with_a_model_factory(digits):
    def tiny():
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    res = run_lottery(tiny, digits, rounds=1, prune_rate=0.3, epochs=1, allocation="global", lr=0.1,
                      optimizer="adam", num_threads=1)
    assert res.settings["model"] == "tiny" and res.settings["optimizer"] == "adam" and res.settings["lr"] == 0.1
    assert res.rounds[1].density == pytest.approx(1 - math.ceil(0.3 * (64 * 32 + 32 * 10)) / (64 * 32 + 32 * 10))
    with pytest.raises(InvalidArgumentError, match="not an nn.Module"):
        run_lottery(lambda: 3, digits, rounds=1, epochs=1)


def test_cli_json_shape(runner):
    res = runner.invoke(app, ["lottery", "--model", "lenet300", "--dataset", "digits", "--rounds", "2",
                              "--prune-rate", "0.2", "--rewind-step", "0", "--epochs", "1", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [r["round"] for r in doc["rounds"]] == [0, 1, 2]
    for r in doc["rounds"]:
        assert {"round", "density", "ticket_accuracy", "reinit_accuracy", "random_mask_accuracy"} <= set(r)
    assert doc["rounds"][1]["density"] == pytest.approx(0.8, abs=1e-3)
    assert doc["rounds"][2]["density"] == pytest.approx(0.64, abs=1e-3)
    assert isinstance(doc["rounds"][2]["random_mask_accuracy"], float)
    assert doc["settings"]["rewind"] == "weights"


def test_cli_table_lr_rewinding(runner):
    res = runner.invoke(app, ["lottery", "--rounds", "1", "--epochs", "1", "--rewind", "lr", "--no-controls",
                              "--allocation", "global", "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert "random re-init" in res.stdout and "learning rate only" in res.stdout and "0.8000" in res.stdout


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kw,needle", [
    ({"prune_rate": 0.0}, "prune_rate must be in (0, 1)"),
    ({"prune_rate": 1.0}, "prune_rate must be a number in [0, 1)"),
    ({"prune_rate": -0.2}, "prune_rate must be a number"),
    ({"prune_rate": True}, "prune_rate must be a number"),
    ({"rewind": "optimizer"}, "rewind must be one of"),
    ({"allocation": "erk"}, "allocation must be 'uniform'"),
    ({"rewind_step": 40, "total_steps": 40}, "beyond the training run of 40 steps"),
    ({"rewind_step": -1}, "rewind_step must be an integer >= 0"),
    ({"allocation": "global", "output_rate": 0.1}, "only layer-wise"),
    ({"layer_rates": {"fc*": 0.1}}, "matches no target"),
    ({"output_rate": 1.5}, "output_rate must be a number"),
    ({"prune_rate": 0.2, "layer_rates": {"*": 0}}, "nothing would ever be pruned"),
])
def test_bad_arguments_touch_nothing(kw, needle):
    net = mlp(0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(InvalidArgumentError) as e:
        LotteryTicket(net, **{"prune_rate": 0.2, **kw})
    assert needle in str(e.value)
    assert not masked_targets(net) and all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_rewind_point_never_reached():
    net = mlp(0)
    pruner = LotteryTicket(net, 0.2, rewind_step=1000)
    with pytest.raises(InvalidArgumentError, match="never reached"):
        pruner.prune_round()
    assert all(bool(get_mask(t).all()) for t in pruner.targets)


@pytest.mark.parametrize("kw,needle", [
    ({"rounds": 0}, "rounds must be an integer >= 1"),
    ({"prune_rate": 1.2}, "prune_rate must be a number"),
    ({"rewind_step": 10_000}, "beyond the training run of 22 steps"),
    ({"model": "lenet30"}, "Did you mean 'lenet300'"),
])
def test_run_lottery_bad_input(kw, needle, digits):
    with pytest.raises(PruningError) as e:
        run_lottery(**{"model": "lenet300", "dataset": digits, "epochs": 1, **kw})
    assert needle in str(e.value)


@pytest.mark.parametrize("args,needle", [
    (["--prune-rate", "1.5"], "prune_rate must be a number in [0, 1)"),
    (["--rounds", "0"], "rounds must be an integer >= 1"),
    (["--rewind-step", "999", "--epochs", "1"], "beyond the training run"),
    (["--rewind", "fine-tune"], "rewind must be one of"),
])
def test_cli_bad_input_exit_2(runner, args, needle):
    res = runner.invoke(app, ["lottery", *args])
    assert res.exit_code == 2
    assert needle in " ".join(res.output.split())


def test_model_state_excludes_masks():
    net = mlp(0)
    LotteryTicket(net, 0.2)
    assert not any(k.endswith(".mask") for k in model_state(net))
