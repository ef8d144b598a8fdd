"""Sweeps: grids over recipe fields x seeds (+ controls), validated before anything runs; resumable after a kill
with the same results; Ray and the plain loop give the same rows; without Ray a clear error naming the extra."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from secateurs import Recipe, RecipeError
from secateurs.recipes.store import RUN_FILE
from secateurs.recipes.sweep import MissingExtraError, cells, parse_grid, sweep

BASE = Recipe(model="lenet300", data="digits", finetune={"epochs": 0})
CLI = [sys.executable, "-c", "from secateurs.cli.app import main; main()"]


def _results(runs):
    """key -> the deterministic part of each finished run (timings left out)."""
    out = {}
    for d in sorted(runs.iterdir()):
        if d.is_dir() and not d.name.startswith("."):
            res = json.loads((d / RUN_FILE).read_text())["result"]
            out[d.name] = {k: res[k] for k in ("accuracy", "loss", "sparsity", "layers", "control", "method")}
    return out


def test_grid_parsing_and_cells():
    g = parse_grid(["method=magnitude,snip,random", "sparsity=0.5,0.9", "finetune.epochs=0"])
    assert g == {"method": ["magnitude", "snip", "random"], "sparsity": [0.5, 0.9], "finetune.epochs": [0]}
    cs = cells(BASE, g, seeds=3)
    assert len(cs) == 18 and len({c.key() for c in cs}) == 18
    assert sorted({c.seed for c in cs}) == [0, 1, 2]
    with_controls = cells(BASE, g, seeds=3, controls=("dense", "scratch", "random_mask", "global_magnitude"))
    by = {}
    for c in with_controls:
        by[c.control] = by.get(c.control, 0) + 1
    # one dense run per seed, one global-magnitude run per sparsity x seed, one scratch / random-mask per cell
    assert by == {None: 18, "dense": 3, "global_magnitude": 6, "scratch": 18, "random_mask": 18}


@pytest.mark.parametrize("items, path, word", [
    (["metod=magnitude,snip"], "metod", "did you mean 'method'"),
    (["finetune.epoch=1"], "finetune.epoch", "did you mean 'finetune.epochs'"),
    (["method=magnitude,snipp"], "method", "did you mean 'snip'"),
    (["sparsity=0.5,1.2"], "sparsity", "less than 1"),
    (["method"], "method", "FIELD=V1,V2"),
])
def test_bad_grid_fails_before_anything_is_written(tmp_path, items, path, word):
    with pytest.raises(RecipeError) as e:
        sweep(BASE, parse_grid(items), tmp_path / "runs", backend="local", log=None)
    assert e.value.path == path and word.lower() in str(e.value).lower()
    assert not (tmp_path / "runs").exists()


def test_cli_bad_grid_and_controls(tmp_path):
    from typer.testing import CliRunner

    from secateurs.cli.app import app

    res = CliRunner().invoke(app, ["sweep", "--grid", "sparsty=0.5", "--runs-dir", str(tmp_path / "r")])
    assert res.exit_code == 2 and "did you mean 'sparsity'" in res.output.lower()
    res = CliRunner().invoke(app, ["sweep", "--grid", "sparsity=0.5", "--control", "dense_", "--runs-dir",
                                   str(tmp_path / "r")])
    assert res.exit_code == 2 and "unknown control" in res.output
    res = CliRunner().invoke(app, ["sweep", "--grid", "method=magnitude,random", "--seeds", "2", "--controls",
                                   "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    labels = [c["label"] for c in json.loads(res.stdout)]
    assert len(labels) == 4 + 2 + 2 + 4 + 4 and "weights/dense seed=1" in labels
    assert not (tmp_path / "r").exists()


def test_without_ray_a_clear_error_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'secateurs\[ray\]'"):
        sweep(BASE, {"sparsity": [0.5]}, tmp_path / "runs", backend="ray", log=None)
    assert not (tmp_path / "runs").exists()


def test_killed_sweep_resumes_with_the_same_results(tmp_path):
    grid = ["method=magnitude,random", "sparsity=0.5,0.8"]
    killed = tmp_path / "killed"
    args = CLI + ["sweep", "--set", "finetune.epochs=0", "--grid", grid[0], "--grid", grid[1], "--seeds", "2",
                  "--backend", "local", "--runs-dir", str(killed)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # kill it once some, not all, of its 8 cells are finished
            done = [d for d in killed.iterdir() if d.is_dir() and not d.name.startswith(".")] \
                if killed.exists() else []
            if len(done) >= 2:
                break
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    before = _results(killed)
    assert 2 <= len(before) < 8
    log = []

    class Log:
        def write(self, s):
            log.append(s)

        def flush(self):
            pass

    res = sweep(BASE, parse_grid(grid), killed, seeds=2, backend="local", log=Log())
    assert res.cached == len(before) and res.ran == 8 - len(before)  # only the unfinished cells re-ran
    assert any(f"{len(before)} finished before" in line for line in log)
    after = _results(killed)
    assert {k: after[k] for k in before} == before  # nothing finished was lost or changed
    fresh = tmp_path / "fresh"
    sweep(BASE, parse_grid(grid), fresh, seeds=2, backend="local", log=None)
    assert _results(fresh) == after  # same results as an uninterrupted sweep


def test_ray_and_the_loop_give_the_same_rows(tmp_path):
    pytest.importorskip("ray")
    grid = {"method": ["magnitude", "random"], "sparsity": [0.7]}
    res = sweep(BASE, grid, tmp_path / "ray", controls=("dense",), backend="ray", num_cpus=2, log=None)
    assert res.ran == 3 and not res.failed
    sweep(BASE, grid, tmp_path / "loop", controls=("dense",), backend="local", log=None)
    assert _results(tmp_path / "ray") == _results(tmp_path / "loop")
    again = sweep(BASE, grid, tmp_path / "ray", controls=("dense",), backend="ray", log=None)
    assert again.cached == 3 and again.ran == 0 and again.init_seconds == 0  # nothing to run: Ray not started
