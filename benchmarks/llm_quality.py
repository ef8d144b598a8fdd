"""Quality of post-training LLM pruning on real trained weights → ``benchmarks/results/llm_quality.json``.

* Shakespeare Llama (``secateurs.zoo.shakespeare.shakespeare_llama()``, trained by secateurs on the calibration
  plays): held-out perplexity (the held-out plays, non-overlapping windows) for dense, magnitude, Wanda,
  SparseGPT and GBLM at 50% / 70% unstructured, 2:4 and 4:8, each with uniform and OWL allocation.
* all-MiniLM-L6-v2 (``minilm_dir()``): embedding fidelity (mean cosine to the dense embeddings, top-10 neighbour
  overlap) on held-out Shakespeare sentences for the same grid.  GBLM needs a language-modelling loss and
  MiniLM ships no LM head, so it is reported as not applicable there.

Every method sees the same calibration rows (a 2-D tensor drawn once with seed 0 from the calibration plays).
OWL uses λ=0.08, M=5 for unstructured targets; for N:M it uses the reference's mixed N:M variant with the
README's λ=2, M=6 (with λ=0.08 every block would round to plain N:M and equal uniform).  The dense outlier
ratios and GBLM's gradients depend only on the dense model and the calibration rows, so they are computed once
and reused (``owl_ratios=``, ``gradients=``), which gives the same models as recomputing them.

Run: ``.venv/bin/python benchmarks/llm_quality.py`` (about 15 min on 2 CPU cores; ``--part llama|minilm``).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info  # noqa: E402
from llm_common import shakespeare_setup  # noqa: E402

from secateurs.llm import embedding_fidelity, perplexity, prune  # noqa: E402
from secateurs.core.blocks import find_blocks, find_linears  # noqa: E402
from secateurs.core.feed import Feed  # noqa: E402
from secateurs.core.targets import resolve_targets  # noqa: E402
from secateurs.criteria.gblm import gradient_norms  # noqa: E402
from secateurs.llm.output import library_versions  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "llm_quality.json"
METHODS = ["magnitude", "wanda", "sparsegpt", "gblm", "ria", "dsnot", "alps"]
ALLOCATIONS = ["uniform", "owl"]
TARGETS = [("unstructured", 0.5), ("unstructured", 0.6), ("unstructured", 0.7), ("unstructured", 0.8),
           ("2:4", None), ("4:8", None)]
OWL = {"unstructured": {"owl_lambda": 0.08, "owl_m": 5.0}, "nm": {"owl_lambda": 2.0, "owl_m": 6.0}}


def _owl_options(pattern: str, ratios: dict[str, list[float]]) -> dict:
    key = "unstructured" if pattern == "unstructured" else "nm"
    opts = dict(OWL[key])
    if key in ratios:
        opts["owl_ratios"] = ratios[key]
    return opts


def _gradients(model, rows) -> dict:
    """GBLM's gradient norms of every block linear, once for the whole grid (the engine's own keys)."""
    path, blocks = find_blocks(model)
    names = {f"{path}.{i}.{n}" for i, blk in enumerate(blocks) for n in find_linears(blk)}
    targets = resolve_targets(model, lambda name, _m: name in names)
    return gradient_norms(model, targets, Feed.token_rows(rows, 1))  # per-row gradients, as prune(batch_size=1)


def grid(model_dense, calib_rows, score, methods, log) -> list[dict]:
    """Prune a fresh copy of the dense model for every cell of the grid and ``score`` it."""
    runs: list[dict] = []
    ratios: dict[str, list[float]] = {}
    grads = _gradients(model_dense, calib_rows) if "gblm" in methods else None
    for method in methods:
        for pattern, sparsity in TARGETS:
            for allocation in ALLOCATIONS:
                model = copy.deepcopy(model_dense)
                opts = _owl_options(pattern, ratios) if allocation == "owl" else {}
                if method == "gblm":
                    opts["gradients"] = grads
                t0 = time.perf_counter()
                report = prune(model, calib_rows, method=method, sparsity=sparsity, pattern=pattern,
                               allocation=allocation, progress=False, **opts)
                seconds = time.perf_counter() - t0
                if allocation == "owl":
                    ratios["unstructured" if pattern == "unstructured" else "nm"] = \
                        report.allocation_options["outlier_ratios"]
                row = {"method": method, "pattern": pattern, "sparsity": report.target_sparsity, "achieved": round(report.sparsity, 6), "allocation": allocation,
                       "overall_sparsity": round(report.overall_sparsity, 6),
                       "block_targets": [round(t, 4) for t in report.block_targets],
                       "owl": dict(report.allocation_options) if allocation == "owl" else None,
                       "prune_seconds": round(seconds, 2), **score(model)}
                runs.append(row)
                log(row)
                del model
    return runs


def llama_part(args, log) -> dict:
    from secateurs.zoo.shakespeare import shakespeare_llama

    path = shakespeare_llama()
    dense, tok, rows, held, calib_tokens = shakespeare_setup(path, "causal", args.nsamples, args.seqlen)
    eval_ids = held[: args.eval_windows * args.seqlen]

    def score(model):
        return {"perplexity": round(perplexity(model, eval_ids, seqlen=args.seqlen, batch_size=8), 4)}

    t0 = time.perf_counter()
    dense_ppl = score(dense)["perplexity"]
    log({"dense_perplexity": dense_ppl, "seconds": round(time.perf_counter() - t0, 1)})
    runs = grid(dense, rows, score, METHODS, log)
    return {"model": str(path), "parameters": sum(p.numel() for p in dense.parameters()),
            "calibration": {"source": "shakespeare calibration plays", "nsamples": args.nsamples,
                            "seqlen": args.seqlen, "seed": 0, "tokens_available": calib_tokens},
            "evaluation": {"source": "shakespeare held-out plays", "windows": int(eval_ids.numel() // args.seqlen),
                           "seqlen": args.seqlen, "tokens": int(eval_ids.numel()),
                           "heldout_tokens_available": int(held.numel())},
            "dense_perplexity": dense_ppl, "runs": runs}


def minilm_part(args, log) -> dict:
    from secateurs.llm.evaluate import heldout_sentences
    from secateurs.zoo.shakespeare import minilm_dir

    path = minilm_dir()
    dense, tok, rows, _, _ = shakespeare_setup(path, "encoder", args.nsamples, args.minilm_seqlen)
    sentences = heldout_sentences(args.sentences, seed=0)

    def score(model):
        fid = embedding_fidelity(model, dense, sentences, tok, k=10)
        return {k: round(v, 5) for k, v in fid.items()}

    runs = grid(dense, rows, score, [m for m in METHODS if m != "gblm"], log)
    runs += [{"method": "gblm", "pattern": p, "sparsity": s, "allocation": a,
              "not_applicable": "GBLM needs gradients of a language-modelling loss; MiniLM has no LM head"}
             for p, s in TARGETS for a in ALLOCATIONS]
    return {"model": str(path), "parameters": sum(p.numel() for p in dense.parameters()),
            "calibration": {"source": "shakespeare calibration plays", "nsamples": args.nsamples,
                            "seqlen": args.minilm_seqlen, "seed": 0},
            "evaluation": {"sentences": len(sentences), "k": 10, "source": "held-out plays"}, "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=["all", "llama", "minilm"], default="all")
    ap.add_argument("--nsamples", type=int, default=64)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--eval-windows", type=int, default=64)
    ap.add_argument("--minilm-seqlen", type=int, default=128)
    ap.add_argument("--sentences", type=int, default=256)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--methods", nargs="+", default=None, help="re-run only these (other rows are kept)")
    ap.add_argument("--allocations", nargs="+", default=None, help="re-run only these (other rows are kept)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: a busy shared machine makes more threads much slower, not faster)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    global METHODS, ALLOCATIONS
    METHODS = args.methods or METHODS
    ALLOCATIONS = args.allocations or ALLOCATIONS
    torch.manual_seed(0)

    def log(row):
        print(json.dumps(row), file=sys.stderr, flush=True)

    doc = json.loads(args.out.read_text()) if args.out.exists() else {}
    t0 = time.perf_counter()
    def merged(key: str, part: dict) -> dict:
        """Rows of methods not re-run now are kept from the previous results."""
        old = [r for r in doc.get(key, {}).get("runs", [])
               if r["method"] not in METHODS or r["allocation"] not in ALLOCATIONS]
        part["runs"] = old + part["runs"]
        return part

    if args.part in ("all", "llama"):
        doc["shakespeare_llama"] = merged("shakespeare_llama", llama_part(args, log))
    if args.part in ("all", "minilm"):
        doc["minilm"] = merged("minilm", minilm_part(args, log))
    doc.update({"benchmark": "llm_quality", "machine": machine_info(), "versions": library_versions(),
                "command": "python benchmarks/llm_quality.py " + " ".join(sys.argv[1:]),
                "seconds_last_run": round(time.perf_counter() - t0, 1),
                "owl_settings": {"unstructured": OWL["unstructured"], "n:m (mixed N:M variant)": OWL["nm"]}})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
