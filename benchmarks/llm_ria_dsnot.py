"""RIA and DSnoT in secateurs against the authors' reference code, side by side
→ ``benchmarks/results/llm_ria_dsnot.json``.

References (cloned into the git-ignored ``.refs/`` and imported from there at run time, never copied)::

    git clone <mirror of biomedical-cybernetics/Relative-importance-and-activation-pruning> .refs/ria
    git clone <mirror of zyxxmu/DSnoT> .refs/dsnot

RIA: ``lib/prune.py prune_ria`` (``--prune_method ria``, ``--a 0.5``, no reallocation, layer-wise ranking);
DSnoT: ``lib/prune.py prune_DSnoT`` (``--initial_method wanda``, main.py's defaults: 50 cycles, threshold 0.1,
variance power 1, ``--skip_layer mlp``).  Both run on the Shakespeare Llama with the same calibration rows as
``llm_reference.py`` (64 × 256 tokens drawn once with seed 0) and are evaluated on the same held-out windows with
the same perplexity function.  For context, Wanda (secateurs) at the same sparsities is DSnoT's starting mask.

Only calling glue is adapted, in this file:

* the references load C4 through ``datasets``; their ``get_loaders`` is replaced by one returning our calibration
  rows (a stub ``datasets`` module satisfies the import, nothing is downloaded);
* transformers 5.x decoder layers take rotary ``position_embeddings`` from the model and return a tensor; the
  references call a layer with ``attention_mask``/``position_ids`` only and index ``[0]``.  Each decoder layer's
  ``forward`` is patched *on the instance* (so the layer keeps its own module names — DSnoT's ``--skip_layer``
  compares ``name.split(".")[0]``) to compute ``position_embeddings`` with the model's rotary module and return a
  1-tuple; removed again after pruning;
* RIA's layer-wise threshold sorts ``W_metric.flatten().cuda()``: ``torch.Tensor.cuda`` is made the identity in
  the reference's worker process (a CPU-only machine); ``args.model = "llama"`` selects its LLaMA code path, and
  ``model.seqlen`` / ``model.hf_device_map`` are set as their ``get_llm`` would;
* everything runs in float32 on the CPU (the references load fp16 on a GPU).

Each (implementation, method, pattern, sparsity) runs in its own subprocess.  Masks are compared entry by entry
over every linear layer of the blocks.  For unstructured DSnoT the starting masks are compared too: our Wanda
against the reference's own (its ``--without_DSnoT``), since its per-row count ``int(cols·s)`` differs from our
exact total whenever ``cols·s`` is not an integer (60% and 70% of 256 and 688 columns).  Pruning times are
recorded but were taken on a shared, busy machine.
Run: ``.venv/bin/python benchmarks/llm_ria_dsnot.py`` (about 40 minutes on 2 busy CPU cores once the Shakespeare
Llama is built; each run reloads the model and evaluates 64 windows).
"""
from __future__ import annotations

import argparse
import json
import os
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
from llm_common import run_worker, shakespeare_setup  # noqa: E402

REFS = HERE.parent / ".refs"
RESULTS = HERE / "results" / "llm_ria_dsnot.json"
# (method, pattern, sparsity) compared with the reference; wanda rows are secateurs only (DSnoT's starting mask)
CONFIGS = [("ria", "unstructured", 0.5), ("ria", "2:4", None),
           ("dsnot", "unstructured", 0.5), ("dsnot", "unstructured", 0.6), ("dsnot", "unstructured", 0.7),
           ("dsnot", "2:4", None)]
CONTEXT = [("wanda", "unstructured", 0.5), ("wanda", "unstructured", 0.6), ("wanda", "unstructured", 0.7),
           ("wanda", "2:4", None)]


