"""``secateurs llm prune`` / ``secateurs llm eval`` on a tiny saved model: outputs, JSON, errors (exit 2, nothing
written)."""
from __future__ import annotations

import json
import random

import pytest
from test_llm_blocks import VOCAB, make_model
from test_llm_output import make_tokenizer
from typer.testing import CliRunner

from secateurs.cli.llm import app

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "llama"
    model = make_model("llama")
    model.config.architectures = ["LlamaForCausalLM"]
    model.save_pretrained(path)
    make_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("text") / "calib.txt"
    path.write_text(" ".join(f"w{rng.randrange(2, VOCAB)}" for _ in range(3000)))
    return path


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _err(res) -> str:
    return " ".join(res.stderr.split())  # rich wraps long lines


def test_prune_then_eval_json(model_dir, text_file, tmp_path):
    out = tmp_path / "pruned"
    res = _run("prune", "--model", model_dir, "--method", "sparsegpt", "--pattern", "2:4", "--allocation", "owl",
               "--calibration", text_file, "--nsamples", 8, "--seqlen", 32, "--out", out, "--eval-text", text_file,
               "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["overall_sparsity"] == pytest.approx(0.5) and set(doc["perplexity"]) == {"dense", "pruned"}
    info = json.loads((out / "secateurs.json").read_text())
    assert info["prune"]["calibration"]["nsamples"] == 8 and info["prune"]["allocation"] == "owl"
    assert info["perplexities"] == doc["perplexity"]
    res = _run("eval", "--model", out, "--text", text_file, "--seqlen", 32, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"perplexity": pytest.approx(doc["perplexity"]["pruned"], rel=1e-5)}


def test_prune_table_output(model_dir, text_file, tmp_path):
    res = _run("prune", "--model", model_dir, "--method", "wanda", "--sparsity", 0.6, "--calibration", text_file,
               "--nsamples", 4, "--seqlen", 32, "--out", tmp_path / "o")
    assert res.exit_code == 0, res.output
    assert "overall" in res.stdout and "model.layers.1.mlp.down_proj" in res.stdout


@pytest.mark.parametrize("args,message", [
    (["--sparsity", 1.5], "sparsity must be a number in [0, 1)"),
    (["--method", "sparsgpt"], "Did you mean 'sparsegpt'"),
    (["--nsamples", 500], "calibration has"),
    (["--pattern", "2:4", "--sparsity", 0.3], "implies sparsity 0.5"),
])
def test_bad_prune_arguments_exit_2_and_write_nothing(model_dir, text_file, tmp_path, args, message):
    out = tmp_path / "never"
    res = _run("prune", "--model", model_dir, "--calibration", text_file, "--seqlen", 32, "--out", out, *args)
    assert res.exit_code == 2, res.output
    assert message in _err(res)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_existing_output_refused_before_loading(tmp_path, text_file):
    out = tmp_path / "exists"
    out.mkdir()
    res = _run("prune", "--model", tmp_path / "no-such-model", "--calibration", text_file, "--out", out)
    assert res.exit_code == 2 and "already exists" in _err(res)


def test_missing_or_corrupt_model(tmp_path, text_file, model_dir):
    res = _run("eval", "--model", tmp_path / "nothing", "--text", text_file, "--json")
    assert res.exit_code == 2 and "does not exist" in _err(res) and res.stdout == ""
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in model_dir.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    res = _run("eval", "--model", broken, "--text", text_file)
    assert res.exit_code == 2 and "cannot load the weights" in _err(res)


def _prune_json(model_dir, text_file, out, *args):
    res = _run("prune", "--model", model_dir, "--calibration", text_file, "--nsamples", 4, "--seqlen", 32,
               "--sparsity", 0.5, "--out", out, "--json", *args)
    assert res.exit_code == 0, res.output
    weights = b"".join(f.read_bytes() for f in sorted(out.glob("*.safetensors")))
    assert weights
    return json.loads(res.stdout)["report"], weights


@pytest.mark.parametrize("method,option,reported", [
    ("ria", "a=0.25", ("method_options", "a", 0.25)),
    ("dsnot", "skip_layer=no_skip", ("solver_options", "skip_layer", None)),
    ("dsnot", "base=magnitude", ("method_options", "base", "magnitude")),
    ("alps", "max_iter=2", ("solver_options", "max_iter", 2)),
    ("alps", "pcg_iters=0", ("solver_options", "pcg_iters", 0)),
])
def test_option_reaches_ria_dsnot_alps(model_dir, text_file, tmp_path, method, option, reported):
    """--option KEY=VALUE reaches options no dedicated flag has: typed in the report, and the weights change."""
    default, w0 = _prune_json(model_dir, text_file, tmp_path / "a", "--method", method)
    given, w1 = _prune_json(model_dir, text_file, tmp_path / "b", "--method", method, "--option", option)
    part, key, value = reported
    assert default[part][key] != value and given[part][key] == value
    assert w0 != w1


def test_option_aliases_and_errors(model_dir, text_file, tmp_path):
    report, _ = _prune_json(model_dir, text_file, tmp_path / "a", "--method", "sparsegpt", "--percdamp", 0.05,
                            "-o", "blocksize=64")
    assert report["solver_options"] == {"percdamp": 0.05, "blocksize": 64}
    cases = [(["--method", "ria", "--option", "b=1"], "does not take option 'b'"),
             (["--method", "ria", "--option", "a=half"], "criterion 'ria' option a must be a number, got 'half'"),
             (["--method", "sparsegpt", "--option", "percdamp=-1"], "option percdamp must be > 0, got '-1'"),
             (["--method", "sparsegpt", "--percdamp", 0.1, "--option", "percdamp=0.2"], "given twice"),
             (["--option", "percdamp"], "--option expects KEY=VALUE")]
    for args, message in cases:
        out = tmp_path / "never"
        res = _run("prune", "--model", model_dir, "--calibration", text_file, "--nsamples", 4, "--seqlen", 32,
                   "--out", out, *args)
        assert res.exit_code == 2 and message in _err(res), (args, res.output)
        assert not out.exists()
