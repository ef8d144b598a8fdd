"""secateurs.structured.prune: bad input (clear errors, model unchanged), importances, allocations, MACs and
parameter targets, round_to, saving and reloading without pickle, untraceable code."""
import copy

import pytest
import torch
from torch import nn

import secateurs.structured as st
from conftest import convnet, mlp, same, snapshot
from secateurs.errors import (CheckpointError, InvalidArgumentError, MissingDataError, ModelStructureError,
                              UnreachableTargetError)
from secateurs.zoo import build_model
from structured_helpers import outputs

X = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5, float("nan"), "half", True])
def test_ratio_outside_range(ratio):
    model = mlp()
    snap = snapshot(model)
    with pytest.raises(InvalidArgumentError, match="ratio"):
        st.prune(model, X, sparsity=ratio)
    assert same(model, snap)


def test_ratio_that_empties_a_layer():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2), nn.ReLU(), nn.Linear(2, 10))
    snap = snapshot(model)
    with pytest.raises(UnreachableTargetError, match="every one of the 2"):
        st.prune(model, X, sparsity=0.8)
    assert same(model, snap)


def test_wrong_example_inputs():
    model = convnet()
    snap = snapshot(model)
    with pytest.raises(InvalidArgumentError, match="does not run on example_inputs"):
        st.prune(model, torch.randn(2, 3, 8, 8))
    assert same(model, snap)


def test_ignore_that_matches_nothing_and_bad_options():
    model = convnet()
    snap = snapshot(model)
    with pytest.raises(InvalidArgumentError, match="matches no module"):
        st.prune(model, X, ignore=["encoder.*"])
    with pytest.raises(InvalidArgumentError, match="allocation"):
        st.prune(model, X, allocation="erk")
    with pytest.raises(InvalidArgumentError, match="round_to"):
        st.prune(model, X, round_to=0)
    with pytest.raises(InvalidArgumentError, match="reduction"):
        st.prune(model, X, reduction="median")
    with pytest.raises(InvalidArgumentError, match="target_macs"):
        st.prune(model, X, target_macs=0)
    with pytest.raises(MissingDataError):
        st.prune(model, X, method="taylor")
    with pytest.raises(KeyError, match="unknown importance .l3.*wanda"):
        st.prune(model, X, method="l3")
    assert same(model, snap)


def test_ignore_keeps_a_layers_outputs():
    model = convnet()
    st.prune(model, X, sparsity=0.5, ignore=["0"])
    assert model[0].out_channels == 8 and model[3].out_channels == 8


def test_masked_model_is_refused():
    import secateurs

    model = mlp()
    secateurs.prune(model, 0.5)
    with pytest.raises(InvalidArgumentError, match="finalize"):
        st.prune(model, X)


def test_hard_coded_widths():
    class Hard(nn.Module):
        def __init__(self, check):
            super().__init__()
            self.fc1, self.fc2, self.check = nn.Linear(64, 32), nn.Linear(32, 10), check

        def forward(self, x):
            h = self.fc1(x.flatten(1))
            if self.check:  # a width the tracer cannot see: the pruned model fails, and is restored
                assert h.shape[1] == 32
                return self.fc2(h)
            return self.fc2(h.new_ones(h.shape[0], 32) * h)  # a tensor of fixed width: the tracer keeps fc1 whole

    model = Hard(check=False)
    rep = st.prune(model, X, sparsity=0.5)
    assert model.fc1.out_features == 32 and rep.params_after == rep.params_before
    model = Hard(check=True)
    snap = snapshot(model)
    with pytest.raises(ModelStructureError, match="restored"):
        st.prune(model, X, sparsity=0.5)
    assert same(model, snap) and model.fc1.out_features == 32 and model.fc2.in_features == 32


def test_unknown_operation_is_left_alone_with_a_warning():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.fc3 = nn.Linear(64, 32), nn.Linear(32, 32), nn.Linear(32, 10)

        def forward(self, x):
            h = torch.relu(self.fc1(x.flatten(1)))
            h = torch.fft.fft(h).real  # mixes all 32 features: the tracer does not follow it
            return self.fc3(torch.relu(self.fc2(h)))

    model = Odd()
    with pytest.warns(UserWarning, match="fft_fft|fft"):
        rep = st.prune(model, X, sparsity=0.5)
    assert model.fc1.out_features == 32 and model.fc2.out_features == 16
    assert outputs(model, X).shape == (4, 10) and rep.fixed


