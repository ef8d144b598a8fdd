"""The weight-pruning CLI end to end: methods, prune (train -> prune -> fine-tune -> save), reload, errors."""
import json
import os
import stat

import pytest

from secateurs.cli.app import app
from secateurs.registry import names


pytestmark = pytest.mark.usefixtures("shared_cache")


def test_methods_json(runner):
    res = runner.invoke(app, ["methods", "--json"])
    assert res.exit_code == 0
    doc = json.loads(res.stdout)
    assert set(doc) == {"criteria", "scopes", "allocations", "patterns", "solvers", "executors", "importances",
                        "structured_allocations", "layer_scores", "compensations", "llm_structured", "schedules",
                        "scorers", "selectors", "deltas"}
    assert set(doc["executors"]) == {"one-pass", "block-by-block", "streamed"}
    assert set(doc["layer_scores"]) >= {"bi", "angular", "cka", "random"}
    assert not set(doc["importances"]) & set(doc["criteria"])  # one name, one component
    assert set(doc["schedules"]) == {"gmp", "oneshot", "snip", "grasp", "synflow", "random-erk", "set", "rigl",
                                     "granet", "iss", "pdp"}
    assert set(doc["selectors"]) == {"hard", "easy", "random", "ccs", "dbp"}
    assert set(doc["importances"]) == {"l1", "l2", "bn_scale", "group_taylor", "fpgm", "group_random"}
    assert set(doc["criteria"]) == {"magnitude", "random", "snip", "grasp", "synflow", "taylor", "wanda", "gblm",
                                    "sparsegpt", "alps", "ria", "dsnot"}
    assert set(doc["allocations"]) == {"global", "uniform", "er", "erk", "owl"}
    assert set(doc["scopes"]) == {"row", "layer"} and set(doc["solvers"]) == {"sparsegpt", "alps", "dsnot"}
    assert list(doc["criteria"]) == names("criterion")
    sparsegpt = doc["solvers"]["sparsegpt"]
    assert sparsegpt["description"] and {o["name"]: (o["type"], o["default"]) for o in sparsegpt["options"]} == \
        {"percdamp": ("float", 0.01), "blocksize": ("int", 128)}
    for kind in doc.values():  # every option of every component has a type, a default (or is required) and help
        for entry in kind.values():
            assert all(o["type"] and ("default" in o) for o in entry["options"])
    assert {o["name"] for o in doc["criteria"]["ria"]["options"]} == {"a", "reallocation"}
    assert {o["name"] for o in doc["solvers"]["alps"]["options"]} >= {"rho", "max_iter", "pcg_iters"}


def test_prune_option_reaches_the_components(runner):
    base = ["prune", "--model", "lenet300", "--method", "ria", "--sparsity", "0.8", "--json"]
    res = runner.invoke(app, base)
    res2 = runner.invoke(app, [*base, "--option", "a=0", "-o", "percdamp=0.05", "--solver", "sparsegpt"])
    assert res.exit_code == 0 and res2.exit_code == 0, res2.output
    doc, doc2 = json.loads(res.stdout), json.loads(res2.stdout)
    assert doc2["settings"]["options"] == {"a": "0", "percdamp": "0.05"}
    assert doc2["pruned"] != doc["pruned"]
    for args, needle in [(["--option", "bogus=1"], "does not take option 'bogus'"),
                         (["--option", "a=x"], "criterion 'ria' option a must be a number, got 'x'")]:
        res = runner.invoke(app, [*base, *args])
        assert res.exit_code == 2 and needle in " ".join(res.output.split()), res.output


def test_prune_finetune_save_reload(runner, tmp_path):
    out = tmp_path / "run"
    res = runner.invoke(app, ["prune", "--model", "lenet300", "--dataset", "digits", "--method", "magnitude",
                              "--allocation", "global", "--sparsity", "0.9", "--finetune-epochs", "1",
                              "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["sparsity"] == pytest.approx(0.9, abs=1e-5)
    assert doc["dense"]["accuracy"] > 0.9
    assert doc["finetuned"]["accuracy"] > 0.8
    saved = out / "model.safetensors"
    assert json.loads((out / "result.json").read_text())["sparsity"] == doc["sparsity"]
    # a saved model is a valid --model, and pruning it further composes with its masks
    res2 = runner.invoke(app, ["prune", "--model", str(saved), "--method", "snip", "--sparsity", "0.95", "--json"])
    assert res2.exit_code == 0, res2.output
    doc2 = json.loads(res2.stdout)
    assert doc2["sparsity"] == pytest.approx(0.95, abs=1e-5)
    assert doc2["dense"]["accuracy"] == pytest.approx(doc["finetuned"]["accuracy"])


def test_prune_table_output(runner):
    res = runner.invoke(app, ["prune", "--model", "lenet300", "--pattern", "2:4"])
    assert res.exit_code == 0, res.output
    assert "pruned" in res.stdout and "0.5000" in res.stdout


@pytest.mark.parametrize("args,needle", [
    (["--method", "magnitud"], "Did you mean 'magnitude'"),
    (["--allocation", "ekr"], "unknown allocation"),
    (["--sparsity", "1.5"], "sparsity must be a number in [0, 1)"),
    (["--model", "lenet30"], "Did you mean 'lenet300'"),
])
def test_errors_exit_2(runner, args, needle):
    res = runner.invoke(app, ["prune", *args])
    assert res.exit_code == 2
    assert needle in " ".join(res.output.split())


def test_prune_out_follows_the_overwrite_policy(runner, tmp_path):
    """--out (a folder, or a .safetensors file with <name>.json beside it) is refused if it exists unless
    --overwrite, before anything is trained or pruned, as every other command does; outputs get normal modes."""
    existing = tmp_path / "existing.safetensors"
    existing.write_bytes(b"keep me")
    folder = tmp_path / "run"
    folder.mkdir()
    for out in (existing, folder):
        res = runner.invoke(app, ["prune", "--model", "lenet300", "--sparsity", "0.5", "--out", str(out), "--json"])
        assert res.exit_code == 2 and "already exists" in " ".join(res.output.split()) and "--overwrite" in res.output
    assert existing.read_bytes() == b"keep me" and not list(folder.iterdir())
    old = os.umask(0o022)
    try:
        res = runner.invoke(app, ["prune", "--model", "lenet300", "--sparsity", "0.5", "--out", str(existing),
                                  "--overwrite", "--json"])
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    assert json.loads(existing.with_suffix(".json").read_text())["saved"] == str(existing)
    assert {stat.S_IMODE(p.stat().st_mode) for p in (existing, existing.with_suffix(".json"))} == {0o644}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.json", "existing.safetensors", "run"]


@pytest.mark.usefixtures("quick_lenet5")
def test_structured_prune_takes_importance_options(runner):
    base = ["structured", "prune", "--model", "lenet5", "--ratio", "0.5", "--importance", "l1", "--json"]
    res = runner.invoke(app, [*base, "--option", "reduction=max"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["report"]["options"]["reduction"] == "max"
    res = runner.invoke(app, [*base, "--option", "reduction=median"])
    assert res.exit_code == 2 and "importance 'l1' option reduction must be one of 'sum', 'mean' or 'max'" in \
        " ".join(res.output.split())
