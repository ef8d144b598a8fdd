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


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


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
    doc = _load("llm_quality.json")
    if doc:
        sl, ml = doc.get("shakespeare_llama"), doc.get("minilm")
        def k(r):  # N:M implies its sparsity; some runs record it as None
            return r["method"], r["allocation"], r["pattern"], r["sparsity"] if r["pattern"] == "unstructured" else None

        cols = sorted({(r["method"], r["allocation"]) for r in (sl or ml)["runs"]})
        settings = sorted({k(r)[2:] for r in (sl or ml)["runs"]}, key=lambda x: (x[0] != "unstructured", x[0], x[1] or 0))
        label = lambda p, s: f"{s:.0%}" if p == "unstructured" else p  # noqa: E731
        out += ["### LLM post-training pruning (`python benchmarks/llm_quality.py`)", ""]
        if sl:
            c = sl["calibration"]
            out += [f"Shakespeare Llama ({sl['parameters'] / 1e6:.1f}M parameters): held-out perplexity "
                    f"(dense {sl['dense_perplexity']:.1f}; {sl['evaluation']['windows']} windows of "
                    f"{sl['evaluation']['seqlen']} tokens), calibration {c['nsamples']} x {c['seqlen']} tokens. "
                    "OWL uses λ=0.08, M=5 (unstructured) and λ=2, M=6 (mixed N:M), the reference settings; on a 4-block model "
                    "trained briefly there are few outlier features and OWL's non-uniform ratios cost quality here. "
                    + _machine(doc), "",
                    "| method | allocation | " + " | ".join(label(*x) for x in settings) + " |",
                    "|---|---|" + "---|" * len(settings)]
            by = {k(r): r for r in sl["runs"]}
            for m, a in cols:
                cells = [f"{by[(m, a, *x)]['perplexity']:.1f}" if (m, a, *x) in by else "" for x in settings]
                out.append(f"| {m} | {a} | " + " | ".join(cells) + " |")
            out.append("")
        if ml:
            by = {k(r): r for r in ml["runs"] if "mean_cosine" in r}
            na = sorted({r["method"] for r in ml["runs"] if "mean_cosine" not in r})
            out += [f"all-MiniLM-L6-v2 ({ml['parameters'] / 1e6:.1f}M parameters): mean cosine to the dense "
                    f"sentence embeddings / top-{ml['evaluation']['k']} neighbour overlap on "
                    f"{ml['evaluation']['sentences']} held-out sentences."
                    + (f" Not applicable to an encoder (no language-model loss): {', '.join(na)}." if na else ""), "",
                    "| method | allocation | " + " | ".join(label(*x) for x in settings) + " |",
                    "|---|---|" + "---|" * len(settings)]
            for m, a in cols:
                if m in na:
                    continue
                cells = [f"{by[(m, a, *x)]['mean_cosine']:.3f} / {by[(m, a, *x)]['topk_overlap']:.2f}"
                         if (m, a, *x) in by else "" for x in settings]
                out.append(f"| {m} | {a} | " + " | ".join(cells) + " |")
            out.append("")
    for name, model, flag in (("llm_reference.json", "Shakespeare Llama", ""),
                              ("llm_reference_smollm2-135m.json", "SmolLM2-135M", " --model smollm2-135m")):
        doc = _load(name)
        if not doc:
            continue
        refs = ", ".join(f"{k}@{v[:7]}" for k, v in doc["references"].items())
        st = doc["settings"]
        out += [f"### Against the reference implementations on {model} (`python benchmarks/llm_reference.py{flag}`)",
                "",
                f"Same {model} (dense perplexity {doc['dense_perplexity']:.3f}), same {st['nsamples']} calibration "
                f"rows of {st['seqlen']} tokens, same "
                f"evaluation windows; the reference code ({refs}) is fetched and driven by the benchmark's own "
                "glue. Ratios are secateurs / reference (lower is better for time and memory). " + _machine(doc), "",
                "| method | pattern | perplexity secateurs / reference | mask agreement | time per block | "
                "peak memory above model |", "|---|---|---|---|---|---|"]
        for r in doc["runs"]:
            out.append(f"| {r['method']} | {r['pattern']} | {r['secateurs']['perplexity']:.3f} / "
                       f"{r['reference']['perplexity']:.3f} ({r['perplexity_rel_diff']:+.1e}) | "
                       f"{r['mask_agreement']:.5f} | {r['time_per_block_ratio']:.2f}x | "
                       f"{r['peak_above_model_ratio']:.2f}x |")
        out.append("")
        if "smollm2" in name:
            out += _reference_depth()
    return out + _llm_scale()


def _reference_depth() -> list[str]:
    """What the SmolLM2 comparison shows (llm_reference_smollm2-135m{,_teacher_forced}.json)."""
    out = []
    doc = _load("llm_reference_smollm2-135m.json")
    tf = _load("llm_reference_smollm2-135m_teacher_forced.json")
    if doc:
        same = [f"{r['method']} {r['pattern']}" for r in doc["runs"] if r["mask_agreement"] == 1.0
                and r.get("max_abs_weight_difference", 1) == 0]
        if same:
            out.append(f"Bit-identical whole-model results (every mask entry and every weight equal, the same "
                       f"perplexity) on all 30 blocks: {', '.join(same)}. With `batch_size=8` (calibration rows "
                       "through a block 8 at a time, the `secateurs_batch8` run) secateurs is faster, at the price "
                       "of other float rounding: " + "; ".join(
                           f"{r['method']} {r['pattern']} {r['batch8_time_per_block_ratio']:.2f}x the reference's "
                           f"time, perplexity {r['batch8_perplexity_rel_diff']:+.1%}" for r in doc["runs"]) + ".")
        if doc.get("rerun"):
            out.append(f"(Rows {', '.join(doc['rerun']['rows'])}: {doc['rerun']['why']}.)")
    if tf:
        parts = [f"{r['method']} {r['pattern']}: {1 - r['teacher_forced_mask_agreement']:.1e} of the mask entries "
                 f"differ ({sum(a < 1 for a in r['teacher_forced_mask_agreement_per_block'])} of "
                 f"{len(r['teacher_forced_mask_agreement_per_block'])} blocks not identical)" for r in tf["runs"]]
        out += ["", f"Teacher-forced (`{tf['command']}`): each block pruned by secateurs alone on exactly the "
                f"inputs the reference fed it, masks compared block by block — " + "; ".join(parts) + ". "
                "SparseGPT's differences come from its column-by-column OBS updates, whose float32 rounding "
                "(blocked updates, Cholesky of the same damped Hessian) moves later columns' scores across the "
                "threshold; in a whole-model run each changed block output shifts every later block's statistics a "
                "little and flips more near-ties, a cascade with depth (the mask agreement above), while the "
                "perplexity stays within the spread that the calibration batching alone causes."]
    return out + ([""] if out else [])


def _llm_scale() -> list[str]:
    out = []
    doc = _load("llm_scale.json")
    if doc:
        out += ["### LLM pruning memory at scale (`python benchmarks/llm_scale.py`)", "",
                "Peak resident memory while pruning Llama-shaped models far larger than one block's working set. "
                + doc.get("note", "") + " " + _machine(doc), "",
                "| method | layers | parameters | model / block working set | peak RSS / model size | "
                "growth during prune / model size |", "|---|---|---|---|---|---|"]
        for r in doc["runs"]:
            out.append(f"| {r['method']} | {r['layers']} | {r['parameters'] / 1e6:.0f}M | "
                       f"{r['model_over_block_working_set']:.1f} | {r['peak_rss_over_model_size']:.2f} | "
                       f"{r['peak_above_start_over_model_size']:.2f} |")
        out.append("")
    return out


def engine_combos() -> list[str]:
    doc = _load("engine_combos.json")
    if not doc:
        return []
    cells: dict = defaultdict(lambda: defaultdict(list))
    dense: dict = defaultdict(list)
    order: list = []
    for r in doc["runs"]:
        k = (r["model"], r["run"])
        if k not in order:
            order.append(k)
        cells[k][r["sparsity"]].append(r["accuracy"])
        if r["sparsity"] == doc["sparsities"][0]:
            dense[r["model"]].append(r["dense_accuracy"])
    sp = doc["sparsities"]
    out = ["### LLM methods on image classifiers (`python benchmarks/engine_combos.py`)", "",
           "Test accuracy on digits right after pruning the Linear layers (no fine-tuning), mean over seeds; "
           "LeNet-5 and ResNet-20: the classifier layers (with `--models vit`, every Linear of the zoo ViT's blocks, gathered "
           "block by block). Calibration: 100 training images. `+ sparsegpt solver`: the OBS update of the kept "
           "weights after the mask is chosen.", "", _machine(doc), "",
           "| model | run | dense | " + " | ".join(f"{s:.0%}" for s in sp) + " |",
           "|---|---|---|" + "---|" * len(sp)]
    for model, run in order:
        c = cells[(model, run)]
        d = statistics.mean(dense[model])
        out.append(f"| {model} | {run} | {d:.3f} | " + " | ".join(
            f"{statistics.mean(c[s]):.3f}" if c[s] else "" for s in sp) + " |")
    return out + [""]


