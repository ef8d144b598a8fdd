"""secateurs' ALPS against the authors' ALPS, side by side, with secateurs' SparseGPT as the baseline →
``benchmarks/results/llm_alps.json``.

ALPS: Meng, Behdin, Wang & Mazumder, NeurIPS 2024.  The reference is mazumder-lab/ALPS (``alps.py``
``ALPS_prune``, driven by its own ``llama.py llama_sequential``), cloned into the git-ignored ``.refs/ALPS`` and
imported from there at run time, never copied::

    git clone https://github.com/mazumder-lab/ALPS .refs/ALPS

Everything runs on the Shakespeare Llama (:func:`secateurs.zoo.shakespeare.shakespeare_llama`) with the same
calibration rows (64 × 256 tokens, drawn once, as ``llm_reference.py``) and is evaluated on the same held-out
windows with the same perplexity function, at 70% and 80% unstructured and 2:4.

Only calling glue is adapted, in this file:

* the reference hard-codes ``'cuda:0'`` in ``alps.py``: on this CPU-only machine its source is read at import
  time with the string ``'cuda:0'`` replaced by ``'cpu'`` and executed as the module ``alps`` that its
  ``llama.py`` imports (nothing else in it is changed); ``torch.cuda.synchronize`` is made a no-op;
* its ``llama.py`` imports ``pandas`` (for writing CSVs in ``__main__``, not used here): a stub module satisfies
  the import; its ``args`` global is set as its argument parser would (``method='ALPS'``, ``sp``, ``nm_n``,
  ``nm_m`` = N and M of N:M, ``nsamples``); its ``llama_sequential`` calls ``ALPS_admm`` with ``rho=0.1``;
* transformers-5 decoder layers get rotary ``position_embeddings`` from a thin wrapper and return a tensor
  (the same wrapper as ``llm_reference.py``, removed again after pruning).

Each (implementation, pattern) runs in its own subprocess, all with the same torch thread count: ``--threads 1``
by default, because on the shared 2-core machine this was written on two threads made every implementation's
pruning 5-30x slower (OpenMP regions waiting for a busy core: secateurs' ALPS took 84 s instead of 6 s at 70%,
the reference 363 s instead of 41 s; ``--threads 0`` keeps torch's default).  Run:
``.venv/bin/python benchmarks/llm_alps.py`` (``--patterns 0.7,2:4`` for a subset; about 5 min at one thread).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import types
from argparse import Namespace
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from llm_common import REFERENCE_MODELS, model_path, reset_peak, run_worker, shakespeare_setup, vm_bytes  # noqa: E402
from llm_reference import _compare, _unwrap_layers, _wrap_layers  # noqa: E402  (the same calling glue)

REFS = HERE.parent / ".refs"
RESULTS = HERE / "results" / "llm_alps.json"
PATTERNS = ["0.7", "0.8", "2:4"]
IMPLS = ["secateurs", "reference", "sparsegpt"]


def _pattern(spec: str) -> tuple[str, float | None]:
    """``"0.7"`` → unstructured at 70%; ``"2:4"`` → N:M."""
    return (spec, None) if ":" in spec else ("unstructured", float(spec))


# ------------------------------------------------------------------------------------------------ calling glue
def _load_reference():
    """mazumder-lab/ALPS's ``llama`` module, with its ``alps`` module's ``'cuda:0'`` replaced by ``'cpu'``."""
    root = REFS / "ALPS"
    sys.path.insert(0, str(root))
    torch.cuda.synchronize = lambda *a, **k: None  # CPU-only machine
    sys.modules.setdefault("pandas", types.ModuleType("pandas"))  # only its __main__ writes CSVs
    path = root / "alps.py"
    mod = types.ModuleType("alps")
    mod.__file__ = str(path)
    exec(compile(path.read_text().replace("cuda:0", "cpu"), str(path), "exec"), mod.__dict__)
    sys.modules["alps"] = mod
    import llama as alps_llama  # mazumder-lab/ALPS llama.py (does `from alps import *`)

    return alps_llama


def run_reference(model, rows: torch.Tensor, pattern: str, sparsity: float | None) -> None:
    alps_llama = _load_reference()
    n, m = (0, 0) if pattern == "unstructured" else map(int, pattern.split(":"))
    model.seqlen = rows.shape[1]
    sp = sparsity if sparsity is not None else 1 - n / m
    alps_llama.args = Namespace(nsamples=rows.shape[0], method="ALPS", sp=sp, nm_n=n, nm_m=m, rho=0.1)
    _wrap_layers(model)
    try:
        alps_llama.llama_sequential(model, [(r[None], r[None]) for r in rows], torch.device("cpu"),
                                    nsamples=rows.shape[0])
    finally:
        _unwrap_layers(model)


# ---------------------------------------------------------------------------------------------------- worker
def worker(args) -> None:
    from safetensors.torch import save_file

    from secateurs.core.blocks import find_blocks, find_linears
    from secateurs.llm import perplexity, prune

    model, _, rows, held, _ = shakespeare_setup(model_path(args.model), "causal", args.nsamples, args.seqlen)
    eval_ids = held[: args.eval_windows * args.seqlen]
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    doc = {"impl": args.impl, "pattern": args.pattern, "threads": torch.get_num_threads()}
    if args.impl == "dense":
        doc["perplexity"] = perplexity(model, eval_ids, seqlen=args.seqlen, batch_size=8)
        Path(args.result).write_text(json.dumps(doc))
        return
    pattern, sparsity = _pattern(args.pattern)
    reset_peak()
    rss0 = vm_bytes("VmRSS")
    t0, c0 = time.perf_counter(), time.process_time()
    if args.impl in ("secateurs", "sparsegpt"):
        method = "alps" if args.impl == "secateurs" else "sparsegpt"
        report = prune(model, rows, method=method, sparsity=sparsity, pattern=pattern, progress=False)
        doc["block_seconds"] = report.block_seconds
    else:
        run_reference(model, rows, pattern, sparsity)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = vm_bytes("VmHWM")
    weights = {f"{i}.{n}": l.weight.detach().clone().contiguous()
               for i, b in enumerate(find_blocks(model)[1]) for n, l in find_linears(b).items()}
    save_file(weights, args.weights)
    doc.update({"prune_seconds": wall, "prune_cpu_seconds": cpu, "peak_above_model_bytes": peak - rss0,
                "sparsity": sum(int((w == 0).sum()) for w in weights.values())
                / sum(w.numel() for w in weights.values()),
                "perplexity": perplexity(model, eval_ids, seqlen=args.seqlen, batch_size=8)})
    Path(args.result).write_text(json.dumps(doc))


# ---------------------------------------------------------------------------------------------------- parent
def _spawn(impl: str, pattern: str, args, tmp: Path) -> dict:
    tag = f"{impl}-{pattern.replace(':', '-')}"
    result, weights = tmp / f"{tag}.json", tmp / f"{tag}.st"
    cmd = [sys.executable, __file__, "--worker", "--impl", impl, "--pattern", pattern, "--result", str(result),
           "--weights", str(weights), "--nsamples", str(args.nsamples), "--seqlen", str(args.seqlen),
           "--eval-windows", str(args.eval_windows), "--threads", str(args.threads), "--model", args.model]
    return run_worker(cmd, result, weights, f"{impl} {pattern}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--impl", choices=IMPLS + ["dense"])
    ap.add_argument("--pattern", default="0.7")
    ap.add_argument("--patterns", default=",".join(PATTERNS), help="comma-separated: sparsities and/or N:M")
    ap.add_argument("--impls", default=",".join(IMPLS), help="comma-separated subset of " + ",".join(IMPLS))
    ap.add_argument("--result")
    ap.add_argument("--weights")
    ap.add_argument("--nsamples", type=int, default=64)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--eval-windows", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch threads in every worker (0: torch's default)")
    ap.add_argument("--model", choices=REFERENCE_MODELS, default="shakespeare-llama",
                    help="smollm2-135m: the real pretrained SmolLM2 (llm_alps_smollm2-135m.json)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.out is None:
        args.out = RESULTS if args.model == "shakespeare-llama" else RESULTS.with_name(f"llm_alps_{args.model}.json")
    if args.worker:
        worker(args)
        return
    impls = args.impls.split(",")
    if any(i.startswith("reference") for i in impls) and not (REFS / "ALPS" / "alps.py").exists():
        sys.exit("clone mazumder-lab/ALPS into .refs/ALPS first (see the module docstring)")
    from _machine import machine_info

    from secateurs.llm.output import library_versions
    model_path(args.model)  # build (once) before the workers start, so that they never race to build it
    t_start = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        dense = _spawn("dense", "0.7", args, Path(tmp))
        print(f"dense perplexity {dense['perplexity']:.4f}", file=sys.stderr, flush=True)
        for pattern in args.patterns.split(","):
            got = {impl: _spawn(impl, pattern, args, Path(tmp)) for impl in impls}
            row: dict = {"pattern": pattern, **got}
            ours, ref = got.get("secateurs"), got.get("reference")
            if ours is not None and ref is not None:
                row.update({"perplexity_rel_diff": ours["perplexity"] / ref["perplexity"] - 1,
                            "time_ratio": ours["prune_seconds"] / ref["prune_seconds"],
                            "cpu_time_ratio": ours["prune_cpu_seconds"] / ref["prune_cpu_seconds"],
                            **_compare(ours, ref)})
            if ours is not None and "sparsegpt" in got:
                row["sparsegpt_gap_closed"] = ((got["sparsegpt"]["perplexity"] - ours["perplexity"])
                                               / (got["sparsegpt"]["perplexity"] - dense["perplexity"]))
            for d in got.values():
                d.pop("weights_file")
            runs.append(row)
            print(json.dumps({k: (v if not isinstance(v, dict) else
                                  {kk: v.get(kk) for kk in ("perplexity", "prune_seconds")} if "impl" in v else v)
                              for k, v in row.items()}), file=sys.stderr, flush=True)
    commit = subprocess.run(["git", "-C", str(REFS / "ALPS"), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    doc = {"benchmark": "llm_alps", "model": args.model, "machine": machine_info(), "versions": library_versions(),
           "references": {"mazumder-lab/ALPS": commit},
           "settings": {"nsamples": args.nsamples, "seqlen": args.seqlen, "eval_windows": args.eval_windows,
                        "threads": args.threads or torch.get_num_threads(),
                        "calibration": "shakespeare calibration plays, draw_windows(seed=0)",
                        "evaluation": "first eval_windows x seqlen tokens of the held-out plays",
                        "alps_options": {"rho": 0.1, "max_iter": 300, "update_iter": 3, "switch_iter": 30,
                                         "pcg_iters": 10, "percdamp": 0.01}},
           "dense_perplexity": dense["perplexity"], "runs": runs,
           "command": "python benchmarks/llm_alps.py " + " ".join(sys.argv[1:]),
           "seconds": round(time.perf_counter() - t_start, 1),
           "peak_rss_parent_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