# ------------------------------------------------------------------------------------------------ calling glue
def _patch_layers(model) -> None:
    """Glue: each decoder layer computes its rotary embeddings and returns a 1-tuple, as the references expect."""
    rotary = model.model.rotary_emb
    for layer in model.model.layers:
        orig = layer.forward  # the class's bound forward

        def forward(hidden, attention_mask=None, position_ids=None, _orig=orig, **kwargs):
            if position_ids is None:
                position_ids = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
            if kwargs.get("position_embeddings") is None:
                kwargs["position_embeddings"] = rotary(hidden, position_ids)
            out = _orig(hidden, attention_mask=attention_mask, position_ids=position_ids, **kwargs)
            return out if isinstance(out, tuple) else (out,)

        layer.forward = forward


def _unpatch_layers(model) -> None:
    for layer in model.model.layers:
        layer.__dict__.pop("forward", None)


from llm_reference import _nm, _no_download  # noqa: E402  (the same glue as the Wanda/SparseGPT comparison)


def run_reference(model, tokenizer, rows: torch.Tensor, method: str, pattern: str, sparsity: float,
                  without_dsnot: bool = False) -> None:
    """Prune ``model`` in place with the reference implementation of ``method`` ("ria" or "dsnot"; with
    ``without_dsnot`` DSnoT's own ``--without_DSnoT``: only its initial Wanda mask)."""
    prune_n, prune_m = _nm(pattern)
    model.seqlen = rows.shape[1]
    model.hf_device_map = {}
    loaders = lambda *a, **k: ([(r[None].clone(), r[None].clone()) for r in rows], None)  # noqa: E731
    sys.modules.setdefault("datasets", types.SimpleNamespace(load_dataset=_no_download))
    _patch_layers(model)
    try:
        if method == "ria":
            sys.path.insert(0, str(REFS / "ria"))
            torch.Tensor.cuda = lambda self, *a, **k: self  # CPU-only machine: .cuda() in the threshold sort
            import lib.prune as ria_prune  # biomedical-cybernetics/Relative-importance-and-activation-pruning

            ria_prune.get_loaders = loaders
            args = Namespace(model="llama", calib_dataset="c4", nsamples=rows.shape[0], seed=0,
                             seqlen=rows.shape[1], sparsity_ratio=sparsity, prune_method="ria", a=0.5,
                             reconstruction=False, gptq=False, reallocation=False, lsa=False, fast=False,
                             importance_score="sum", per_outneuron=False, semi_sparse_acc=False)
            ria_prune.prune_ria(args, model, tokenizer, torch.device("cpu"), prune_n=prune_n, prune_m=prune_m)
        elif method == "dsnot":
            sys.path.insert(0, str(REFS / "dsnot"))
            import lib.prune as dsnot_prune  # zyxxmu/DSnoT

            dsnot_prune.get_loaders = loaders
            args = Namespace(nsamples=rows.shape[0], seed=0, sparsity_ratio=sparsity, initial_method="wanda",
                             max_cycle_time=50, update_threshold=0.1, pow_of_var_regrowing=1.0,
                             pow_of_var_pruning=1.0, skip_layer="mlp", skip_sub_layer="no_skip",
                             without_same_sign=True, without_DSnoT=without_dsnot, get_time_overhead=False)
            dsnot_prune.prune_DSnoT(args, model, tokenizer, torch.device("cpu"), prune_n=prune_n, prune_m=prune_m)
        else:
            raise ValueError(method)
    finally:
        _unpatch_layers(model)


def run_secateurs(model, rows: torch.Tensor, method: str, pattern: str, sparsity: float | None):
    from secateurs.llm import prune

    options = {"base": "wanda"} if method == "dsnot" else {}
    return prune(model, rows, method=method, sparsity=sparsity, pattern=pattern, progress=False, **options)


def block_weights(model) -> dict[str, torch.Tensor]:
    from secateurs.core.blocks import find_blocks, find_linears

    return {f"{i}.{n}": l.weight.detach().clone().contiguous()
            for i, b in enumerate(find_blocks(model)[1]) for n, l in find_linears(b).items()}