def structured() -> list[str]:
    doc = _load("structured.json")
    if not doc:
        return []
    st, v = doc["settings"], doc.get("versions", {})
    ft = next(iter(st["finetune"].values()), {})
    lat = st["latency"]
    bs = [str(b) for b in lat["batch_sizes"]]
    out = ["### Structured pruning against Torch-Pruning (`python benchmarks/structured.py`)", "",
           "Channels removed physically at the same ratio in every dependency group (L2 magnitude, uniform; the "
           f"classifier keeps its outputs): secateurs {v.get('secateurs', '?')} against Torch-Pruning "
           f"{v.get('torch_pruning', '?')} (`MetaPruner`, `GroupMagnitudeImportance(p=2)`, local), each on a copy "
           "of the same trained model. `round_to=8`: kept widths rounded to multiples of 8; `@ peer MACs`: "
           "`target_macs` set to Torch-Pruning's MACs, for accuracy at equal MACs. MACs per image (FlopCounterMode, "
           "the same counter for both). Speed-up: dense / pruned CPU latency, one thread, batch "
           + " and ".join(bs) + f", medians of {lat['rounds']} rounds with the dense model, a copy of it (noise "
           "control, ideally 1.00x) and the pruned models of a ratio timed interleaved; by the thread's CPU time "
           "(immune to preemption on a busy machine; `÷ MACs`: CPU speed-up / MAC reduction, 1.00 when latency falls "
           "as much as the MACs) and by wall clock (`secateurs.structured.latency`). Accuracy on the digits test "
           f"split right after pruning → after {ft.get('epochs', '?')} epochs of fine-tuning "
           f"({ft.get('optimizer', '?')}, lr {ft.get('lr', '?')}, cosine; the same for every run), mean "
           f"(min–max) over fine-tuning seeds {', '.join(map(str, ft.get('seeds', [0])))}. "
           + _machine(doc), ""]
    order = doc.get("runs_order") or sorted({r["run"] for r in doc["runs"]})
    for model, dense in doc["dense"].items():
        out += [f"**{model}** (dense: {dense['params'] / 1e3:.0f}k parameters, {dense['macs'] / 1e6:.2f}M MACs, "
                f"accuracy {dense['accuracy']:.3f})", "",
                "| ratio | run | parameters | MACs | MAC reduction | speed-up, CPU time (batch " + " / ".join(bs)
                + ") | ÷ MACs | speed-up, wall clock | accuracy |", "|---|---|---|---|---|---|---|---|---|"]
        rows = sorted((r for r in doc["runs"] if r["model"] == model),
                      key=lambda r: (r["ratio"], order.index(r["run"]) if r["run"] in order else len(order)))
        for r in rows:
            if not r.get("ok"):
                out.append(f"| {r['ratio']:.0%} | {r['run']} | failed: {r.get('error', '?')[:80]} | | | | | | |")
                continue
            sp, q = r["speedup"], r["speedup_over_mac_reduction"]["cpu"]
            seeds = r.get("accuracy_finetuned_seeds") or []
            acc = (f"{r['accuracy_pruned']:.3f} → {r['accuracy_finetuned']:.3f}"
                   + (f" ({min(seeds):.3f}–{max(seeds):.3f})" if len(seeds) > 1 else "")
                   if r.get("accuracy_finetuned") is not None else "")
            out.append(f"| {r['ratio']:.0%} | {r['run']} | {r['params'] / 1e3:.1f}k | {r['macs'] / 1e6:.3f}M | "
                       f"{r['mac_reduction']:.2f}x | " + " / ".join(f"{sp['cpu'][b]:.2f}x" for b in bs) + " | "
                       + " / ".join(f"{q[b]:.2f}" for b in bs) + " | "
                       + " / ".join(f"{sp['wall'][b]:.2f}x" for b in bs) + f" | {acc} |")
        same = [f"{r['ratio']:.0%} {r['run']}: " + ("identical logits" if r["max_abs_logit_diff_vs_peer"] == 0
                                                     else f"other channels (logits differ by up to "
                                                          f"{r['max_abs_logit_diff_vs_peer']:.2g})")
                for r in rows if r.get("same_widths_as_peer")]
        out += ["", "Same widths as torch-pruning (before fine-tuning): " + "; ".join(same) + "."] if same else []
        out.append("")
    arch = doc.get("architectures") or []
    if arch:
        libs = list(dict.fromkeys(a["library"] for a in arch))
        out += ["Architectures at ratio 0.5, heads and MLP neurons (residual width kept): does pruning succeed and "
                "the pruned model run on an input of another shape? The zoo ViT (random init) and a 2-layer Hugging "
                f"Face Llama (4 query / 2 key-value heads; transformers {v.get('transformers', '?')}); each attempt "
                f"in a child process, killed after {st.get('arch_timeout_s', '?'):.0f} s. CNN rows: the runs above.",
                "", "| architecture | " + " | ".join(libs) + " |", "|---|" + "---|" * len(libs)]
        for model in doc["dense"]:
            cells = ["yes" if doc["handled"].get(lib, {}).get(model) else "no" for lib in libs]
            out.append(f"| {model} | " + " | ".join(cells) + " |")
        for name in dict.fromkeys(a["arch"] for a in arch):
            cells = []
            for lib in libs:
                tries = [a for a in arch if a["arch"] == name and a["library"] == lib]
                good = [a for a in tries if a["ok"] and a["runs"]]
                if good:
                    a = good[0]
                    cells.append(f"yes ({a['params_before'] / 1e3:.0f}k → {a['params_after'] / 1e3:.0f}k parameters)")
                else:
                    cells.append("no: " + "; ".join(
                        (f"{a['variant']}: " if len(tries) > 1 else "")
                        + (a.get("error") or "pruned model does not run")[:90] for a in tries))
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        out.append("")
    return out + structured_deploy(doc)


def structured_deploy(doc: dict) -> list[str]:
    """The latency sweep of benchmarks/structured.py (its ``deploy`` key)."""
    dep = doc.get("deploy")
    if not dep:
        return []
    rows = dep["dense_fastest_path"]
    cols = list(dict.fromkeys((r["resolution"], r["batch"]) for r in rows))
    out = ["Where does the CPU speed-up meet the MAC reduction? Dense and pruned models (not fine-tuned: latency "
           "does not depend on the weights) timed interleaved on each model's fastest inference path for the dense "
           "model (eager, BatchNorm folded by `structured.fuse_bn`, folded + channels_last, or a frozen TorchScript "
           f"graph), {dep['clock']}, one thread. Cell: speed-up ÷ MAC reduction (1.00 = latency falls as much as the "
           "MACs), and in brackets the bound set by the fixed per-operator cost (a model pruned to 1–2 channels per "
           "layer measures that cost). The zoo CNNs end in adaptive pooling, so 32×32 inputs run (timing only).", "",
           "| model | variant | MAC reduction (8×8) | " + " | ".join(f"{r}×{r}, batch {b}" for r, b in cols) + " |",
           "|---|---|---|" + "---|" * len(cols)]
    for model in dict.fromkeys(r["model"] for r in rows):
        for variant in dict.fromkeys(r["variant"] for r in rows if r["model"] == model):
            cells, red = [], ""
            for res, b in cols:
                r = next((r for r in rows if r["model"] == model and r["variant"] == variant
                          and r["resolution"] == res and r["batch"] == b), None)
                if r is None:
                    cells.append("")
                    continue
                if res == 8 and not red:
                    red = f"{r['mac_reduction']:.2f}x"
                bound = f" ({r['overhead_bound']:.2f})" if r.get("overhead_bound") is not None else ""
                cells.append(f"{r['speedup_over_mac_reduction']:.2f}{bound}")
            out.append(f"| {model} | {variant} | {red} | " + " | ".join(cells) + " |")
    thr = dep.get("conv_throughput") or []
    if thr:
        plain = [t for t in thr if not t["channels_last"] and t["hw"] == 8]
        out += ["", "One 3×3 convolution at 8×8, batch 256: " + ", ".join(
            f"{t['channels']} channels {t['gmacs_per_s']:.0f} GMAC/s" for t in plain)
            + " — narrow layers run far below the CPU's vector throughput, so pruning to widths under 16 loses "
              "speed-up; `round_to=16` avoids it."]
    return out + [""]


def structured_llm() -> list[str]:
    doc = _load("structured_llm.json")
    if not doc:
        return []
    d, st = doc["dense"], doc["settings"]
    out = ["### Structured pruning of the Shakespeare Llama (`python benchmarks/structured_llm.py`)", "",
           "Whole key/value head groups and MLP neurons removed physically (residual width kept), or whole decoder "
           "layers (Block Influence). Perplexity on the held-out plays right after pruning → after "
           f"{st['finetune_steps']} steps of recovery fine-tuning ({st['finetune']}); latency of one "
           f"{st['seqlen']}-token row, dense and pruned timed interleaved, one thread. Dense: "
           f"{d['params'] / 1e6:.2f}M parameters, {d['macs'] / 1e6:.0f}M MACs, perplexity {d['perplexity']:.2f}. "
           + _machine(doc), "",
           "| run | parameters | MACs | speed-up | perplexity | after fine-tuning |", "|---|---|---|---|---|---|"]
    for r in doc["runs"]:
        out.append(f"| {r['run']} | {r['params'] / 1e6:.2f}M | {r['macs'] / 1e6:.0f}M | {r['speedup']:.2f}x | "
                   f"{r['perplexity']:.2f} | {r['perplexity_finetuned']:.2f} |")
    return out + [""]


