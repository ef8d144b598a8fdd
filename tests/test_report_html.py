"""``secateurs report``: one self-contained HTML file, checked in a real headless Chromium (Debian's chromium):
it renders, logs no console message, and the plots are visible in a screenshot."""
import base64
import html
import io
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from secateurs import Recipe
from secateurs.recipes.report import IncompatibleRunsError, write_report
from secateurs.recipes.run import run_recipe
from secateurs.recipes.store import RunsDirError, write_run
from secateurs.recipes.sweep import sweep

pytest.importorskip("matplotlib")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny weights sweep with three controls, a structured run with latency and two data-pruning runs."""
    d = tmp_path_factory.mktemp("report") / "runs"
    base = Recipe(model="lenet300", data="digits", finetune={"epochs": 0})
    sweep(base, {"method": ["magnitude", "random"], "sparsity": [0.5, 0.8]}, d, seeds=2,
          controls=("dense", "random_mask", "global_magnitude"), backend="local", log=None)
    run_recipe(Recipe(family="structured", sparsity=0.5, evaluation={"latency": True, "latency_rounds": 2}), d)
    for sp in (0.3, 0.6):
        run_recipe(Recipe(family="data", method="random", selector="random", sparsity=sp, finetune={"epochs": 1}), d)
    return d


def _images(doc):
    return re.findall(r'<img class="plot" alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', doc)


def test_report_is_self_contained_with_a_table_behind_every_plot(runs, tmp_path):
    out = write_report(runs, tmp_path / "report.html")
    doc = out.read_text()
    imgs = _images(doc)
    # weights curve, layer bars, structured curve, latency vs MACs/params, data curve
    assert len(imgs) == 5
    assert doc.count("<table>") == len(imgs) + 1  # one per plot, plus the table of all runs
    assert not re.search(r"(src|href)\s*=\s*[\"'](https?:)?//", doc)  # nothing fetched from the network
    assert "<script" not in doc
    text = html.unescape(doc)
    for want in ("weights: accuracy vs sparsity", "weights: layer-wise sparsity", "structured: latency vs MACs",
                 "data: accuracy vs sparsity", "control: dense", "control: random_mask", "control: global_magnitude",
                 "latency ms", "fc2.weight", "random/random"):
        assert want in text, want
    # the tables hold the numbers: mean accuracy of magnitude at 0.5 over its two seeds
    rows = [json.loads(p.read_text())["result"] for p in runs.glob("*/run.json")]
    mag = [r["accuracy"] for r in rows if r["method"] == "magnitude" and r["control"] is None
           and r["target_sparsity"] == 0.5]
    assert len(mag) == 2 and f"{sum(mag) / 2:.4f}" in doc


def test_report_refuses_bad_input_and_writes_nothing(runs, tmp_path):
    out = tmp_path / "r.html"
    (tmp_path / "plain").mkdir()
    with pytest.raises(RunsDirError, match="not a secateurs runs directory"):
        write_report(tmp_path / "plain", out)
    with pytest.raises(RunsDirError):
        write_report(tmp_path / "missing", out)
    mixed = tmp_path / "mixed"
    shutil.copytree(runs, mixed)
    rec = json.loads(next(mixed.glob("*/run.json")).read_text())
    rec["recipe"]["data"] = "fashion-mnist"
    rec["key"] = "0" * 16
    write_run(mixed, rec["key"], rec)
    with pytest.raises(IncompatibleRunsError, match="data: digits, fashion-mnist"):
        write_report(mixed, out)
    assert not out.exists() and not list(tmp_path.glob(".r.html.*"))
    out.write_text("keep me")
    with pytest.raises(Exception, match="already exists"):
        write_report(runs, out)
    assert out.read_text() == "keep me"


def test_cli_report(runs, tmp_path):
    from typer.testing import CliRunner

    from secateurs.cli.app import app

    res = CliRunner().invoke(app, ["report", str(runs), "--out", str(tmp_path / "r.html"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["runs"] == len(list(runs.glob("*/run.json")))
    res = CliRunner().invoke(app, ["report", str(tmp_path), "--out", str(tmp_path / "s.html")])
    assert res.exit_code == 2 and "not a secateurs runs directory" in " ".join(res.output.split())
    assert not (tmp_path / "s.html").exists()


def _chromium(page, shot, tmp_path, size="1200,4000"):
    """Screenshot ``page`` in headless Chromium; return (exit code, console lines)."""
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            f"--user-data-dir={tmp_path / ('profile-' + shot.stem)}", f"--window-size={size}",
            f"--screenshot={shot}", "--enable-logging=stderr", "--v=0", page.as_uri()]
    p = subprocess.run(args, capture_output=True, text=True, timeout=120)
    return p.returncode, [l for l in p.stderr.splitlines() if ":CONSOLE" in l]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(runs, tmp_path):
    from PIL import Image

    # the console detector itself: a page with a console error must be caught
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><p>x</p><script>console.error('marker-123'); nope();</script></body></html>")
    rc, console = _chromium(bad, tmp_path / "bad.png", tmp_path, "400,300")
    assert rc == 0 and any("marker-123" in l for l in console) and any("nope" in l for l in console)

    page = write_report(runs, tmp_path / "report.html")
    shot = tmp_path / "report.png"
    rc, console = _chromium(page, shot, tmp_path)
    assert rc == 0 and shot.is_file()
    assert console == [], console
    img = Image.open(shot).convert("RGB")
    assert img.size == (1200, 4000)
    top = img.crop((0, 0, 1200, 1400))
    colours = top.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200  # a blank or text-only page has a handful
    # the plot lines' colours (matplotlib's tab10 blue and orange) are on the screen, not just in the file
    px = np.asarray(top).astype(int)
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    blue = int(((abs(r - 31) < 25) & (abs(g - 119) < 25) & (abs(b - 180) < 25)).sum())
    orange = int(((abs(r - 255) < 25) & (abs(g - 127) < 25) & (b < 60)).sum())
    assert blue > 200 and orange > 200, (blue, orange)
    # and every embedded image decodes to a non-blank PNG
    for b64 in _images(page.read_text()):
        im = Image.open(io.BytesIO(base64.b64decode(b64))).convert("L")
        lo, hi = im.getextrema()
        assert hi - lo > 100