def compare(wa: dict[str, torch.Tensor], wb: dict[str, torch.Tensor]) -> dict:
    """Fraction of equal mask entries (zero / non-zero) over every block linear, and per layer type."""
    same = sum(int(((wa[k] == 0) == (wb[k] == 0)).sum()) for k in wa)
    total = sum(wa[k].numel() for k in wa)
    by_type: dict[str, list[int]] = {}
    for k in wa:
        kind = k.split(".", 1)[1]
        acc = by_type.setdefault(kind, [0, 0])
        acc[0] += int(((wa[k] == 0) == (wb[k] == 0)).sum())
        acc[1] += wa[k].numel()
    return {"mask_agreement": same / total, "differing_mask_entries": total - same,
            "identical_layers": sum(bool(torch.equal(wa[k] == 0, wb[k] == 0)) for k in wa), "layers": len(wa),
            "mask_agreement_by_layer": {k: v[0] / v[1] for k, v in by_type.items()},
            "max_abs_weight_difference": max(float((wa[k] - wb[k]).abs().max()) for k in wa)}


# ---------------------------------------------------------------------------------------------------- worker
def worker(args) -> None:
    from safetensors.torch import save_file

    from secateurs.llm import perplexity
    from secateurs.zoo.shakespeare import shakespeare_llama

    model, tok, rows, held, _ = shakespeare_setup(shakespeare_llama(), "causal", args.nsamples, args.seqlen)
    eval_ids = held[: args.eval_windows * args.seqlen]
    sparsity = None if args.sparsity < 0 else args.sparsity
    doc = {"impl": args.impl, "method": args.method, "pattern": args.pattern, "sparsity_arg": sparsity,
           "threads": torch.get_num_threads()}
    t0 = time.perf_counter()
    if args.impl == "secateurs":
        report = run_secateurs(model, rows, args.method, args.pattern, sparsity)
        doc["options"] = {"method": report.method_options, "solver": report.solver_options}
    elif args.impl.startswith("reference"):
        run_reference(model, tok, rows, args.method, args.pattern, 0.5 if sparsity is None else sparsity,
                      without_dsnot=args.impl == "reference-initial")
    doc["prune_seconds"] = time.perf_counter() - t0
    doc["perplexity"] = perplexity(model, eval_ids, seqlen=args.seqlen, batch_size=8)
    weights = block_weights(model)
    doc["sparsity"] = sum(int((w == 0).sum()) for w in weights.values()) / sum(w.numel() for w in weights.values())
    save_file(weights, args.weights)
    Path(args.result).write_text(json.dumps(doc))


# ---------------------------------------------------------------------------------------------------- parent
def _spawn(impl: str, method: str, pattern: str, sparsity: float | None, args, tmp: Path) -> dict:
    tag = f"{impl}-{method}-{pattern.replace(':', '-')}-{sparsity}"
    result, weights = tmp / f"{tag}.json", tmp / f"{tag}.st"
    cmd = [sys.executable, __file__, "--worker", "--impl", impl, "--method", method, "--pattern", pattern,
           "--sparsity", str(-1 if sparsity is None else sparsity), "--result", str(result), "--weights",
           str(weights), "--nsamples", str(args.nsamples), "--seqlen", str(args.seqlen),
           "--eval-windows", str(args.eval_windows)]
    return run_worker(cmd, result, weights, tag)