def llm_pretrained() -> list[str]:
    """Every LLM method x target x allocation on the real pretrained LLMs (llm_pretrained*.json)."""
    parts = {}
    for name in ("llm_pretrained.json", "llm_pretrained_gemma3.json"):
        doc = _load(name)
        for key, part in (doc or {}).items():
            if isinstance(part, dict) and "runs" in part:
                parts[key] = (part, doc)
    if not parts:
        return []
    out = ["### Real pretrained LLMs: every method × sparsity (`python benchmarks/llm_pretrained.py --model NAME`)",
           "", "Held-out perplexity of SmolLM2-135M and Gemma-3-270M (dequantized from their 4-bit GGUF files, so "
           "*dense* is the dequantized model) after one-shot pruning of every block linear; each cell is "
           "perplexity (pruning seconds). OWL uses λ=0.08, M=5 (unstructured) and the mixed N:M variant with "
           "λ=2, M=6. Empty cells were not run.", ""]
    label = lambda p, s: f"{s:.0%}" if p == "unstructured" else p  # noqa: E731
    for key, (part, doc) in parts.items():
        pr = part["protocol"]
        c, e = pr["calibration"], pr["evaluation"]
        runs = part["runs"]
        settings = sorted({(r["pattern"], r["sparsity"] if r["pattern"] == "unstructured" else None) for r in runs},
                          key=lambda x: (x[0] != "unstructured", x[0], x[1] or 0))
        by = {(r["method"], r["allocation"], r["pattern"],
               r["sparsity"] if r["pattern"] == "unstructured" else None): r for r in runs}
        rows = sorted({(r["method"], r["allocation"]) for r in runs}, key=lambda x: (x[1] != "uniform", x[0]))
        peak = max(r.get("peak_rss_above_model_mib", 0) for r in runs)
        out += [f"**{part['model']}** ({part['parameters'] / 1e6:.0f}M parameters, {part['blocks']} blocks): dense "
                f"perplexity **{part['dense_perplexity']:.2f}**; calibration {c['nsamples']} × {c['seqlen']} tokens "
                f"(seed {c['seed']}, {c['source']}); evaluation {e['windows']} × {e['seqlen']} tokens ({e['source']}). "
                f"Largest peak memory of a pruning run above the loaded model: {peak:.0f} MiB. "
                f"`{doc.get('commands', {}).get(key, '')}` " + _machine(doc), "",
                "| method | allocation | " + " | ".join(label(*x) for x in settings) + " |",
                "|---|---|" + "---|" * len(settings)]
        for m, a in rows:
            cells = [f"{by[(m, a, *x)]['perplexity']:.1f} ({by[(m, a, *x)]['prune_seconds']:.0f} s)"
                     if (m, a, *x) in by else "" for x in settings]
            out.append(f"| {m} | {a} | " + " | ".join(cells) + " |")
        out.append("")
    return out


def llm_alps() -> list[str]:
    return [*_llm_alps("llm_alps.json", "Shakespeare Llama", ""),
            *_llm_alps("llm_alps_smollm2-135m.json", "SmolLM2-135M", " --model smollm2-135m")]


def _llm_alps(name: str, model: str, flag: str) -> list[str]:
    doc = _load(name)
    if not doc:
        return []
    st = doc["settings"]
    out = [f"### ALPS against its authors' code on {model} (`python benchmarks/llm_alps.py{flag}`)", "",
           f"{model}, the same calibration rows ({st.get('nsamples', '?')} × {st.get('seqlen', '?')}) and "
           f"evaluation windows for every implementation, one thread each; dense perplexity "
           f"{doc['dense_perplexity']:.3f}. ALPS (Meng et al. 2024) as secateurs' criterion + solver, the reference "
           "(mazumder-lab/ALPS, its `cuda:0` replaced by `cpu` at import), and secateurs' SparseGPT. "
           + _machine(doc), "",
           "| target | ALPS (ours) | ALPS (reference) | SparseGPT (ours) | ours / reference time | mask agreement |",
           "|---|---|---|---|---|---|"]
    for r in doc["runs"]:
        a, ref, sg = r["secateurs"], r["reference"], r["sparsegpt"]
        target = r["pattern"] if ":" in r["pattern"] else f"{float(r['pattern']):.0%}"
        out.append(f"| {target} | {a['perplexity']:.3f} ({a['prune_seconds']:.1f} s) | {ref['perplexity']:.3f} "
                   f"({ref['prune_seconds']:.1f} s) | {sg['perplexity']:.3f} ({sg['prune_seconds']:.1f} s) | "
                   f"{r['time_ratio']:.2f} | {r['mask_agreement']:.3f} |")
    return out + [""]


def llm_ria_dsnot() -> list[str]:
    doc = _load("llm_ria_dsnot.json")
    if not doc:
        return []
    refs = ", ".join(f"{k}@{v[:7]}" for k, v in doc["references"].items())
    st = doc["settings"]
    out = ["### RIA and DSnoT against their authors' code (`python benchmarks/llm_ria_dsnot.py`)", "",
           f"Shakespeare Llama, the same {st['nsamples']} x {st['seqlen']} calibration rows and evaluation windows; "
           f"references {refs}; RIA: {st['ria']}; DSnoT: {st['dsnot']}. Dense perplexity "
           f"{doc['dense_perplexity']:.2f}. " + _machine(doc), "",
           "| method | target | perplexity secateurs / reference | equal mask entries |", "|---|---|---|---|"]
    for r in doc["runs"]:
        name = r["method"] + (f"({r['base']})" if r.get("base") else "")
        target = r["pattern"] if r["pattern"] != "unstructured" else f"{r['sparsity']:.0%}"
        out.append(f"| {name} | {target} | {r['secateurs']['perplexity']:.3f} / {r['reference']['perplexity']:.3f} "
                   f"| {r['mask_agreement']:.5f} |")
    return out + [""]


def llm_stream() -> list[str]:
    doc = _load("llm_stream.json")
    if not doc:
        return []
    st = doc["settings"]
    out = ["### Streaming a checkpoint larger than memory (`python benchmarks/llm_stream.py`)", "",
           f"Llama checkpoints of one shape (hidden {st['hidden']}, vocabulary {st['vocab']}, {st['dtype']}, random "
           f"weights) at two depths, pruned at {st['sparsity']:.0%} with {st['nsamples']} calibration rows of "
           f"{st['seqlen']} tokens by `llm.prune_checkpoint` (stream) and, for contrast, by loading the model and "
           "calling `llm.prune` (load); each in a fresh process, peak RSS = its VmHWM (about 0.45 GB of it is "
           "Python, torch and transformers). " + _machine(doc), "",
           "| blocks | method | mode | checkpoint | peak RSS | s / block |", "|---|---|---|---|---|---|"]
    for r in doc["runs"]:
        out.append(f"| {r['layers']} | {r['method']} | {r['mode']} | {r['checkpoint_bytes'] / 2**20:.0f} MiB | "
                   f"{r['peak_rss_bytes'] / 2**20:.0f} MiB | {r['seconds_per_block']:.2f} |")
    ratios = ", ".join(f"{m} {v:.3f}" for m, v in doc.get("peak_ratio_deep_over_shallow", {}).items())
    before = "; ".join(f"{b['what']}: " + ", ".join(f"{m} {v:.3f}"
                                                    for m, v in b["peak_ratio_deep_over_shallow"].items())
                       for b in doc.get("before", {}).values())
    return out + ["", f"Peak RSS of the deeper streamed prune over the shallower one: {ratios} (goal ≤ 1.1)"
                  + (f"; in the same run, {before}." if before else "."), ""]


def sparse_training() -> list[str]:
    doc = _load("sparse_training.json")
    if not doc:
        return []
    rows = doc["rows"]
    out = ["### Sparse training at equal budgets (`python benchmarks/sparse_training.py`)", "",
           "Trained from scratch on digits with the zoo recipe (cosine learning rate), every method configured by its "
           "`from_budget` defaults; final test accuracy, mean ± std over seeds " + str(doc["settings"]["seeds"]) +
           ". IMP (lottery tickets, rewind to init) trains once per round: its budget is in the last column. "
           + _machine(doc), ""]
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        dense = next((r for r in mine if r["method"] == "dense"), None)
        sps = sorted({r["target_sparsity"] for r in mine if r["method"] != "dense"})
        head = f"**{model}**" + (f" (dense {dense['accuracy_mean']:.3f} ± {dense['accuracy_std']:.3f}, "
                                 f"{dense['epochs']} epochs)" if dense else "")
        out += [head, "", "| method | " + " | ".join(f"{s:.0%}" for s in sps) + " | training epochs |",
                "|---|" + "---|" * (len(sps) + 1)]
        for method in dict.fromkeys(r["method"] for r in mine if r["method"] != "dense"):
            cells, epochs = [], ""
            for s in sps:
                r = next((r for r in mine if r["method"] == method and r["target_sparsity"] == s), None)
                cells.append(f"{r['accuracy_mean']:.3f} ± {r['accuracy_std']:.3f}" if r else "")
                if r:
                    epochs = str(r.get("train_epochs") or r["epochs"]) if method != "imp" else \
                        "/".join(str(x["train_epochs"]) for x in mine if x["method"] == "imp")
            out.append(f"| {method} | " + " | ".join(cells) + f" | {epochs} |")
        out.append("")
    return out