@pytest.mark.parametrize("importance", ["l1", "l2", "fpgm", "random", "bn_scale", "magnitude"])
def test_weight_importances_rank_the_zeroed_channel_last(importance):
    model = convnet().eval()
    with torch.no_grad():  # channel 3 of the first conv is dead: every weight-based score must drop it
        model[0].weight[3] = 0
        model[0].bias[3] = 0
        model[1].weight[3] = 0
        model[3].weight[:, 3] = 0
    rep = st.prune(model, X, sparsity=0.5, method=importance, seed=1)
    first = next(g for g in rep.groups if any(m["param"] == "0.weight" for m in g["members"]))
    if importance != "random":
        assert 3 in first["removed"]
    assert model[0].out_channels == 4


@pytest.mark.parametrize("importance", ["taylor", "wanda", "snip"])
def test_data_importances(importance, batches):
    model = convnet().eval()
    rep = st.prune(model, X, sparsity=0.5, method=importance, data=batches)
    assert model[0].out_channels == 4 and model[3].out_channels == 8
    assert rep.params_after < rep.params_before


def test_bn_scale_skips_groups_without_batchnorm():
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(288, 16),
                          nn.ReLU(), nn.Linear(16, 10))
    rep = st.prune(model, X, sparsity=0.5, method="bn_scale")
    assert model[0].out_channels == 4 and model[4].out_features == 16 and rep.skipped


def test_global_allocation_respects_max_ratio():
    torch.manual_seed(0)
    model = build_model("resnet20").eval()
    rep = st.prune(model, X, sparsity=0.3, allocation="global", max_ratio=0.6)
    kept = [g["kept"] / g["units"] for g in rep.groups]
    assert min(kept) >= 0.4 and max(kept) - min(kept) > 0.1  # uneven, unlike uniform, within the cap
    model = mlp()
    with torch.no_grad():  # the 100 neurons of the second layer: all but one nearly dead
        model[3].weight[1:] *= 1e-3
        model[5].weight[:, 1:] *= 1e-3
    rep = st.prune(model, X, sparsity=0.5, allocation="global", max_ratio=0.75)
    assert model[3].out_features == 25  # capped at 75% removed, though its scores ask for more
    removed = sum(g["units"] - g["kept"] for g in rep.groups)
    assert removed == round(0.5 * sum(g["units"] for g in rep.groups))  # the budget is still met exactly


@pytest.mark.parametrize("what", ["macs", "params"])
def test_targets_in_macs_and_params(what):
    torch.manual_seed(0)
    model = build_model("resnet20").eval()
    rep = st.prune(model, X, **{f"target_{what}": 0.5})
    ratio = rep.mac_ratio if what == "macs" else rep.param_ratio
    assert 0.4 < ratio <= 0.5 and rep.target == {what: 0.5}


def test_round_to_multiple_of_8():
    torch.manual_seed(0)
    model = build_model("resnet20").eval()
    st.prune(model, X, sparsity=0.3, round_to=8)
    assert all(m.out_channels % 8 == 0 for m in model.modules() if isinstance(m, nn.Conv2d))


def test_untrained_model_is_pruning_at_initialization():
    torch.manual_seed(0)
    model = build_model("vgg11")  # PreCropping: the same call before training
    rep = st.prune(model, X, sparsity=0.5, method="random")
    assert rep.param_ratio < 0.35 and model.training


def test_save_and_load_zoo_model(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet20").eval()
    rep = st.prune(model, X, sparsity=0.5)
    path = st.save(model, tmp_path / "r20", report=rep)
    assert not list(path.glob("*.pt")) and not list(path.glob("*.bin"))
    again = st.load(build_model("resnet20"), path)
    torch.testing.assert_close(outputs(again, X), outputs(model, X))
    with pytest.raises(CheckpointError, match="structure"):
        st.load(build_model("resnet20"), tmp_path)
    with pytest.raises(CheckpointError, match="ResNetCifar"):
        st.load(build_model("vgg11"), path)
    with pytest.raises(Exception, match="exists"):
        st.save(model, path)


def test_report_is_json():
    import json

    model = copy.deepcopy(mlp())
    rep = st.prune(model, X, sparsity=0.25)
    doc = json.loads(json.dumps(rep.to_dict()))
    assert doc["params_after"] == st.count_params(model) and doc["mac_ratio"] < 1


def test_latency_clocks():
    models = [mlp(), mlp(1)]
    wall = st.latency(models, X, rounds=3, warmup=1)
    cpu = st.latency(models, X, rounds=3, warmup=1, clock="thread")
    assert len(wall) == len(cpu) == 2 and all(t > 0 for t in wall + cpu)
    with pytest.raises(InvalidArgumentError, match="threads=1"):
        st.latency(models, X, clock="thread", threads=2)
    with pytest.raises(InvalidArgumentError, match="clock"):
        st.latency(models, X, clock="sundial")
