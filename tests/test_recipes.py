"""secateurs.Recipe: one object as YAML, Python and CLI flags; validation naming the field path; the run folder
keyed by the recipe's hash and the library version; the built-in controls."""
import json
import os

import pytest
import torch
from typer.testing import CliRunner

import secateurs
from secateurs import PruneSpec, PruningError, Recipe, RecipeError
from secateurs.cli.app import app
from secateurs.recipes import recipe as recipe_mod
from secateurs.recipes.run import execute, run_recipe
from secateurs.recipes.store import RUN_FILE, RunsDirError, open_runs_dir

TINY = dict(model="lenet300", data="digits", finetune={"epochs": 0})


# ------------------------------------------------------------------------------------------- one object, three forms
def test_yaml_python_and_flags_are_the_same_recipe(tmp_path):
    py = Recipe(method="snip", sparsity=0.5, finetune={"epochs": 1}, options={}, seed=2)
    f = tmp_path / "r.yaml"
    f.write_text("method: snip\nsparsity: 0.5\nfinetune:\n  epochs: 1\nseed: 2\n")
    assert Recipe.from_yaml(f) == py
    assert Recipe.from_yaml(f).key() == py.key()
    res = CliRunner().invoke(app, ["run", "--method", "snip", "--sparsity=0.5", "--finetune.epochs", "1", "--seed",
                                   "2", "--show"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["key"] == py.key()
    res = CliRunner().invoke(app, ["run", str(f), "--show"])
    assert json.loads(res.stdout)["key"] == py.key()
    assert Recipe(**py.to_dict()) == py
    f2 = tmp_path / "r2.yaml"
    f2.write_text(py.to_yaml())
    assert Recipe.from_yaml(f2) == py


def test_the_weight_part_is_a_prune_spec():
    r = Recipe(method="wanda", allocation="owl", sparsity=0.7, options={"owl_lambda": 0.1}, min_keep=3, seed=4)
    assert r.spec() == PruneSpec(0.7, "wanda", allocation="owl", options={"owl_lambda": 0.1}, min_keep=3, seed=4)
    assert Recipe(pattern="2:4").spec().sparsity is None  # implied by N:M
    assert Recipe(pattern="2:4").resolved()["sparsity"] is None


def test_key_is_the_resolved_recipe_and_the_version(monkeypatch):
    assert Recipe().key() == Recipe(method="magnitude", sparsity=0.9).key()  # defaults resolved
    assert Recipe().key() != Recipe(seed=1).key()
    assert Recipe(family="structured").resolved()["method"] == "l2"
    k = Recipe().key()
    monkeypatch.setattr(recipe_mod, "__version__", secateurs.__version__ + ".dev1")
    assert Recipe().key() != k


# ------------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kw, path, words", [
    (dict(methd="snip"), "methd", ["did you mean 'method'"]),
    (dict(finetune={"epoch": 1}), "finetune.epoch", ["did you mean 'epochs'", "scratch_epochs"]),
    (dict(family="weight"), "family", ["did you mean 'weights'", "structured"]),
    (dict(method="magnitud"), "method", ["did you mean 'magnitude'", "wanda"]),
    (dict(allocation="glob"), "allocation", ["did you mean 'global'", "erk"]),
    (dict(family="schedule", schedule="gmpp"), "schedule", ["did you mean 'gmp'"]),
    (dict(family="data", method="el2"), "method", ["did you mean 'el2n'"]),
    (dict(control="dense_"), "control", ["did you mean 'dense'", "random_mask"]),
    (dict(sparsity=1.5), "sparsity", ["less than 1"]),
    (dict(options={"percdamp": 0.1}), "options", ["percdamp"]),
    (dict(pattern="2:4", sparsity=0.3), "pattern", ["2:4", "0.5"]),
    (dict(family="data", pattern="2:4"), "pattern", ["not read by family 'data'"]),
    (dict(model="lenet30"), "model", ["did you mean 'lenet300'"]),
    (dict(family="llm", control="scratch", model="smollm2-135m"), "control", ["not a control of family 'llm'"]),
])
def test_bad_fields_and_values_name_the_path(kw, path, words):
    with pytest.raises(RecipeError) as e:
        Recipe(**kw)
    assert e.value.path == path
    msg = str(e.value).lower()
    assert f"'{path}'" in msg
    for w in words:
        assert w.lower() in msg, msg
    assert isinstance(e.value, secateurs.InvalidArgumentError) and isinstance(e.value, PruningError)


