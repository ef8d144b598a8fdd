"""Regenerate the README's results section from benchmarks/results/*.json.

    python benchmarks/report.py          # rewrites the part of README.md between the results markers
"""
from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def _load(name: str) -> dict | None:
    p = RESULTS / name
    return json.loads(p.read_text()) if p.exists() else None


def _machine(doc: dict) -> str:
    m = doc.get("machine", {})
    return f"_{m.get('cpu_model', '?')}, {m.get('torch_num_threads', '?')} thread(s), torch {m.get('torch_version', '?')}, {m.get('date', '?')}_"


def quality() -> list[str]:
    doc = _load("quality.json")
    if not doc:
        return []
    cells: dict = defaultdict(lambda: defaultdict(list))
    sparsities = sorted({r["settings"]["sparsity"] for r in doc["runs"]})
    for r in doc["runs"]:
        s = r["settings"]
        k = (s["model"], s["method"], r["allocation"])
        cells[k][s["sparsity"]].append((r["pruned"]["accuracy"], (r["finetuned"] or r["pruned"])["accuracy"]))
    out = [f"### Weight pruning on digits (`python benchmarks/quality.py`)", "",
           f"Test accuracy right after pruning → after {doc.get('finetune_epochs', 2)} epochs of fine-tuning, "
           "mean over seeds (n = number of seeds). `global+mt`: global magnitude with the minimum-keep floor "
           "(`min_keep` = 0.05% of the weights). Calibration for snip/grasp/taylor: 10 examples per class in 4 "
           "batches. SNIP, GraSP and SynFlow were designed for pruning at initialisation and are applied here to "
           "trained networks: GraSP removes the weights whose removal keeps gradient flow highest, which at a "
           "trained minimum are the ones the loss depends on, so it does worse than random here. "
           + _machine(doc), ""]
    for model in sorted({k[0] for k in cells}):
        dense = [r["dense"]["accuracy"] for r in doc["runs"] if r["settings"]["model"] == model]
        out += [f"**{model}** (dense accuracy {statistics.mean(dense):.3f})", "",
                "| criterion | allocation | n | " + " | ".join(f"{s:.0%}" for s in sparsities) + " |",
                "|---|---|---|" + "---|" * len(sparsities)]
        for k in sorted(k for k in cells if k[0] == model):
            row = []
            for s in sparsities:
                v = cells[k].get(s, [])
                row.append(f"{statistics.mean(a for a, _ in v):.2f} → {statistics.mean(b for _, b in v):.3f}" if v else "")
            n = max(len(v) for v in cells[k].values())
            out.append(f"| {k[1]} | {k[2]} | {n} | " + " | ".join(row) + " |")
        out.append("")
    top = max(sparsities)
    floor = defaultdict(list)
    for r in doc["runs"]:
        s = r["settings"]
        if s["method"] == "magnitude" and r["allocation"] in ("global", "global+mt") and s["sparsity"] == top:
            floor[(s["model"], r["allocation"])].append(r.get("min_layer_density", float("nan")))
    if floor:
        out += [f"Layer collapse at {top:.0%}: the smallest density of any layer (mean over seeds), global magnitude "
                "without → with `min_keep`: " + "; ".join(
                    f"{m} {statistics.mean(floor[(m, 'global')]):.2%} → {statistics.mean(floor[(m, 'global+mt')]):.2%}"
                    for m in sorted({k[0] for k in floor}) if (m, "global+mt") in floor and (m, "global") in floor), ""]
    return out


def mask_speed() -> list[str]:
    out = []
    for path in sorted(RESULTS.glob("mask_speed*.json")):
        doc = json.loads(path.read_text())
        med, r, m = doc["median"], doc["ratios"], doc["model"]
        env = doc["machine"].get("threading_env") or {}
        setting = doc["config"].get("threads", "torch default")
        if env:
            setting += ", " + ", ".join(f"{k}={v}" for k, v in env.items())
        if not out:
            out += ["### Mask computation at scale (`python benchmarks/mask_speed.py`)", "",
                    f"Global magnitude at 90% on 24 x Linear(2048, 2048) ({m['params'] / 1e6:.0f}M parameters, "
                    f"{m['size_bytes'] / 2**20:.0f} MiB), against `torch.nn.utils.prune.global_unstructured` in the "
                    "same run, each in a fresh process; medians of the repeats. Both prune exactly 90% (masks equal "
                    "up to ties at the threshold). " + _machine(doc), "",
                    "| threads | load avg | secateurs | torch | speed-up | peak extra memory: secateurs / torch |",
                    "|---|---|---|---|---|---|"]
        load = doc["machine"].get("loadavg_1_5_15", ["?"])[0]
        out.append(f"| {setting} | {load:.1f} | {med['secateurs']['time_s']:.2f} s | {med['torch']['time_s']:.1f} s | "
                   f"{r['speedup']:.1f}x | {med['secateurs']['peak_extra_bytes_psutil'] / 2**20:.0f} MiB / "
                   f"{med['torch']['peak_extra_bytes_psutil'] / 2**20:.0f} MiB ({r['memory_ratio']:.1%}) |")
    return out + [""] if out else []


def llm() -> list[str]:
    out = []
    for name in sorted(RESULTS.glob("llm_*.json")):
        doc = json.loads(name.read_text())
        table = doc.get("markdown")
        if table:
            out += [f"### {doc.get('title', name.stem)} (`python benchmarks/{name.stem}.py`)", "",
                    doc.get("caption", "") + " " + _machine(doc), "", *table, ""]
    return out


def main() -> None:
    body = "\n".join([START, "", *mask_speed(), *quality(), *llm(), END])
    readme = ROOT / "README.md"
    text = readme.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    readme.write_text(head + body + tail)


if __name__ == "__main__":
    main()