def sparse_overhead() -> list[str]:
    doc = _load("sparse_overhead.json")
    if not doc:
        return []
    st = doc["settings"]
    out = ["### Training-step overhead of masks and schedules (`python benchmarks/sparse_overhead.py`)", "",
           f"{st['steps']} optimizer steps at {st['sparsity']:.0%} sparsity from the same initial weights and batches, "
           f"dense and sparse runs interleaved in chunks of {st['chunk']} steps, thread CPU time, one thread. `run`: "
           "mean step time ratio over this short run (its `from_budget` updates come every max(10, steps/100) "
           "steps); `steady`: median step without a mask update once the masks are set (the parametrization's "
           "cost, plus ISS-P's per-step shrink and PDP's per-forward soft mask); `at 100`: steady cost plus one update "
           f"per 100 steps, the references' frequency (goal ≤ {st['goal_ratio']}×). " + _machine(doc), "",
           "| model | method | dense step | run | steady | one update | at 100 |", "|---|---|---|---|---|---|---|"]
    for r in doc["runs"]:
        if "steady_ratio" not in r:
            continue
        out.append(f"| {r['model']} | {r['method']} | {r['dense_step_s'] * 1e3:.2f} ms | {r['ratio']:.2f} | "
                   f"{r['steady_ratio']:.2f} | {r['update_cost_s'] * 1e3:.1f} ms | "
                   f"{r['amortized_ratio_at_reference_frequency']:.2f} |")
    runs = [r for r in doc["runs"] if "steady_ratio" in r]
    notes = []
    for model in dict.fromkeys(r["model"] for r in runs):
        rs = [r for r in runs if r["model"] == model and r["method"] != "pdp"]
        pdp = next((r for r in runs if r["model"] == model and r["method"] == "pdp"), None)
        if rs:
            lo = min(r["amortized_ratio_at_reference_frequency"] for r in rs)
            hi = max(r["amortized_ratio_at_reference_frequency"] for r in rs)
            met = sum(r["meets_goal"] for r in rs)
            notes.append(f"{model}: {lo:.2f}–{hi:.2f}× at 100 without PDP ({met}/{len(rs)} within the goal)"
                         + (f", PDP {pdp['amortized_ratio_at_reference_frequency']:.2f}×" if pdp else ""))
    return out + ["", "; ".join(notes) + ". On the 0.6 ms LeNet-300-100 step the masks' fixed cost per layer (the "
                  "`parametrize` property, the multiply and its backward) dominates; PDP computes an exact k-th "
                  "value over each weight tensor at every forward.", ""]

def lottery() -> list[str]:
    doc = _load("lottery.json")
    if not doc:
        return []
    out = ["### Lottery tickets (`python benchmarks/lottery.py`)", "",
           "Iterative magnitude pruning with rewinding: each round trains, prunes 20% of the remaining weights and "
           "rewinds the survivors; the ticket against its two controls (the ticket's mask on a new random "
           "initialization; a random mask at the ticket's layer-wise density), all trained with the zoo recipe. "
           "Test accuracy, mean over seeds " + ", ".join(next(iter(doc["experiments"].values()))["runs"]) + ". "
           + _machine(doc), ""]
    for model, e in doc["experiments"].items():
        c, sm = e["config"], e["summary"]
        rew = "initialization" if not c["rewind_step"] else f"step {c['rewind_step']}"
        rule = (f"layer-wise, {c['prune_rate']:.0%} per round ({c['output_rate']:.0%} for the output layer)"
                if c["allocation"] == "uniform" else f"global, {c['prune_rate']:.0%} per round"
                + (f", {', '.join(c['ignore'])} not pruned" if c.get("ignore") else ""))
        out += [f"**{model}** ({rule}; rewind to {rew}; {c['epochs']} epochs per round; dense "
                f"{sm['dense_accuracy']:.3f})", "", "| round | density | ticket | re-init | random mask |",
                "|---|---|---|---|---|"]
        f = lambda v, sd: "" if v is None else f"{v:.3f} ± {sd:.3f}"  # noqa: E731
        for r in sm["per_round"]:
            out.append(f"| {r['round']} | {r['density']:.1%} | {f(r['ticket_accuracy'], r['ticket_std'])} | "
                       f"{f(r['reinit_accuracy'], r['reinit_std'])} | "
                       f"{f(r['random_mask_accuracy'], r['random_mask_std'])} |")
        low = sm["lowest_density_within_tolerance"]
        out += ["", f"Within {sm['tolerance']:.0%} of dense down to density: ticket {low['ticket']:.1%}, re-init "
                f"{low['reinit']:.1%}, random mask {low['random_mask']:.1%}; the ticket beats re-init in "
                f"{sm['ticket_beats_reinit_rounds']} and the random mask in {sm['ticket_beats_random_mask_rounds']} "
                f"of {sm['pruned_rounds']} rounds.", ""]
    return out


def infobatch() -> list[str]:
    doc = _load("infobatch.json")
    if not doc:
        return []
    out = ["### InfoBatch: dynamic data pruning (`python benchmarks/infobatch.py`)", "",
           f"{doc['epochs']} epochs, prune ratio r = {doc['ratio']}, full data in the last {doc['anneal']:.1%} of "
           "epochs; the random control skips the same number of examples per epoch uniformly (no rescaling). "
           f"Paper: {doc['paper_anchor']}. Test accuracy (mean ± std over seeds) and the fraction of training "
           "forward passes saved. " + _machine(doc), "",
           "| task | model | full data | InfoBatch | random skipping, same budget | saved |", "|---|---|---|---|---|---|"]
    for task, t in doc["tasks"].items():
        sm = t["summary"]
        a = {k: f"{sm[k]['accuracy']['mean']:.3f} ± {sm[k]['accuracy']['std']:.3f}" for k in ("full", "infobatch",
                                                                                             "random")}
        out.append(f"| {task} | {t['model']} | {a['full']} | {a['infobatch']} | {a['random']} | "
                   f"{sm['infobatch']['saved_fraction']['mean']:.1%} |")
    return out + [""]


def data_scale() -> list[str]:
    doc = _load("data_scale.json")
    if not doc:
        return []
    return ["### SSP scoring at scale (`python benchmarks/data_scale.py`)", "",
            f"{doc['n']:,} synthetic {doc['dim']}-dimensional embeddings ({doc['embedding_matrix_bytes'] / 2**20:.0f} "
            f"MiB), k = {doc['n_clusters']} ({doc['backend']}, {doc['metric']} distance): {doc['wall_seconds']:.0f} s, "
            f"peak memory above the baseline {doc['peak_rss_minus_baseline_bytes_getrusage'] / 2**20:.0f} MiB = "
            f"{doc['peak_over_matrix_getrusage']:.2f}× the embedding matrix (goal: {doc['goal']}; "
            f"{_met(doc['goal_met'])}). " + _machine(doc), ""]


def dst_reference() -> list[str]:
    doc = _load("dst_reference.json")
    if not doc:
        return []
    ref, su = doc["reference"], doc["setup"]
    out = ["### Dynamic sparse training against the authors' code (`python benchmarks/dst_reference.py --ref DIR`)", "",
           f"secateurs' GraNet, RigL and SET against {ref['repo']}@{ref['commit'][:7]} ({ref['file']}) on "
           f"{su['model']} / {su['dataset']}: the same initial weights and mask, the same batches in lockstep, "
           f"{su['optimizer']}; seeds {', '.join(map(str, su['seeds']))}. Trajectory: each trains on its own; "
           "replay: the reference performs our update from our exact state (weights, masks, dense gradient), and the "
           "masks are compared entry by entry. " + _machine(doc), "",
           "| config | accuracy (ours) | accuracy (reference) | final sparsity ours / ref | max \\|Δ nnz\\| total "
           "(trajectory) | replay: identical masks |", "|---|---|---|---|---|---|"]
    for name, r in doc["results"].items():
        sm = r["summary"]
        rep = sm.get("replay") or {}
        out.append(f"| {name} | {sm['accuracy_ours']['mean']:.3f} ± {sm['accuracy_ours']['std']:.3f} | "
                   f"{sm['accuracy_ref']['mean']:.3f} ± {sm['accuracy_ref']['std']:.3f} | "
                   f"{sm['final_sparsity_ours']['mean']:.4f} / {sm['final_sparsity_ref']['mean']:.4f} | "
                   f"{sm['trajectory']['max_abs_total_nnz_diff']} | "
                   + (f"{rep['identical_masks']}/{rep['updates']} (≤ {rep['max_mask_entries_differing']} entries)"
                      if rep else "–") + " |")
    return out + ["", "Differences come from the reference's rules: it drops ceil(r·n) per layer for RigL/SET (ours "
                  "int(f·n)), drops every weight tied at its threshold, regrows fewer than it dropped when too few "
                  "inactive weights have a gradient, stops pruning one step before the final density, and its SET "
                  "regrowth draws each entry with probability k/n (the count drifts); ours keeps every count exact.",
                  ""]