def test_bad_recipe_file_and_flags(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("method: snip\nfinetune: {epochz: 1}\n")
    with pytest.raises(RecipeError, match="finetune.epochz.*epochs"):
        Recipe.from_yaml(f)
    f.write_text("- not a mapping\n")
    with pytest.raises(RecipeError, match="mapping"):
        Recipe.from_yaml(f)
    with pytest.raises(RecipeError, match="no such recipe file"):
        Recipe.from_yaml(tmp_path / "missing.yaml")
    res = CliRunner().invoke(app, ["run", "--finetune.epoch", "1", "--runs-dir", str(tmp_path / "runs")])
    assert res.exit_code == 2 and "finetune.epochs" in res.output
    assert not (tmp_path / "runs").exists()  # nothing written


# -------------------------------------------------------------------------------------------------- run + cache
def test_a_finished_run_is_read_back_not_recomputed(tmp_path, monkeypatch):
    r = Recipe(method="magnitude", sparsity=0.5, **TINY)
    row = r.run(tmp_path / "runs")
    assert row["cached"] is False and row["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert row["dense"]["accuracy"] > 0.9 and row["accuracy"] <= row["dense"]["accuracy"] + 0.02
    rec = json.loads((tmp_path / "runs" / r.key() / RUN_FILE).read_text())
    assert rec["recipe"] == r.resolved() and rec["version"] == secateurs.__version__
    assert [l["name"] for l in row["layers"]] == ["fc1.weight", "fc2.weight", "fc3.weight"]
    mtime = os.stat(tmp_path / "runs" / r.key() / RUN_FILE).st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr("secateurs.recipes.run.execute", boom)
    again = r.run(tmp_path / "runs")
    assert again["cached"] is True and again["accuracy"] == row["accuracy"]
    assert os.stat(tmp_path / "runs" / r.key() / RUN_FILE).st_mtime_ns == mtime


def test_a_failed_run_leaves_no_run_folder(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("killed mid-run")

    monkeypatch.setattr("secateurs.recipes.run.execute", boom)
    with pytest.raises(RuntimeError):
        run_recipe(Recipe(**TINY), tmp_path / "runs")
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["runs.json"]


def test_runs_dir_that_is_not_one(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "a.txt").write_text("x")
    with pytest.raises(RunsDirError, match="not empty"):
        run_recipe(Recipe(**TINY), tmp_path / "stuff")
    with pytest.raises(RunsDirError, match="not a secateurs runs directory"):
        open_runs_dir(tmp_path / "stuff")
    (tmp_path / "f").write_text("x")
    with pytest.raises(RunsDirError, match="is a file"):
        open_runs_dir(tmp_path / "f")


# ----------------------------------------------------------------------------------------------------- controls
def test_controls_rows_say_which_control_and_do_what_they_claim():
    from secateurs.recipes.run import _dense

    base = dict(method="snip", sparsity=0.8, **TINY)
    method = execute(Recipe(**base))
    dense = execute(Recipe(**base, control="dense"))
    rand = execute(Recipe(**base, control="random_mask"))
    glob = execute(Recipe(**base, control="global_magnitude"))
    assert (method["control"], dense["control"], rand["control"], glob["control"]) == \
        (None, "dense", "random_mask", "global_magnitude")
    assert dense["sparsity"] == 0 and dense["accuracy"] == method["dense"]["accuracy"]
    # random mask: the method's kept count in every layer, elsewhere
    assert [l["kept"] for l in rand["layers"]] == [l["kept"] for l in method["layers"]]
    assert rand["accuracy"] < method["accuracy"]  # snip at 80 % beats random placement at its own densities
    # global magnitude with a floor: at least min_keep weights in every layer
    assert glob["min_keep"] >= 1 and all(l["kept"] >= glob["min_keep"] for l in glob["layers"])
    assert glob["sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert _dense.cache_info().currsize >= 1


def test_scratch_control_reinitialises_the_pruned_mask():
    from secateurs.recipes.controls import masked_control, method_masks
    from secateurs.recipes.run import _calibration, _dataset, _dense

    r = Recipe(method="magnitude", sparsity=0.8, control="scratch", finetune={"epochs": 0, "scratch_epochs": 1},
               model="lenet300", data="digits")
    data = _dataset("digits")
    dense = _dense("lenet300", "digits", 0)
    calib = _calibration(data, 0)
    model, epochs = masked_control(r, dense, data, calib)
    assert epochs == 1
    masks = method_masks(r, dense, calib)
    from secateurs.core.masks import get_mask
    from secateurs.core.targets import resolve_targets

    for t, td in zip(resolve_targets(model), resolve_targets(dense)):
        assert torch.equal(get_mask(t), masks[t.key])  # same mask...
        assert not torch.allclose(t.weight[get_mask(t)], td.weight[get_mask(t)])  # ...on new weights
    row = execute(r)
    assert row["control"] == "scratch" and row["train_epochs"] == 1
    assert row["pruned"]["accuracy"] < 0.3  # untrained re-initialisation: chance level before training
    assert row["accuracy"] > row["pruned"]["accuracy"]


def test_every_small_family_runs_through_its_front_door():
    sched = execute(Recipe(family="schedule", schedule="gmp", sparsity=0.8, finetune={"epochs": 1}))
    assert sched["sparsity"] == pytest.approx(0.8, abs=1e-3) and sched["train_epochs"] == 1
    assert len(sched["history"]) == 1
    st = execute(Recipe(family="structured", method="l1", sparsity=0.5))
    assert st["params"] < st["dense_params"] and st["macs"] < st["dense_macs"] and st["groups"] >= 1
    assert 0 < st["sparsity"] < 1
    data = execute(Recipe(family="data", method="random", selector="random", sparsity=0.6, finetune={"epochs": 1}))
    assert data["kept"] == pytest.approx(0.4 * data["train_examples"], abs=1)
    assert data["sparsity"] == pytest.approx(0.6, abs=1e-3)


def test_model_validate_runs_the_same_checks():
    with pytest.raises(RecipeError, match="Did you mean 'snip'"):
        Recipe.model_validate({"method": "snp"})
    assert Recipe.model_validate({"method": "snip"}) == Recipe(method="snip")