def _commit(name: str) -> str:
    return subprocess.run(["git", "-C", str(REFS / name), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--impl", choices=["secateurs", "reference", "reference-initial", "dense"])
    ap.add_argument("--method", default="none")
    ap.add_argument("--pattern", default="unstructured")
    ap.add_argument("--sparsity", type=float, default=-1)
    ap.add_argument("--result")
    ap.add_argument("--weights")
    ap.add_argument("--nsamples", type=int, default=64)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--eval-windows", type=int, default=64)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    if not (REFS / "ria" / "lib" / "prune.py").exists() or not (REFS / "dsnot" / "lib" / "prune.py").exists():
        sys.exit("clone the RIA and DSnoT reference repositories into .refs/ria and .refs/dsnot first "
                 "(see the module docstring)")
    from safetensors.torch import load_file

    from _machine import machine_info
    from secateurs.llm.output import library_versions

    t_start = time.perf_counter()
    runs, context = [], []
    with tempfile.TemporaryDirectory() as tmp:
        dense = _spawn("dense", "none", "unstructured", None, args, Path(tmp))
        dense.pop("weights_file")
        print(f"dense perplexity {dense['perplexity']:.4f}", file=sys.stderr, flush=True)
        start_masks = {}  # our Wanda masks: DSnoT's starting point
        for method, pattern, sparsity in CONTEXT:
            doc = _spawn("secateurs", method, pattern, sparsity, args, Path(tmp))
            start_masks[(pattern, sparsity)] = load_file(doc.pop("weights_file"))
            context.append(doc)
            print(f"{method} {pattern} {sparsity}: ppl {doc['perplexity']:.4f}", file=sys.stderr, flush=True)
        for method, pattern, sparsity in CONFIGS:
            ours = _spawn("secateurs", method, pattern, sparsity, args, Path(tmp))
            ref = _spawn("reference", method, pattern, sparsity, args, Path(tmp))
            row = {"method": method, "base": "wanda" if method == "dsnot" else None, "pattern": pattern,
                   "sparsity": 0.5 if sparsity is None else sparsity, "secateurs": ours, "reference": ref,
                   "perplexity_rel_diff": ours["perplexity"] / ref["perplexity"] - 1,
                   **compare(load_file(ours.pop("weights_file")), load_file(ref.pop("weights_file")))}
            if method == "dsnot" and pattern == "unstructured":
                # the starting masks: our Wanda against DSnoT's own (--without_DSnoT, which its N:M path ignores)
                init = _spawn("reference-initial", method, pattern, sparsity, args, Path(tmp))
                agree = compare(start_masks[(pattern, sparsity)], load_file(init.pop("weights_file")))
                row["start_mask_agreement"] = agree["mask_agreement"]
                row["start_differing_mask_entries"] = agree["differing_mask_entries"]
                row["reference_initial"] = init
            runs.append(row)
            print(json.dumps({k: row.get(k) for k in ("method", "pattern", "sparsity", "mask_agreement",
                                                      "differing_mask_entries", "start_mask_agreement",
                                                      "perplexity_rel_diff")}
                             | {"ppl_ours": ours["perplexity"], "ppl_ref": ref["perplexity"]}),
                  file=sys.stderr, flush=True)
    doc = {"benchmark": "llm_ria_dsnot", "machine": machine_info(), "versions": library_versions(),
           "references": {"biomedical-cybernetics/Relative-importance-and-activation-pruning": _commit("ria"),
                          "zyxxmu/DSnoT": _commit("dsnot")},
           "settings": {"nsamples": args.nsamples, "seqlen": args.seqlen, "eval_windows": args.eval_windows,
                        "calibration": "shakespeare calibration plays, draw_windows(seed=0)",
                        "evaluation": "first eval_windows x seqlen tokens of the held-out plays",
                        "ria": "a=0.5, layer-wise ranking (reference default), no channel reallocation",
                        "dsnot": "initial wanda, max_cycle_time=50, update_threshold=0.1, pow_of_var_regrowing=1, "
                                 "skip_layer=mlp (reference defaults)"},
           "dense_perplexity": dense["perplexity"], "runs": runs, "context_secateurs": context,
           "command": "python benchmarks/llm_ria_dsnot.py " + " ".join(sys.argv[1:]),
           "seconds": round(time.perf_counter() - t_start, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