def data_pruning() -> list[str]:
    doc = _load("data_pruning.json")
    if not doc:
        return []
    out = ["### Data pruning: scorers × selectors × rates (`python benchmarks/data_pruning.py`)", "",
           "A model trained from scratch on the kept examples, with as many optimizer steps as on the full data "
           "(the CCS protocol); test accuracy in %, mean ± std over seeds. Cells: `hard / ccs`; the random subset is "
           "its own row; `KD`: distillation from a teacher trained on the full data (weight 0.5, T = 1). "
           f"Anchor: {doc['anchors']['ccs_paper']}.", ""]
    for name, ds in doc["datasets"].items():
        sm = ds["summary"]
        rates, kd = ds["rates"], ds["distill_rates"]

        def cell(scorer: str, strategy: str, rate: float, distill: bool) -> str:
            r = next((r for r in sm if r["scorer"] == scorer and r["strategy"] == strategy and r["distill"] == distill
                      and abs(r["rate"] - rate) < 1e-9), None)
            return "" if r is None else f"{100 * r['mean']:.1f}"

        full = next(r for r in sm if r["strategy"] == "full")
        cols = [f"{r:.0%}" for r in rates] + [f"KD {r:.0%}" for r in kd]
        out += [f"**{name}** ({ds['model']}, {ds['epochs']}-epoch budget, {ds['n_train']} training examples; full data "
                f"{100 * full['mean']:.1f} ± {100 * full['std']:.1f}; " + _machine(ds) + ")", "",
                "| scorer | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        rnd = [next((f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f}" for r in sm if r["strategy"] == "random"
                     and r["distill"] == d and abs(r["rate"] - rate) < 1e-9), "")
               for d, rs in ((False, rates), (True, kd)) for rate in rs]
        out.append("| random | " + " | ".join(rnd) + " |")
        for scorer in [x for x in ds["scorers"] if x != "random"]:
            cells = [f"{cell(scorer, 'hard', r, d)} / {cell(scorer, 'ccs', r, d)}"
                     for d, rs in ((False, rates), (True, kd)) for r in rs]
            out.append(f"| {scorer} | " + " | ".join(cells) + " |")
            if scorer == "dbp":
                own = [cell("dbp", "dbp", r, d) for d, rs in ((False, rates), (True, kd)) for r in rs]
                if any(own):
                    out.append("| dbp (its selector) | " + " | ".join(own) + " |")
        holds = [f"{b['rate']:.0%}{' KD' if b['distill'] else ''}: {b['holds']}/{b['scorers']}"
                 for b in ds["claim"]["by_rate"]]
        out += ["", "CCS claim (hard below random and CCS at or above random, each by 2 standard errors), scorers for "
                "which it holds: " + ", ".join(holds) + ".", ""]
    dual = _load("data_dual.json")
    if dual:
        c = dual["correlations"]
        out += [f"Against DUAL ({dual['dual_repo']}@{dual['dual_commit'][:7]}, its scorers and CCS sampler on the same "
                f"training run, {dual['dataset']}, {dual['model']}): Spearman correlation with ours — "
                + ", ".join(f"{k} {v['spearman_dual_vs_ours']:.2f} (ours, seed 0 vs 1: "
                            f"{v['spearman_ours_seed0_vs_seed1']:.2f})" for k, v in c.items())
                + ". Differences: " + " ".join(dual["notes"][:3]), ""]
    return out


def llm_recover() -> list[str]:
    out = []
    for name in ("llm_recover.json", "llm_recover_structured.json"):
        doc = _load(name)
        if doc:
            out += _llm_recover(doc, name)
    return out


