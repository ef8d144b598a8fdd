"""The oracle study (secateurs.recipes.oracle): the oracle is the measured loss change, correlations, determinism."""
from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from torch import nn

from secateurs.errors import InvalidArgumentError, UnknownNameError
from secateurs.recipes.oracle import oracle_study, rank_correlation

TINY = dict(sparsities=[0.5], criteria=["l1", "group_taylor", "magnitude", "bn_scale"], n_random=2,
            finetune_epochs=1, n_per_class=5, seed=0)


@pytest.fixture
def study(shared_cache, quick_lenet5):
    return oracle_study("lenet5", "digits", **TINY)


def _loss(model: nn.Module, batches) -> float:
    model.eval()
    with torch.no_grad():
        xs = torch.cat([x for x, _ in batches])
        ys = torch.cat([y for _, y in batches])
        return nn.functional.cross_entropy(model(xs), ys).item()


def _group(doc, first):
    return next(g for g in doc["oracle"] if first in g["members"])


def test_oracle_is_the_measured_loss_change_of_removing_the_unit(study):
    """Zeroing a unit's weights and bias (ReLU then passes zeros on: the same function as removing it) changes the
    batch loss by exactly the oracle's value for that unit."""
    from secateurs.zoo import calibration_batches, load_dataset, pretrained

    base = pretrained("lenet5", "digits", seed=0)
    batches = calibration_batches(load_dataset("digits"), n_per_class=5, seed=0, batch_size=100)
    dense = _loss(base, batches)
    assert math.isclose(study["dense"]["train_batch_loss"], dense, rel_tol=1e-5)
    conv2, fc1 = _group(study, "conv2.weight[0]"), _group(study, "fc1.weight[0]")
    assert conv2["units"] == 16 and fc1["units"] == 120
    for layer, group, unit in (("conv2", conv2, 3), ("fc1", fc1, 7), ("fc1", fc1, 100)):
        m = copy.deepcopy(base)
        with torch.no_grad():
            getattr(m, layer).weight[unit] = 0
            getattr(m, layer).bias[unit] = 0
        assert group["delta_loss"][unit] == pytest.approx(_loss(m, batches) - dense, abs=2e-6)
    assert len({round(d, 6) for d in fc1["delta_loss"]}) > 10  # units differ: the test can tell them apart


def test_oracle_correlates_perfectly_with_itself_and_criteria_are_reported(study):
    flat = [d for g in study["oracle"] for d in g["delta_loss"]]
    assert study["oracle_summary"]["units"] == len(flat) == 6 + 16 + 120 + 84
    self_corr = rank_correlation(flat, flat)
    assert self_corr["spearman"] == pytest.approx(1.0) and self_corr["kendall"] == pytest.approx(1.0)
    assert rank_correlation(flat, [-d for d in flat])["kendall"] == pytest.approx(-1.0)
    rows = {c["criterion"]: c for c in study["criteria"]}
    assert rows["l1"]["pooled"]["n"] == len(flat) and -1 <= rows["l1"]["pooled"]["spearman"] <= 1
    assert rows["l1"]["pooled"] == rows["magnitude"]["pooled"]  # magnitude summed per unit is the group L1
    assert len(rows["bn_scale"]["skipped"]) == 4 and math.isnan(rows["bn_scale"]["pooled"]["kendall"])  # no BN
    pruned = study["pruned"]
    assert {r["criterion"] for r in pruned} == {"oracle", "l1", "group_taylor", "magnitude", "random_structure"}
    assert next(r for r in pruned if r["criterion"] == "magnitude")["duplicate_of"] == "l1"
    assert study["correlations"]["pooled"]["n_models"] == 5  # oracle, l1, group_taylor, 2 random; magnitude is l1
    assert all(r["params"] < r["params_before"] for r in pruned)
    assert all(r["pruned_train_loss"] > study["dense"]["train_batch_loss"] for r in pruned)
    json.dumps(study)  # JSON-ready


def test_oracle_pruning_removes_the_units_of_least_loss_change(study):
    row = next(r for r in study["pruned"] if r["criterion"] == "oracle")
    for g in study["oracle"]:
        lowest = sorted(range(g["units"]), key=lambda u: (g["delta_loss"][u], u))[:g["units"] // 2]
        assert sorted(row["removed"][g["group"]]) == sorted(lowest)


def test_same_seed_same_study(study, shared_cache, quick_lenet5, tmp_path):
    again = oracle_study("lenet5", "digits", **TINY, out=tmp_path / "o.json")
    strip = lambda d: {k: v for k, v in d.items() if k != "seconds"}  # noqa: E731
    assert json.dumps(strip(again)) == json.dumps(strip(study))
    on_disk = json.loads((tmp_path / "o.json").read_text())
    assert on_disk["pruned"] == json.loads(json.dumps(again["pruned"]))


@pytest.mark.parametrize("kw, err", [({"sparsities": [1.5]}, InvalidArgumentError),
                                     ({"sparsities": []}, InvalidArgumentError),
                                     ({"n_random": -1}, InvalidArgumentError),
                                     ({"finetune_lr": 0}, InvalidArgumentError),
                                     ({"criteria": ["l3"]}, UnknownNameError)])
def test_bad_arguments_raise_before_training(kw, err, tmp_cache):
    with pytest.raises(err):
        oracle_study("lenet5", "digits", **kw)
    assert not tmp_cache.exists()  # nothing was trained


def test_unknown_model_is_an_error(tmp_cache):
    with pytest.raises(UnknownNameError):
        oracle_study("lenet6", "digits")


def test_cli_json(runner, shared_cache, quick_lenet5):
    from secateurs.cli.app import app

    res = runner.invoke(app, ["oracle", "--model", "lenet5", "--dataset", "digits", "--sparsities", "0.5",
                              "--criterion", "l2", "--n-random", "1", "--finetune-epochs", "0", "--n-per-class",
                              "3", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["protocol"]["criteria"] == ["l2"] and len(doc["pruned"]) == 3
    bad = runner.invoke(app, ["oracle", "--sparsities", "0.5,x"])
    assert bad.exit_code != 0 and "sparsities" in bad.output


def test_oracle_study_is_exported_from_recipes():
    import secateurs.recipes as recipes

    assert recipes.oracle_study is oracle_study
    assert "oracle_study" in recipes.__all__
