"""``secateurs structured prune`` end to end: train (cached) → prune channels → fine-tune → table / JSON → save."""
import json

import pytest
import torch

import secateurs.structured as st
from secateurs.cli.app import app
from secateurs.zoo import build_model


pytestmark = pytest.mark.usefixtures("shared_cache", "quick_lenet5")


def test_json_finetune_and_save(runner, tmp_path):
    out = tmp_path / "y"
    res = runner.invoke(app, ["structured", "prune", "--model", "lenet5", "--dataset", "digits", "--ratio", "0.5",
                              "--importance", "l2", "--finetune-epochs", "1", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    rep = doc["report"]
    assert rep["params_after"] < 0.35 * rep["params_before"] and rep["macs_after"] < 0.35 * rep["macs_before"]
    assert doc["accuracy"]["dense"] > 0.9 and doc["accuracy"]["finetuned"] > doc["accuracy"]["pruned"] - 0.05
    assert set(doc["latency_seconds"]) >= {"dense", "pruned"} and doc["speedup"] > 0
    model = st.load(build_model("lenet5"), out)
    assert st.count_params(model) == rep["params_after"]
    assert model(torch.zeros(1, 1, 8, 8)).shape == (1, 10)


def test_table_and_errors(runner):
    res = runner.invoke(app, ["structured", "prune", "--model", "lenet5", "--ratio", "0.25"])
    assert res.exit_code == 0, res.output
    assert "params" in res.stdout and "MACs" in res.stdout and "speedup" in res.stdout
    res = runner.invoke(app, ["structured", "prune", "--model", "lenet5", "--ratio", "1.0"])
    assert res.exit_code == 2 and "ratio" in res.output
    res = runner.invoke(app, ["structured", "prune", "--model", "lenet5", "--ignore", "nope.*"])
    assert res.exit_code == 2 and "matches no module" in res.output