def _llm_recover(doc: dict, name: str) -> list[str]:
    pr, runs = doc["protocol"], doc["runs"]
    steps = max(len(r.get("losses", [])) for r in runs)
    structured = name != "llm_recover.json"
    cmd = doc.get("command") or "python benchmarks/llm_recover.py" + (" --prunings flap20,dense ..." if structured
                                                                       else "")
    out = [f"### Recovery after {'structured ' if structured else ''}pruning (`{cmd}`)", "",
           f"{doc['model']}: pruned by {pr['pruning']}; then {pr['recovery']}. Held-out: {pr['heldout']}. "
           "Gap closed = (pruned − recovered) / (pruned − dense) perplexity; every pruned weight is checked to be "
           f"still zero after recovery (masks held; structured: nothing to hold). {pr.get('threads', '?')} "
           "thread(s) requested. " + _machine(doc), "",
           "| pruning | trained | trained parameters | dense | pruned | recovered | gap closed | masks held | "
           "recovery time |", "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        gap = f"{r['gap_closed']:.0%}" if r.get("gap_closed") is not None else "–"
        held = "–" if r.get("masks_held") is None else ("yes" if r["masks_held"] else "**no**")
        out.append(f"| {r['pruning']} | {r['train']} | {r['trained_parameters'] / 1e6:.2f}M "
                   f"({r['trained_fraction']:.2%}) | {r['perplexity_dense']:.1f} | {r['perplexity_pruned']:.1f} | "
                   f"{r['perplexity_recovered']:.1f} | {gap} | {held} | {r['recover_seconds']:.0f} s |")
    notes = list(dict.fromkeys(n for r in runs for n in r.get("notes", [])))
    tail = []
    if structured:
        ctrl = {r["train"]: r["perplexity_recovered"] for r in runs if r["pruning"] == "dense"}
        for r in runs:
            if r["pruning"] == "dense" or r.get("sparsity", 0) != 0.2:
                continue
            dense = r["perplexity_dense"]
            c = ctrl.get(r["train"])
            tail.append(f"{r['pruning']} + {r['train']}: {r['perplexity_recovered']:.1f} vs dense {dense:.1f} "
                        f"({r['perplexity_recovered'] / dense - 1:+.0%}; goal within 10%: "
                        f"{_met(r['perplexity_recovered'] <= 1.1 * dense)})"
                        + (f", vs the dense model trained alike {c:.1f} ({r['perplexity_recovered'] / c - 1:+.0%})"
                           if c else ""))
        tail = ["Goal (perplexity after recovery at 20% removal within 10% of dense): " + "; ".join(tail) + ". "
                "Recovery trains on Shakespeare and the held-out text is Shakespeare, so part of any gain is "
                "adaptation to the domain: the `dense` rows train the unpruned model with the same recipe, the "
                "fair reference."] if tail else []
    else:
        best = max(runs, key=lambda r: r["gap_closed"] or 0)
        tail = [f"No goal recorded. Reduced run: {steps} recovery steps (the script's default: 150), so the gaps "
                f"closed are likely lower bounds; best: {best['pruning']} with {best['train']}, "
                f"{best['gap_closed']:.0%}."]
    return out + ["", " ".join(tail) + (" Note: " + " ".join(notes) + "." if notes else ""), ""]


def llm_bitmask() -> list[str]:
    doc = _load("llm_bitmask.json")
    if not doc:
        return []
    g, rows = doc["goals"], doc["results"]
    models = list(doc.get("projected_size_ratio", {}))
    out = ["### Compressed sparse checkpoints (`python benchmarks/llm_bitmask.py`)", "",
           f"{doc['model']}, {doc['method']}, saved by `llm.save_pruned` dense and `format=\"bitmask\"` (2:4 in its "
           "own layout). Size: bytes of the weight files, whole checkpoint and the pruned tensors alone (the tied "
           "embedding stays dense); projected: the whole-checkpoint ratio for "
           + (", ".join(models) or "larger models") + "'s shapes. Load: " + doc["load_protocol"]
           + f", {doc['repeats']} repeats, medians; fresh process: one load each with imports. Bit-exact: every "
           "tensor and the logits equal after reloading. " + _machine(doc), "",
           "| dtype | pattern | size ratio (pruned tensors) | " + " | ".join(f"projected {m}" for m in models)
           + " | bit-exact | load dense → bitmask | load ratio | fresh process | save dense → bitmask |",
           "|---|---|---|" + "---|" * len(models) + "---|---|---|---|---|"]
    for r in rows:
        target = f"{r['sparsity']:.0%}" if r["pattern"] == "unstructured" else r["pattern"]
        ld, fr, sv = r["load_seconds"], r["fresh_process_load_seconds"], r["save_seconds"]
        proj = [f"{doc['projected_size_ratio'][m].get(r['config'], float('nan')):.2f}" for m in models]
        out.append(f"| {r['dtype']} | {target} | {r['size_ratio']:.3f} ({r['pruned_tensors_ratio']:.3f}) | "
                   + "".join(f"{p} | " for p in proj)
                   + f"{'yes' if r['bit_exact_tensors'] and r['same_logits'] else '**no**'} | "
                   f"{ld['dense']['median']:.2f} → {ld['bitmask']['median']:.2f} s | {r['load_ratio_median']:.1f}x | "
                   f"{fr['dense']:.1f} → {fr['bitmask']:.1f} s | {sv['dense']:.1f} → {sv['bitmask']:.1f} s |")
    verdicts = []
    for s in (0.5, 0.7):
        key = f"size_ratio_at_{s}"
        got = [r["size_ratio"] for r in rows if r["sparsity"] == s]
        if key in g and got:
            part = max(r["pruned_tensors_ratio"] for r in rows if r["sparsity"] == s)
            verdicts.append(f"size ≤ {g[key]}x at {s:.0%}: {_met(max(got) <= g[key])} for this checkpoint "
                            f"({max(got):.3f}x; the pruned tensors alone {part:.3f}x)")
    if "load_ratio" in g:
        worst = max(r["load_ratio_median"] for r in rows)
        verdicts.append(f"load within {g['load_ratio']}x of dense: {_met(worst <= g['load_ratio'])} "
                        f"(up to {worst:.1f}x; the dense load memory-maps, the bitmask load decompresses)")
    exact = all(r["bit_exact_tensors"] and r["same_logits"] for r in rows)
    return out + ["", "Goals: " + "; ".join(verdicts) + f"; bit-exact: {_met(exact)}.", ""]


def oracle() -> list[str]:
    out = []
    for name in ("oracle.json", "oracle_convnet_fashion-mnist-10k.json"):
        doc = _load(name)
        if doc:
            out += _oracle(doc)
    return out


def _oracle(doc: dict) -> list[str]:
    st = doc["study"]
    p, d = st["protocol"], st["dense"]
    budgets = list(doc.get("budgets", {}))
    sps = p["sparsities"]
    out = [f"### Is oracle pruning the oracle? {p['model']} on {p['dataset']} "
           f"(`{doc.get('command', 'python benchmarks/oracle.py')}`)", "",
           f"{p['paper']} on {p['model']} / {p['dataset']} (dense test accuracy {d['test_accuracy']:.3f}). Oracle: "
           f"{p['oracle']}, over {p['oracle_examples']} training examples ({st['oracle_summary']['units']} units). "
           "Each criterion's scores against it (pooled over groups; correlations by scipy's Spearman and "
           f"Kendall τ-b); then models pruned at {', '.join(f'{s:.0%}' for s in sps)} by the oracle, each "
           f"criterion ({p['criterion_allocation']} widths) and {p['n_random']} random structures, fine-tuned for "
           f"each budget ({p['finetune']['optimizer']}, lr {p['finetune']['lr']}, cosine), duplicates dropped. "
           + _machine(doc), "",
           "| criterion | Spearman vs oracle | Kendall vs oracle |", "|---|---|---|"]
    for c in sorted(st["criteria"], key=lambda c: -(c["pooled"]["kendall"] if c["pooled"]["n"] else -2)):
        pc = c["pooled"]
        out.append(f"| {c['criterion']} | " + (f"{pc['spearman']:+.2f} | {pc['kendall']:+.2f} |" if pc["n"] else
                                               f"n/a: skipped in {len(c['skipped'])} groups (no BatchNorm) | |"))
    k = lambda c: f"{c['kendall']:+.2f}" if c["kendall"] == c["kendall"] else "n/a"  # noqa: E731  NaN: constant
    out += ["", "Does the loss right after pruning predict accuracy after fine-tuning? Kendall τ over the pruned "
            "models, pooled and per sparsity (all models / criteria only):", "",
            "| fine-tuning epochs | models | pruned loss | oracle-predicted loss | pruned accuracy | "
            + " | ".join(f"pruned loss at {s:.0%}" for s in sps) + " |", "|---|---|---|---|---|" + "---|" * len(sps)]
    for b in budgets:
        c = doc["budgets"][b]["correlations"]
        pool = c["pooled"]
        per = [f"{k(c['per_sparsity'][str(s)]['pruned_train_loss_vs_finetuned_accuracy'])} / "
               f"{k(c['per_sparsity_criteria_only'][str(s)]['pruned_train_loss_vs_finetuned_accuracy'])}" for s in sps]
        out.append(f"| {b} | {pool['n_models']} | {k(pool['pruned_train_loss_vs_finetuned_accuracy'])} | "
                   f"{k(pool['oracle_predicted_loss_vs_finetuned_accuracy'])} | "
                   f"{k(pool['pruned_accuracy_vs_finetuned_accuracy'])} | " + " | ".join(per) + " |")
    first, last = budgets[0], budgets[-1]
    tau = lambda b, x="pruned_train": doc["budgets"][b]["correlations"]["pooled"][f"{x}_loss_vs_finetuned_accuracy"]  # noqa: E731,E501
    return out + ["", f"No goal recorded. Budgets {', '.join(budgets)} epochs (the script's default is 1, 5, 20). "
                  f"Pooled Kendall τ between the loss right after pruning and the accuracy after fine-tuning: "
                  f"{k(tau(first))} after {first} epoch(s), {k(tau(last))} after {last} (the oracle's additive "
                  f"prediction: {k(tau(first, 'oracle_predicted'))} → {k(tau(last, 'oracle_predicted'))}). A τ near "
                  "−1 means the loss right after pruning ranks the fine-tuned models well (the oracle's premise); the "
                  "paper (Feng et al. 2024) reports little or no correlation after fine-tuning on modern networks.",
                  ""]


def sweep_overhead() -> list[str]:
    doc = _load("sweep_overhead.json")
    if not doc:
        return []
    cfgs = doc["configs"]
    c0 = next(iter(cfgs.values()))
    grid = " × ".join("/".join(map(str, v)) for v in c0["grid"].values())
    out = ["### Sweep overhead: Ray against a plain loop (`python benchmarks/sweep_overhead.py`)", "",
           f"The same {c0['cells']}-cell sweep (lenet300 on digits, {grid}, {c0['seeds']} seeds) on the embedded "
           f"local Ray (`num_cpus={c0['num_cpus']}`; its time includes `ray.init`, shown separately, and starting "
           "the workers) and on a plain loop, each in a fresh interpreter and runs directory. Load average at the "
           f"start {doc['machine'].get('loadavg_1_5_15', ['?'])[0]:.1f} on {doc['machine'].get('os_cpu_count', '?')} "
           "cores. " + _machine(doc), "",
           "| config | loop | Ray (of it `ray.init`) | Ray / loop | without init | same results | goal |",
           "|---|---|---|---|---|---|---|"]
    for name, c in cfgs.items():
        out.append(f"| {name} | {c['loop_seconds']:.1f} s | {c['ray_seconds']:.1f} s ({c['ray_init_seconds']:.1f} s) "
                   f"| {c['ratio']:.2f} | {c['ratio_without_init']:.2f} | {'yes' if c['same_results'] else '**no**'} "
                   f"| ≤ {c['goal_ratio']} |")
    ok = all(c["meets_goal"] for c in cfgs.values())
    return out + ["", f"Goal (Ray ≤ {c0['goal_ratio']}x the loop's wall time on 2 cores): {_met(ok)} in "
                  f"{sum(c['meets_goal'] for c in cfgs.values())}/{len(cfgs)} configs.", ""]


def rethinking() -> list[str]:
    doc = _load("rethinking.json")
    if not doc:
        return []
    out = [f"### Rethinking: fine-tuning vs training the pruned architecture from scratch (`{doc['command']}`)", "",
           "Liu et al. 2019 (\"Rethinking the Value of Network Pruning\"): one recipe swept by the harness "
           f"(`secateurs sweep benchmarks/recipes/rethinking.yaml --grid sparsity=... "
           + "".join(f"--grid {k}={','.join(map(str, v))} " for k, v in doc["grid"].items() if k != "sparsity")
           + f"--seeds {doc['seeds']} "
           + " ".join(f"--control {c}" for c in doc["controls"]) + f"`). {doc['protocol']}. " + _machine(doc), "",
           "| channels removed | arm | parameters | MACs | accuracy right after pruning | final accuracy | training "
           "epochs |", "|---|---|---|---|---|---|---|"]
    for r in doc["summary"]:
        a, pa = r["accuracy"], r["pruned_accuracy"]
        right = "–" if r["arm"] in ("scratch", "dense") else f"{pa['mean']:.4f}"  # scratch re-initialises it
        out.append(f"| {r['sparsity']:.0%} | {r['arm']} | {r['params']:,} | {r['macs']:,} | {right} | "
                   f"{a['mean']:.4f} ± {a['sd']:.4f} | {r['train_epochs']} |")
    v = doc["verdicts"]
    held = [x for x in v if x["scratch_at_least_as_good"]]
    out += ["", "Scratch − fine-tuned accuracy (± standard error): " + "; ".join(
        f"{x['sparsity']:.0%} vs {x['method']}: {x['scratch_minus_finetuned']:+.4f} ± {x['se']:.4f}" for x in v)
        + f". The paper's claim (training the pruned architecture from scratch for the dense model's epochs, "
        f"Scratch-E, is at least as good as fine-tuning, within 2 standard errors) holds in {len(held)} of {len(v)} "
        f"comparisons here.{_random_vs_method(doc['summary'])}", ""]
    return out


def _random_vs_method(summary: list[dict]) -> str:
    """Random channels fine-tuned alike against the criterion's, per sparsity and budget (within 2 SE?)."""
    by = {(r["sparsity"], r["arm"]): r["accuracy"] for r in summary}
    pairs = []
    for (sp, arm), a in by.items():
        if arm.startswith("random_mask"):
            m = next((v for (s2, a2), v in by.items() if s2 == sp and a2 != arm and a2.endswith(arm.split(",", 1)[1])
                      and not a2.startswith(("random_mask", "scratch", "dense"))), None)
            if m is not None:
                se = (a["sd"] ** 2 / a["n"] + m["sd"] ** 2 / m["n"]) ** 0.5
                pairs.append(abs(a["mean"] - m["mean"]) <= 2 * se)
    if not pairs:
        return ""
    return (f" Random channels fine-tuned alike (random_mask) are within 2 standard errors of the criterion's "
            f"choice in {sum(pairs)} of {len(pairs)} cells (\"The Unreasonable Effectiveness of Random Pruning\").")


def deltas() -> list[str]:
    doc = _load("deltas.json")
    if not doc:
        return []
    ft, ev, rows = doc["finetune"], doc["eval"], doc["results"]
    ref = {r["variant"]: r["perplexity"] for r in rows if r.get("sparsity") is None and "perplexity" in r}
    sps = sorted({r["sparsity"] for r in rows if r.get("sparsity") is not None})
    out = ["### Delta pruning of a fine-tune (`python benchmarks/deltas.py`)", "",
           f"Base {doc['base']}; fine-tuned {ft['steps']} {ft['optimizer']} steps (batch {ft['batch']} × "
           f"{ft['seqlen']} tokens, lr {ft['lr']}) on {', '.join(ft['plays'])}; the delta pruned by "
           f"`secateurs.deltas.prune` and, where installed, by mergekit's DARE. Perplexity on {ev['windows']} windows of "
           f"{ev['seqlen']} tokens of the {ev['text']}: base {ref.get('base', float('nan')):.2f}, fine-tuned "
           f"{ref.get('finetuned', float('nan')):.2f}. " + _machine(doc), "",
           "| variant | " + " | ".join(f"p = {s}" for s in sps) + " |", "|---|" + "---|" * len(sps)]
    for v in dict.fromkeys(r["variant"] for r in rows if r.get("sparsity") is not None):
        by = {r["sparsity"]: r for r in rows if r["variant"] == v and r.get("sparsity") is not None}
        out.append(f"| {v} | " + " | ".join(f"{by[s]['perplexity']:.2f}" if s in by else "" for s in sps) + " |")
    notes = [r["note"] for r in rows if "perplexity" not in r and r.get("note")]
    m = doc.get("memory") or {}
    tail = [f"Not measured: {' '.join(n.rstrip('.') + '.' for n in notes)}"] if notes else []
    if m:
        anon = (f"; allocated (anonymous) memory {m['peak_anon_minus_before_bytes'] / 2**20:.0f} MiB above its start"
                if "peak_anon_minus_before_bytes" in m else "")
        tail.append(f"Peak memory of `deltas.prune` (dare, 0.9) in a fresh process: resident "
                    f"{m['peak_minus_before_bytes'] / 2**20:.0f} MiB above its start (this counts the memory-mapped "
                    f"pages of both checkpoints as they are read){anon}; checkpoint "
                    f"{m['checkpoint_bytes'] / 2**20:.0f} MiB, largest tensor {m['largest_tensor_bytes'] / 2**20:.0f} MiB.")
    if len(sps) < 3 or ft["steps"] < 30:
        tail.append("Reduced run (the script's default is 30 steps at p = 0.5, 0.9, 0.99).")
    if doc.get("partial"):
        tail.append(f"Partial: {doc.get('note', 'the run did not finish')}; empty cells, the mergekit comparison "
                    f"and the peak memory were not measured.")
    return out + (["", " ".join(tail)] if tail else []) + [""]


def llm_structured() -> list[str]:
    out = []
    for name in ("llm_structured.json", "llm_structured_gemma3-270m.json"):
        doc = _load(name)
        if doc:
            out += _llm_structured(doc)
    return out + llm_structured_reference()


def _llm_structured(doc: dict) -> list[str]:
    pr, d = doc["protocol"], doc["dense"]
    model = doc["model"].split(" ")[0]
    flag = "" if model == "smollm2-135m" else f" --model {model}"
    decode = "decode" in pr
    out = [f"### Structured pruning of {model} (`python benchmarks/llm_structured.py{flag}`)", "",
           f"{doc['model']}: FLAP, width pruning (uniform widths; `width_mlp`: MLP neurons only) and ShortGPT layer "
           f"removal; calibration {pr['calibration']}; perplexity on the {pr['heldout']}; latency: {pr['latency']}"
           + (f"; decode: {pr['decode']}" if decode else "") + f"; recovery: {pr['recovery']} (see the recovery "
           f"table). Dense: {d['params'] / 1e6:.1f}M parameters, perplexity {d['perplexity']:.2f}. "
           + _machine(doc), "",
           "| method | target | parameters | reduction | perplexity | prefill speed-up | goal ≥ 0.9 × 1/(1−r) |"
           + (" decode tokens/s (dense) | decode speed-up |" if decode else ""),
           "|---|---|---|---|---|---|---|" + ("---|---|" if decode else "")]
    for r in doc["runs"]:
        if "error" in r:
            out.append(f"| {r['method']} | {r['target_sparsity']:.0%} | – | – | {r['error'][:90]} | | |"
                       + (" | |" if decode else ""))
            continue
        need = 0.9 / (1 - r["params_reduction"])
        goal = ("met" if r["speedup"] >= need else "not met") if r["method"].startswith("width") else ""
        out.append(f"| {r['method']} | {r['target_sparsity']:.0%} | {r['params'] / 1e6:.1f}M | "
                   f"{r['params_reduction']:.1%} | {r['perplexity']:.2f} | {r['speedup']:.2f}x | "
                   f"{goal + (f' ({need:.2f}x)' if goal else '')} |"
                   + (f" {r['decode_tokens_per_s']:.1f} ({r['dense_decode_tokens_per_s']:.1f}) | "
                      f"{r['decode_speedup']:.2f}x |" if decode else ""))
    return out + ["", "The latency goal (issue 17: speed-up ≥ 0.9× the parameter reduction, read as ≥ 0.9 × "
                  "dense/pruned parameters) is checked for width pruning, whose uniform widths are the deployment "
                  "case; it is a CPU measurement on a shared 2-core machine, timed interleaved.", ""]


def llm_structured_reference() -> list[str]:
    doc = _load("llm_structured_reference.json")
    if not doc:
        return []
    pr, d = doc["protocol"], doc["dense"]
    refs = ", ".join(f"{k}@{v[:7]}" for k, v in doc["references"].items())
    out = ["### FLAP and ShortGPT against their authors' code (`python benchmarks/llm_structured_reference.py`)", "",
           f"{doc['model']}; calibration {pr['calibration']}; perplexity on the {pr['heldout']}; FLAP: {pr['flap']} "
           f"(dense perplexity {d['perplexity']:.3f}, multi-head image {d['perplexity_multi_head']:.3f}, max logit "
           f"difference {d['multi_head_max_abs_logit_difference']:.1e}); ShortGPT: {pr['shortgpt']}. References "
           f"{refs}, run by the benchmark's glue (the module docstring lists every adaptation). " + _machine(doc), "",
           "| method | target | parameters secateurs / reference | perplexity secateurs / reference | same "
           "structure | time secateurs / reference |", "|---|---|---|---|---|---|"]
    for r in doc["runs"]:
        same = r.get("same_widths", r.get("same_layers"))
        extra = (f" (layers {r['removed_secateurs']})" if "removed_secateurs" in r else "")
        if "widths_secateurs" in r and not same:
            a, b = r["widths_secateurs"], r["widths_reference"]
            extra = (f" ({sum(x[0] != y[0] for x, y in zip(a, b))} layers' heads, "
                     f"{sum(abs(x[1] - y[1]) for x, y in zip(a, b))} of {sum(y[1] for y in b)} kept neurons differ)")
        out.append(f"| {r['method']} | {r['sparsity']:.0%} | {r['params_secateurs'] / 1e6:.2f}M / "
                   f"{r['params_reference'] / 1e6:.2f}M | {r['perplexity_secateurs']:.2f} / "
                   f"{r['perplexity_reference']:.2f} ({r['perplexity_rel_diff']:+.1%}) | "
                   f"{'yes' if same else 'no'}{extra} | {r['seconds_secateurs']:.0f} / {r['seconds_reference']:.0f} s "
                   f"({r['time_ratio']:.2f}x) |")
    flap = [r for r in doc["runs"] if r["method"] == "flap"]
    if flap:
        within = sum(abs(r["perplexity_rel_diff"]) <= 0.01 for r in flap)
        out += ["", f"Goal (FLAP perplexity within 1% of the reference's at equal parameters): {within} of "
                f"{len(flap)} targets. The remaining differences: the reference rounds the compensation means to "
                "fp16 (its GPU dtype) and accumulates in a different order, which moves a few units at the "
                "threshold; secateurs keeps "
                "float32 means (the default `fluctuation=\"reference\"` is the reference's streamed estimate, the update "
                "of its `BiasGPT` (tests/test_llm_structured.py checks it against that update written out)). The kept heads are the same in every layer; parameter counts differ by "
                "the zero q/k/v and gate/up biases that Llama's `attention_bias` / `mlp_bias` flags add to hold the "
                "o_proj / down_proj compensation in a stock config, less the few neurons that differ. "
                "Timings are sequential on a shared machine (each implementation runs one block forward per "
                "calibration row and layer)."]
    return out + [""]


def fashion_mnist() -> list[str]:
    doc = _load("fashion_mnist.json")
    if not doc:
        return []
    parts, b = doc.get("parts", {}), doc.get("budget", {})
    sub = doc.get("subset", {})
    out = ["### Fashion-MNIST: weights, sparse training, structured and data pruning (`python benchmarks/fashion_mnist.py`)",
           "", f"28x28 Fashion-MNIST; dense models trained on the 60,000 training images, everything after that on a "
           f"fixed {sub.get('size', 10000):,}-example subset of them (`{sub.get('name', '?')}`), every accuracy on the "
           f"full 10,000-image test split. One thread; budget {b.get('limit_seconds', 3600) / 60:.0f} min for the "
           f"whole script from a cold cache: measured {b.get('total_cpu_seconds', 0) / 60:.1f} min CPU time "
           f"({b.get('total_wall_seconds', 0) / 60:.1f} min wall on a shared machine). " + _machine(doc), "",
           "| model | parameters | MACs | test accuracy | training (CPU s) | used |", "|---|---|---|---|---|---|"]
    for name, m in doc.get("models", {}).items():
        used = "yes" if m.get("used") else f"no: {m.get('skipped_reason')}"
        cpu = m.get("train_cpu_seconds")
        out.append(f"| {name} | {m['params'] / 1e3:.1f}k | {m['macs'] / 1e6:.2f}M | {m['accuracy']:.4f} | "
                   f"{'' if cpu is None else f'{cpu:.0f}'} | {used} |")
    out.append("")
    w = parts.get("weights")
    if w and w["rows"]:
        st = w.get("settings", {})
        out += [f"**Weight pruning** (`secateurs.prune`): accuracy right after pruning → after fine-tuning "
                f"({st.get('finetune', '?')}), seed 0.", ""]
        for model in dict.fromkeys(r["model"] for r in w["rows"]):
            rows = [r for r in w["rows"] if r["model"] == model]
            sps = sorted({r["sparsity"] for r in rows})
            out += [f"{model}:", "", "| criterion | allocation | " + " | ".join(f"{s:.0%}" for s in sps) + " |",
                    "|---|---|" + "---|" * len(sps)]
            for c, a in dict.fromkeys((r["criterion"], r["allocation"]) for r in rows):
                cells = []
                for s in sps:
                    r = next((r for r in rows if (r["criterion"], r["allocation"], r["sparsity"]) == (c, a, s)), None)
                    cells.append(f"{r['accuracy_pruned']:.3f} → {r['accuracy_finetuned']:.3f}" if r else "")
                out.append(f"| {c} | {a} | " + " | ".join(cells) + " |")
            out.append("")
        high = [r for r in w["rows"] if r["sparsity"] >= 0.7]
        chance = sum(r["accuracy_pruned"] <= 0.11 for r in high)
        out += [f"{chance} of {len(high)} models pruned to >= 70% are at chance (<= 11%) right after pruning, before "
                "fine-tuning, so the fine-tuned accuracy is the one that ranks the criteria.", ""]
    t = parts.get("sparse_training")
    if t and t["rows"]:
        st = t.get("settings", {})
        out += [f"**Sparse training** of the convnet from scratch on the subset to {st.get('target_sparsity', 0.9):.0%} "
                f"sparsity, {st.get('epochs', '?')} epochs ({st.get('steps', '?')} steps) for every method; IMP "
                f"trains once per round ({st.get('imp', {}).get('rounds', '?')} rounds of "
                f"{st.get('imp', {}).get('prune_rate', 0):.1%}, late rewinding), so its budget is larger.", "",
                "| method | accuracy | sparsity | training epochs |", "|---|---|---|---|"]
        for r in t["rows"]:
            out.append(f"| {r['method']} | {r['accuracy']:.4f} | {r['sparsity']:.3f} | {r['train_epochs']} |")
        out.append("")
    s_ = parts.get("structured")
    if s_ and s_["rows"]:
        st = s_.get("settings", {})
        lat = st.get("latency", {})
        out += [f"**Structured pruning** (`secateurs.structured.prune`, uniform; torch-pruning "
                f"{st.get('torch_pruning') or 'not installed'}): MAC reduction, CPU speed-up (batch "
                f"{lat.get('batch', '?')}, thread CPU time, median of {lat.get('rounds', '?')} interleaved rounds), "
                "accuracy right after pruning → after fine-tuning." + (f" {st['peer_note']}" if st.get("peer_note")
                                                                      else ""), "",
                "| model | ratio | run | parameters | MAC reduction | speed-up | accuracy |", "|---|---|---|---|---|---|---|"]
        for r in s_["rows"]:
            if not r.get("ok"):
                out.append(f"| {r['model']} | {r['ratio']:.0%} | {r['run']} | failed: {r.get('error', '?')[:80]} | | | |")
                continue
            out.append(f"| {r['model']} | {r['ratio']:.0%} | {r['run']} | {r['params'] / 1e3:.1f}k | "
                       f"{r['mac_reduction']:.2f}x | {r['speedup']:.2f}x | {r['accuracy_pruned']:.3f} → "
                       f"{r['accuracy_finetuned']:.3f} |")
        out.append("")
    d = parts.get("data_pruning")
    if d and d.get("summary"):
        st, sm = d.get("settings", {}), d["summary"]
        rates = st.get("rates", [])
        full = next((r for r in sm if r["strategy"] == "full"), None)

        def cell(scorer: str, strategy: str, rate: float) -> str:
            r = next((r for r in sm if (r["scorer"], r["strategy"]) == (scorer, strategy) and abs(r["rate"] - rate) < 1e-9), None)
            return "" if r is None else f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f}"

        out += [f"**Data pruning**: the convnet trained from scratch on the kept part of the {st.get('n_train', 0):,} "
                f"subset examples for the optimizer steps of {st.get('epochs', '?')} epochs on all of them; test "
                f"accuracy in %, mean ± std over seeds {st.get('seeds')}"
                + (f"; full data {100 * full['mean']:.1f} ± {100 * full['std']:.1f}" if full else "") + ".", "",
                "| selection | " + " | ".join(f"{r:.0%} pruned" for r in rates) + " |", "|---|" + "---|" * len(rates),
                "| random | " + " | ".join(cell("-", "random", r) for r in rates) + " |"]
        for scorer in st.get("scorers", []):
            for strategy in ("hard", "ccs"):
                out.append(f"| {scorer} {strategy} | " + " | ".join(cell(scorer, strategy, r) for r in rates) + " |")
        beats = d.get("claim", {}).get("ccs_beats_random", [])
        if beats:
            out += ["", "CCS vs random (Zheng et al. 2023 claim CCS beats random at high rates), difference in points "
                    "± standard error: " + "; ".join(
                        f"{c['scorer']} {c['rate']:.0%}: {c['ccs_minus_random_pp']:+.1f} ± {c['se_pp']:.1f}"
                        + (" (beats)" if c["beats"] else "") for c in beats) + "."]
            high = [c for c in beats if c["rate"] >= 0.8]
            won = sorted({f"{c['scorer']} {c['rate']:.0%}" for c in high if c["beats"]})
            out.append(f"At 80-90% pruned CCS beats random by more than 2 standard errors in {len(won)} of {len(high)} "
                       "cases" + (f" ({', '.join(won)})" if won else ": the claim does not reproduce here") + ".")
            rnd = next((r for r in sm if r["strategy"] == "random" and abs(r["rate"] - max(rates)) < 1e-9), None)
            if full and rnd:
                out[-1] += (f" Random {max(rates):.0%} pruning costs only {100 * (full['mean'] - rnd['mean']):.1f} points "
                            "against the full data at this fixed, short step budget, which leaves a selection little to win.")
        out.append("")
    return out


def main() -> None:
    body = "\n".join([START, "", *mask_speed(), *quality(), *engine_combos(), *structured(), *structured_llm(),
                      *llm_pretrained(), *llm(), *llm_alps(), *llm_ria_dsnot(), *llm_stream(), *llm_structured(), *llm_recover(),
                      *llm_bitmask(), *deltas(), *sparse_training(), *sparse_overhead(), *dst_reference(),
                      *lottery(), *oracle(), *rethinking(), *sweep_overhead(),
                      *data_pruning(), *infobatch(), *data_scale(), *fashion_mnist(), END])
    readme = ROOT / "README.md"
    text = readme.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    readme.write_text(head + body + tail)


if __name__ == "__main__":
    main()
