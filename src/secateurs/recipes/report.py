"""``secateurs report RUNS_DIR --out report.html``: one self-contained HTML page of a runs directory.

Plots are drawn with Matplotlib (the ``report`` extra: ``pip install 'secateurs[report]'``) and embedded as
base64 PNG images: Matplotlib writes static images with no JavaScript and no network access, so the page opens
offline in any browser and its pixels are what a screenshot test checks; it is also the plotting library papers
use, so a figure can be lifted as is.  Every plot is followed by the table of the numbers it draws.

Sections: accuracy (perplexity for LLMs) vs sparsity per method, mean with the seeds' min-max spread as a band
and one-standard-deviation error bars, the controls as reference lines (dense: horizontal; the others: dashed
curves); layer-wise sparsity bars at each method's highest sparsity; latency (or accuracy) vs MACs and
parameters for structured runs; accuracy vs fraction of training data pruned for data runs.
"""
from __future__ import annotations

import base64
import html
import io
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError
from ..io import atomic_write_text, check_output
from .store import read_runs


class IncompatibleRunsError(InvalidArgumentError):
    """Runs that cannot share one report (different models, data sets or library versions)."""


def _require_matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError:
        from ..schedules.callbacks import MissingExtraError

        raise MissingExtraError("the HTML report draws its plots with matplotlib: pip install "
                                "'secateurs[report]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def load_rows(runs_dir: str | Path) -> list[dict[str, Any]]:
    """The result rows of a runs directory, checked to belong in one report: one model, one data set (LLM runs:
    one model) and one library version (IncompatibleRunsError naming what differs)."""
    records = read_runs(runs_dir)
    seen: dict[str, set[str]] = defaultdict(set)
    for rec in records:
        r = rec["recipe"]
        seen["model"].add(str(r.get("model")))
        if r.get("family") != "llm":
            seen["data"].add(str(r.get("data")))
        seen["library version"].add(str(rec.get("version")))
    bad = {k: sorted(v) for k, v in seen.items() if len(v) > 1}
    if bad:
        what = "; ".join(f"{k}: {', '.join(v)}" for k, v in bad.items())
        raise IncompatibleRunsError(f"{runs_dir} mixes runs of incompatible recipes ({what}); a report compares "
                                    f"methods on one model, data set and library version — sweep each into its "
                                    f"own --runs-dir")
    rows = []
    for rec in records:
        row = dict(rec["result"])
        row.setdefault("family", rec["recipe"].get("family"))
        row["recipe"] = rec["recipe"]
        rows.append(row)
    return rows


def write_report(runs_dir: str | Path, out: str | Path, overwrite: bool = False, title: str | None = None) -> Path:
    """Write the HTML report of ``runs_dir`` to ``out`` (atomically; refused if it exists unless ``overwrite``).
    Everything is checked and drawn before the file is written: a failure leaves no partial output."""
    out = check_output(out, overwrite, directory=False)
    rows = load_rows(runs_dir)
    plt = _require_matplotlib()
    model, data = rows[0].get("model"), rows[0].get("data")
    sections = []
    for family in ("weights", "schedule", "llm"):
        fam = [r for r in rows if r["family"] == family]
        if fam:
            sections.append(_curves(plt, fam, family))
            if any(r.get("layers") for r in fam):
                sections.append(_layers(plt, fam, family))
    st = [r for r in rows if r["family"] == "structured"]
    if st:
        sections.append(_curves(plt, st, "structured"))
        sections.append(_structured(plt, st))
    dp = [r for r in rows if r["family"] == "data"]
    if dp:
        sections.append(_curves(plt, dp, "data"))
    sections.append(_runs_table(rows))
    head = title or f"secateurs report: {model} on {data}"
    doc = _PAGE.format(title=html.escape(head), n=len(rows), runs=html.escape(str(runs_dir)),
                       body="\n".join(sections))
    return atomic_write_text(out, doc)


# ------------------------------------------------------------------------------------------------------ helpers
def _metric(rows: list[dict[str, Any]]) -> tuple[str, str]:
    if any("perplexity" in r for r in rows):
        return "perplexity", "perplexity (lower is better)"
    return "accuracy", "test accuracy"


def _series_name(r: dict[str, Any]) -> str:
    if r.get("control"):
        return f"control: {r['control']}"
    rec = r.get("recipe", {})
    name = str(r.get("method"))
    if r.get("family") == "schedule":
        name = f"{rec.get('schedule')}/{name}"
    if r.get("family") == "data":
        name = f"{name}/{rec.get('selector')}"
    extra = [str(rec[k]) for k in ("allocation", "solver") if rec.get(k)]
    if rec.get("pattern") not in (None, "unstructured"):
        extra.append(str(rec["pattern"]))
    return name + (f" ({', '.join(extra)})" if extra else "")


def _x(r: dict[str, Any]) -> float:
    """The sparsity a row is plotted at: the target (what the sweep set), else the achieved one."""
    t = r.get("target_sparsity")
    return float(t if t is not None else r.get("sparsity", 0.0))


def _stats(values: list[float]) -> dict[str, float]:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return {"n": 0, "mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan}
    return {"n": len(vals), "mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            "min": min(vals), "max": max(vals)}


def _png(plt: Any, fig: Any, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    b64 = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img class="plot" alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _table(header: list[str], body: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.4f}" if abs(v) < 1e4 else f"{v:.4g}"
        return html.escape("" if v is None else str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _section(title: str, img: str, table: str, note: str = "") -> str:
    note = f"<p>{html.escape(note)}</p>" if note else ""
    return f"<section><h2>{html.escape(title)}</h2>{note}{img}{table}</section>"


# ----------------------------------------------------------------------------------------------------- sections
def _curves(plt: Any, rows: list[dict[str, Any]], family: str) -> str:
    metric, ylabel = _metric(rows)
    groups: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[_series_name(r)][_x(r)].append(r.get(metric))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    table = []
    for name in sorted(groups, key=lambda n: (n.startswith("control"), n)):
        pts = sorted(groups[name].items())
        st = [(x, _stats(v)) for x, v in pts]
        table += [[name, x, s["n"], s["mean"], s["std"], s["min"], s["max"]] for x, s in st]
        xs = [x for x, _ in st]
        mean = [s["mean"] for _, s in st]
        if name == "control: dense":
            ax.axhline(statistics.fmean(mean), color="black", lw=1.2, ls="-", label="control: dense")
            continue
        style = {"ls": "--", "marker": "s", "alpha": 0.85} if name.startswith("control") else {"ls": "-", "marker": "o"}
        line = ax.errorbar(xs, mean, yerr=[s["std"] for _, s in st], capsize=3, label=name, **style)
        ax.fill_between(xs, [s["min"] for _, s in st], [s["max"] for _, s in st], alpha=0.15,
                        color=line[0].get_color())
    xlabel = {"structured": "fraction of channels removed", "data": "fraction of training data pruned"}.get(
        family, "sparsity (fraction of weights removed)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    title = f"{family}: {metric} vs sparsity (mean, ±1 std bars, min-max band over seeds)"
    ax.set_title(title, fontsize=9)
    img = _png(plt, fig, title)
    tab = _table(["method / control", "sparsity", "seeds", "mean", "std", "min", "max"], table)
    return _section(f"{family}: {metric} vs sparsity", img, tab)


def _layers(plt: Any, rows: list[dict[str, Any]], family: str) -> str:
    per: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    top: dict[str, float] = {}
    for r in rows:
        if r.get("layers") and r.get("control") != "dense":
            name = _series_name(r)
            top[name] = max(top.get(name, 0.0), _x(r))
    for r in rows:
        name = _series_name(r)
        if name in top and _x(r) == top[name]:
            for layer in r["layers"]:
                per[name][layer["name"]].append(layer["sparsity"])
    layers = list(dict.fromkeys(l for d in per.values() for l in d))
    names = sorted(per)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(layers) + 3), 4))
    w = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        ax.bar([j + i * w for j in range(len(layers))],
               [statistics.fmean(per[name].get(l, [math.nan])) for l in layers], w, label=f"{name} @ {top[name]:g}")
    ax.set_xticks([j + 0.4 - w / 2 for j in range(len(layers))], layers, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("layer sparsity")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(f"{family}: layer-wise sparsity at each method's highest sparsity (mean over seeds)", fontsize=9)
    img = _png(plt, fig, "layer-wise sparsity")
    body = [[l] + [statistics.fmean(per[n][l]) if per[n].get(l) else math.nan for n in names] for l in layers]
    tab = _table(["layer"] + [f"{n} @ {top[n]:g}" for n in names], body)
    return _section(f"{family}: layer-wise sparsity", img, tab)


def _structured(plt: Any, rows: list[dict[str, Any]]) -> str:
    has_latency = any(r.get("latency_s") is not None for r in rows)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    body = []
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by[_series_name(r)].append(r)
    ylabel = "latency (ms / batch, 1 thread)" if has_latency else "test accuracy"
    for name, rs in sorted(by.items()):
        rs = sorted(rs, key=lambda r: r.get("macs") or 0)
        ys = [(r.get("latency_s") or math.nan) * 1e3 if has_latency else r.get("accuracy") for r in rs]
        for ax, key in zip(axes, ("macs", "params")):
            ax.plot([r.get(key) for r in rs], ys, "o-" if not name.startswith("control") else "s--", label=name)
        body += [[name, _x(r), r.get("seed"), r.get("macs"), r.get("params"), r.get("dense_macs"),
                  r.get("dense_params"), r.get("accuracy"),
                  None if r.get("latency_s") is None else r["latency_s"] * 1e3,
                  None if r.get("dense_latency_s") is None else r["dense_latency_s"] * 1e3] for r in rs]
    for ax, key in zip(axes, ("MACs", "parameters")):
        ax.set_xlabel(key)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"structured: {'latency' if has_latency else 'accuracy'} vs MACs and parameters", fontsize=9)
    img = _png(plt, fig, "structured latency vs MACs and parameters")
    tab = _table(["method / control", "channels removed", "seed", "MACs", "params", "dense MACs", "dense params",
                  "accuracy", "latency ms", "dense latency ms"], body)
    note = "" if has_latency else "No run measured latency (evaluation.latency: true); accuracy is drawn instead."
    return _section("structured: latency vs MACs / parameters", img, tab, note)


def _runs_table(rows: list[dict[str, Any]]) -> str:
    metric, _ = _metric(rows)
    body = [[r.get("key"), r.get("family"), r.get("method"), r.get("control") or "", _x(r), r.get("sparsity"),
             r.get("seed"), r.get(metric), r.get("seconds")]
            for r in sorted(rows, key=lambda r: (r.get("family"), str(r.get("control")), _series_name(r), _x(r),
                                                 r.get("seed") or 0))]
    return ("<section><h2>All runs</h2>" +
            _table(["key", "family", "method", "control", "target sparsity", "sparsity", "seed", metric, "seconds"],
                   body) + "</section>")


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
h1 {{ font-size: 1.4em; }} h2 {{ font-size: 1.1em; border-bottom: 1px solid #ccc; padding-bottom: .2em; }}
img.plot {{ display: block; max-width: 100%; margin: .5em 0; }}
table {{ border-collapse: collapse; font-size: .85em; margin: .5em 0 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: .2em .5em; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child, th:first-child {{ text-align: left; }}
</style></head>
<body><h1>{title}</h1>
<p>{n} runs from <code>{runs}</code>. Controls: dense (the trained model), scratch (the pruned mask or architecture
re-initialised and trained with the dense budget; Liu et al. 2019), random_mask (random weights kept at the
method's layer-wise densities; Liu et al. 2022), global_magnitude (global magnitude with a minimum-keep floor;
Gupta et al. 2022).</p>
{body}
</body></html>
"""
