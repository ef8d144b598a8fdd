"""Structured pruning of MLPs: Linear chains (neurons of each hidden layer)."""
import torch

from conftest import mlp
from secateurs.zoo import build_model
from structured_helpers import check_half, check_ratio_zero

X = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def test_ratio_zero_changes_nothing():
    check_ratio_zero(mlp(), X)


def test_half_removes_hidden_neurons_and_matches_zeroed_original():
    model = mlp()
    rep = check_half(model, X)
    assert [m.out_features for m in model if isinstance(m, torch.nn.Linear)] == [150, 50, 10]
    assert model[1].in_features == 64  # the input pixels are never pruned
    assert rep.widths["1"] == {"before": {"in_features": 64, "out_features": 300},
                               "after": {"in_features": 64, "out_features": 150}}


def test_lenet300_round_to_8():
    model = build_model("lenet300")
    check_half(model, X, round_to=8)
    widths = [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)][:-1]
    assert all(w % 8 == 0 for w in widths)
