"""`secateurs data score | select | train | methods` end to end on digits, with few epochs; errors exit 2."""
import json

import numpy as np
import pytest

from secateurs.cli.app import app

pytestmark = pytest.mark.usefixtures("shared_cache")


def run(runner, *args):
    res = runner.invoke(app, ["data", *args])
    return res, (json.loads(res.stdout) if res.exit_code == 0 and "--json" in args else None)


def said(res):
    """The command's output with rich's line wrapping undone."""
    return " ".join(res.output.split())


def test_score_select_train_round_trip(runner, tmp_path):
    scores = tmp_path / "scores.json"
    res, doc = run(runner, "score", "--dataset", "digits", "--method", "el2n", "--model", "lenet300", "--seeds", "2",
                   "--epochs", "1", "--out", str(scores), "--json")
    assert res.exit_code == 0, res.output
    assert doc["n"] == 1347 and doc["harder"] == "high" and doc["meta"]["seeds"] == [0, 1]
    saved = json.loads(scores.read_text())
    assert len(saved["scores"]) == len(saved["labels"]) == 1347 and saved["meta"]["dataset"] == "digits"

    keep = tmp_path / "keep.json"
    res, doc = run(runner, "select", "--scores", str(scores), "--rate", "0.9", "--strategy", "ccs",
                   "--out", str(keep), "--json")
    assert res.exit_code == 0, res.output
    assert doc["kept"] == 135 and doc["n"] == 1347 and doc["method"] == "el2n" and sum(doc["per_class"].values()) == 135
    kept = json.loads(keep.read_text())["indices"]
    assert len(kept) == 135 and kept == sorted(set(kept))

    res, doc = run(runner, "train", "--dataset", "digits", "--keep", str(keep), "--model", "lenet300",
                   "--epochs", "30", "--json")
    assert res.exit_code == 0, res.output
    assert doc["kept"] == 135 and doc["strategy"] == "ccs" and doc["method"] == "el2n" and doc["accuracy"] > 0.6

    res, doc = run(runner, "train", "--keep", str(keep), "--model", "lenet300", "--epochs", "30", "--distill",
                   "--json")
    assert res.exit_code == 0, res.output
    assert doc["distill"] and doc["teacher"] == "lenet300" and doc["teacher_accuracy"] > 0.95

    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.json", "scores.json"]  # no temporary files left


def test_human_output_and_other_methods(runner, tmp_path):
    scores, keep = tmp_path / "r.json", tmp_path / "k.json"
    res = runner.invoke(app, ["data", "score", "--method", "random", "--seed", "3", "--out", str(scores)])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str(scores)
    res = runner.invoke(app, ["data", "select", "--scores", str(scores), "--rate", "0.5", "--strategy", "hard",
                              "--class-balanced", "--out", str(keep)])
    assert res.exit_code == 0, res.output
    kept = np.array(json.loads(keep.read_text())["indices"])
    labels = np.array(json.loads(scores.read_text())["labels"])
    assert len(kept) == 674 and abs(np.bincount(labels[kept]) - np.bincount(labels) / 2).max() <= 1
    res = runner.invoke(app, ["data", "train", "--keep", str(keep), "--model", "lenet300", "--epochs", "2"])
    assert res.exit_code == 0, res.output
    assert "test accuracy" in res.stdout
    res, doc = run(runner, "methods", "--json")
    assert set(doc["scorers"]) >= {"random", "el2n", "grand", "forgetting", "aum", "entropy", "ssp", "dbp"}
    assert set(doc["selectors"]) == {"hard", "easy", "random", "ccs", "dbp"}


def test_errors_exit_2(runner, tmp_path):
    scores, keep = tmp_path / "s.json", tmp_path / "k.json"
    assert runner.invoke(app, ["data", "score", "--method", "random", "--out", str(scores)]).exit_code == 0
    res = runner.invoke(app, ["data", "score", "--method", "random", "--out", str(scores)])
    assert res.exit_code == 2 and "exists" in said(res)  # no silent overwrite
    res = runner.invoke(app, ["data", "score", "--method", "el2", "--out", str(tmp_path / "x.json")])
    assert res.exit_code == 2 and "Did you mean 'el2n'" in said(res)
    res = runner.invoke(app, ["data", "score", "--method", "random", "-o", "bogus=1",
                              "--out", str(tmp_path / "y.json")])
    assert res.exit_code == 2 and "does not take option" in said(res)
    res = runner.invoke(app, ["data", "select", "--scores", str(scores), "--rate", "1.5", "--out", str(keep)])
    assert res.exit_code == 2 and "rate must be a number in [0, 1)" in said(res)
    doc = json.loads(scores.read_text())
    doc["scores"][5] = float("nan")
    (tmp_path / "nan.json").write_text(json.dumps(doc))  # Python writes the bare word NaN
    res = runner.invoke(app, ["data", "select", "--scores", str(tmp_path / "nan.json"), "--out", str(keep)])
    assert res.exit_code == 2 and "non-finite" in said(res) and not keep.exists()
    doc = json.loads(scores.read_text())
    doc["scores"], doc["labels"] = doc["scores"][:100], doc["labels"][:100]
    (tmp_path / "short.json").write_text(json.dumps(doc))
    assert runner.invoke(app, ["data", "select", "--scores", str(tmp_path / "short.json"), "--rate", "0.5",
                               "--out", str(keep)]).exit_code == 0
    res = runner.invoke(app, ["data", "train", "--keep", str(keep), "--epochs", "1"])
    assert res.exit_code == 2 and "selected from 100 examples" in said(res)
