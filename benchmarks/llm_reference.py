"""secateurs against the authors' reference code, side by side → ``benchmarks/results/llm_reference.json``.

References (fetched into the git-ignored ``.refs/``, imported from there at run time, never copied):
locuslab/wanda ``lib/prune.py prune_wanda`` and IST-DASLab/sparsegpt ``llama.py llama_sequential`` (its
``SparseGPT`` class).  Both run on the same Shakespeare Llama, the same calibration rows (a 2-D tensor drawn
once) and are evaluated on the same held-out windows with the same perplexity function.

Only calling glue is adapted, in this file:

* the references load C4 through ``datasets``; their loader is replaced by one returning our calibration rows
  (a stub ``datasets`` module satisfies the import, nothing is downloaded);
* transformers 5.x decoder layers take rotary ``position_embeddings`` from the model and return a tensor; the
  references (written for 4.3x) call a layer with ``attention_mask``/``position_ids`` only and index ``[0]``.
  A thin wrapper around each layer computes ``position_embeddings`` with the model's own rotary module and
  returns a 1-tuple, removed again after pruning;
* ``torch.cuda.synchronize`` (IST's timing print) is a no-op on this CPU-only machine; ``model.seqlen`` and
  ``model.hf_device_map`` attributes are set as their ``get_llm`` would.

Each (implementation, method, pattern) runs in its own subprocess; peak memory is the process's VmHWM during
pruning (freed heap returned with malloc_trim, then VmHWM reset with /proc/self/clear_refs before it starts),
reported above the RSS with the model loaded.  secateurs runs with its default ``batch_size=1`` (one calibration row
per block forward, as the references) and, as ``secateurs_batch8``, with 8 rows at a time.
Run: ``.venv/bin/python benchmarks/llm_reference.py`` (about 15 min on 2 CPU cores).
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
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from llm_common import REFERENCE_MODELS, model_path, run_worker, reset_peak, shakespeare_setup, vm_bytes  # noqa: E402
REFS = HERE.parent / ".refs"
RESULTS = HERE / "results" / "llm_reference.json"
CONFIGS = [("wanda", "unstructured", 0.5), ("wanda", "2:4", None), ("sparsegpt", "unstructured", 0.5),
           ("sparsegpt", "2:4", None)]


# ------------------------------------------------------------------------------------------------ calling glue
class _Rotary(nn.Module):
    """Glue: gives a transformers-5 decoder layer the rotary embeddings the references do not pass."""

    def __init__(self, layer: nn.Module, rotary: nn.Module):
        super().__init__()
        self.layer = layer
        self._rotary = [rotary]  # not a submodule: the references' find_layers must see only the layer

    def forward(self, hidden, attention_mask=None, position_ids=None, **kwargs):
        if position_ids is None:
            position_ids = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
        if kwargs.get("position_embeddings") is None:
            kwargs["position_embeddings"] = self._rotary[0](hidden, position_ids)
        out = self.layer(hidden, attention_mask=attention_mask, position_ids=position_ids, **kwargs)
        return out if isinstance(out, tuple) else (out,)


def _wrap_layers(model) -> None:
    layers = model.model.layers
    for i in range(len(layers)):
        layers[i] = _Rotary(layers[i], model.model.rotary_emb)


def _unwrap_layers(model) -> None:
    layers = model.model.layers
    for i in range(len(layers)):
        if isinstance(layers[i], _Rotary):
            layers[i] = layers[i].layer


def _no_download(*args, **kwargs):
    raise RuntimeError("the benchmark feeds calibration rows directly; nothing is downloaded")


def _nm(pattern: str) -> tuple[int, int]:
    """Their (prune_n, prune_m): the number *removed* of every M (2:4 keeps 2, removes 2)."""
    if pattern == "unstructured":
        return 0, 0
    keep, m = map(int, pattern.split(":"))
    return m - keep, m


def run_reference(model, tokenizer, rows: torch.Tensor, method: str, pattern: str, sparsity: float,
                  device: torch.device = torch.device("cpu")) -> None:
    prune_n, prune_m = _nm(pattern)
    model.seqlen = rows.shape[1]
    model.hf_device_map = {}
    _wrap_layers(model)
    try:
        if method == "wanda":
            sys.path.insert(0, str(REFS / "wanda"))
            sys.modules.setdefault("datasets", types.SimpleNamespace(load_dataset=_no_download))
            import lib.prune as wanda_prune  # locuslab/wanda

            wanda_prune.get_loaders = lambda name, nsamples, seed, seqlen, tokenizer: (
                [(r[None].clone(), r[None].clone()) for r in rows], None)
            args = Namespace(nsamples=rows.shape[0], seed=0, sparsity_ratio=sparsity, use_variant=False)
            wanda_prune.prune_wanda(args, model, tokenizer, device, prune_n=prune_n, prune_m=prune_m)
        else:
            sys.path.insert(0, str(REFS / "sparsegpt"))
            if device.type != "cuda":
                torch.cuda.synchronize = lambda *a, **k: None  # CPU-only machine
            import llama as sparsegpt_llama  # IST-DASLab/sparsegpt

            sparsegpt_llama.args = Namespace(
                nsamples=rows.shape[0], true_sequential=False, minlayer=-1, maxlayer=1000, prune_only="",
                invert=False, wbits=16, sparsity=sparsity, prunen=prune_n, prunem=prune_m, percdamp=0.01,
                blocksize=128)
            sparsegpt_llama.llama_sequential(model, [(r[None], r[None]) for r in rows], device)
    finally:
        _unwrap_layers(model)


# ---------------------------------------------------------------------------------------------------- worker
def _data(args):
    path = model_path(args.model)
    model, tok, rows, held, _ = shakespeare_setup(path, "causal", args.nsamples, args.seqlen)
    if args.dtype != "float32":  # both implementations get the same model in the same dtype
        model.to(getattr(torch, args.dtype))
    return path, model, tok, rows, held[: args.eval_windows * args.seqlen]


def worker(args) -> None:
    from safetensors.torch import save_file

    from secateurs.llm import perplexity, prune
    from secateurs.core.blocks import find_blocks, find_linears

    path, model, tok, rows, eval_ids = _data(args)
    doc = {"impl": args.impl, "method": args.method, "pattern": args.pattern, "threads": torch.get_num_threads()}
    if args.impl == "dense":
        doc["perplexity"] = perplexity(model, eval_ids, seqlen=args.seqlen, batch_size=8)
    else:
        sparsity = 0.5 if args.pattern == "unstructured" else None
        reset_peak()  # VmHWM from here on: the pruning's own peak
        rss0 = vm_bytes("VmRSS")
        t0, c0 = time.perf_counter(), time.process_time()
        if args.impl.startswith("secateurs"):
            batch = 8 if args.impl == "secateurs-batch8" else 1
            report = prune(model, rows, method=args.method, sparsity=sparsity, pattern=args.pattern, progress=False,
                           batch_size=batch)
            doc["secateurs_block_seconds"] = report.block_seconds
        else:
            run_reference(model, tok, rows, args.method, args.pattern, sparsity if sparsity is not None else 0.5)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        nblocks = len(find_blocks(model)[1])
        peak = vm_bytes("VmHWM")
        doc.update({"prune_seconds": wall, "prune_cpu_seconds": cpu, "seconds_per_block": wall / nblocks,
                    "cpu_seconds_per_block": cpu / nblocks, "rss_before_bytes": rss0, "peak_rss_bytes": peak,
                    "peak_above_model_bytes": peak - rss0,
                    "perplexity": perplexity(model, eval_ids, seqlen=args.seqlen, batch_size=8)})
        weights = {f"{i}.{n}": l.weight.detach().clone().contiguous()
                   for i, b in enumerate(find_blocks(model)[1]) for n, l in find_linears(b).items()}
        save_file(weights, args.weights)
        doc["sparsity"] = sum(int((w == 0).sum()) for w in weights.values()) / sum(w.numel() for w in weights.values())
    Path(args.result).write_text(json.dumps(doc))


def teacher_forced(args) -> None:
    """One process: the reference prunes the model as usual while every block's calibration inputs are recorded
    (its first ``nsamples`` calls of each block, the statistics pass); then secateurs prunes a dense copy of each
    block alone, fed exactly those inputs (``secateurs.prune`` on the block, one pass), and the two masks of every
    block are compared.  This separates the algorithm from the depth cascade of a whole-model run, where a single
    mask entry flipped by rounding at a near-tie changes every later block's inputs a little and so flips more
    near-ties (a run in float32 or float64 alike)."""
    import copy

    import secateurs
    from secateurs.core.blocks import find_blocks, find_linears

    path, model, tok, rows, _ = _data(args)
    dense = copy.deepcopy(model)
    layers = list(model.model.layers)
    captured: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(layers))}

    def hook(i):
        def pre(_m, a, kw):
            if len(captured[i]) < rows.shape[0]:
                x = a[0] if a else kw["hidden_states"]
                captured[i].append(x.detach().clone())
        return pre

    handles = [layer.register_forward_pre_hook(hook(i), with_kwargs=True) for i, layer in enumerate(layers)]
    sparsity = 0.5 if args.pattern == "unstructured" else None
    run_reference(model, tok, rows, args.method, args.pattern, 0.5)
    for h in handles:
        h.remove()
    per_block, same, total = [], 0, 0
    for i, (blk_ref, blk_dense) in enumerate(zip(find_blocks(model)[1], find_blocks(dense)[1])):
        ours = _Rotary(copy.deepcopy(blk_dense), dense.model.rotary_emb)
        secateurs.prune(ours, sparsity, method=args.method, pattern=args.pattern, data=captured[i], bake=True,
                        progress=False)
        lin_ref, lin_ours = find_linears(blk_ref), find_linears(ours.layer)
        s = sum(int(((lin_ref[n].weight == 0) == (lin_ours[n].weight == 0)).sum()) for n in lin_ref)
        t = sum(lin_ref[n].weight.numel() for n in lin_ref)
        per_block.append(round(s / t, 8))
        same, total = same + s, total + t
    doc = {"impl": "teacher-forced", "method": args.method, "pattern": args.pattern,
           "teacher_forced_mask_agreement": same / total, "teacher_forced_mask_agreement_per_block": per_block}
    Path(args.result).write_text(json.dumps(doc))


# ---------------------------------------------------------------------------------------------------- parent
def _spawn(impl: str, method: str, pattern: str, args, tmp: Path) -> dict:
    result, weights = tmp / f"{impl}-{method}-{pattern}.json", tmp / f"{impl}-{method}-{pattern.replace(':', '-')}.st"
    cmd = [sys.executable, __file__, "--worker", "--impl", impl, "--method", method, "--pattern", pattern,
           "--result", str(result), "--weights", str(weights), "--nsamples", str(args.nsamples),
           "--seqlen", str(args.seqlen), "--eval-windows", str(args.eval_windows), "--model", args.model,
           "--dtype", args.dtype]
    return run_worker(cmd, result, weights, f"{impl} {method} {pattern}")


def _compare(a: dict, b: dict) -> dict:
    from safetensors.torch import load_file

    wa, wb = load_file(a["weights_file"]), load_file(b["weights_file"])
    same = sum(int(((wa[k] == 0) == (wb[k] == 0)).sum()) for k in wa)
    total = sum(wa[k].numel() for k in wa)
    diff = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    blocks: dict[int, list[int]] = {}
    for k in wa:  # keys are "<block>.<linear>": where along the depth the two masks start to differ
        b = blocks.setdefault(int(k.split(".")[0]), [0, 0])
        b[0] += int(((wa[k] == 0) == (wb[k] == 0)).sum())
        b[1] += wa[k].numel()
    return {"mask_agreement": same / total, "max_abs_weight_difference": diff,
            "mask_agreement_per_block": [round(blocks[b][0] / blocks[b][1], 6) for b in sorted(blocks)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--impl", choices=["secateurs", "secateurs-batch8", "reference", "dense", "teacher-forced"])
    ap.add_argument("--method")
    ap.add_argument("--pattern", default="unstructured")
    ap.add_argument("--result")
    ap.add_argument("--weights")
    ap.add_argument("--nsamples", type=int, default=64)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--eval-windows", type=int, default=64)
    ap.add_argument("--model", choices=REFERENCE_MODELS, default="shakespeare-llama",
                    help="smollm2-135m: the real pretrained SmolLM2 (llm_reference_smollm2-135m.json)")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                    help="float64: rounding differences between the implementations vanish, so any mask difference "
                         "left is a difference of algorithm (fp32 differences grow through the blocks and flip near-ties)")
    ap.add_argument("--configs", nargs="+", default=[f"{m}:{p}" for m, p, _ in CONFIGS],
                    help="method:pattern pairs to run, e.g. wanda:2:4 sparsegpt:unstructured")
    ap.add_argument("--no-batch8", action="store_true", help="skip the secateurs batch_size=8 run")
    ap.add_argument("--teacher-forced", action="store_true",
                    help="also compare each block's masks when both implementations get the same block inputs")
    ap.add_argument("--teacher-forced-only", action="store_true",
                    help="only the teacher-forced comparison (-> llm_reference_<model>_teacher_forced.json)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.out is None:
        suffix = ("" if args.model == "shakespeare-llama" else f"_{args.model}") + (
            "" if args.dtype == "float32" else f"_{args.dtype}")
        suffix += "_teacher_forced" if args.teacher_forced_only else ""
        args.out = RESULTS.with_name(f"llm_reference{suffix}.json")
    if args.worker:
        teacher_forced(args) if args.impl == "teacher-forced" else worker(args)
        return
    if not (REFS / "wanda" / "lib" / "prune.py").exists() or not (REFS / "sparsegpt" / "sparsegpt.py").exists():
        sys.exit("clone locuslab/wanda and IST-DASLab/sparsegpt into .refs/ first (see the module docstring)")
    from _machine import machine_info

    from secateurs.llm.output import library_versions

    model_path(args.model)  # build (once) before the workers start, so that they never race to build it
    t_start = time.perf_counter()
    if args.teacher_forced_only:
        with tempfile.TemporaryDirectory() as tmp:
            rows = [_spawn("teacher-forced", m, p, args, Path(tmp)) for m, p in (c.split(":", 1)
                                                                                 for c in args.configs)]
        for r in rows:
            r.pop("weights_file", None)
            print(json.dumps(r), file=sys.stderr, flush=True)
        doc = {"benchmark": "llm_reference_teacher_forced", "model": args.model, "machine": machine_info(),
               "versions": library_versions(),
               "settings": {"dtype": args.dtype, "nsamples": args.nsamples, "seqlen": args.seqlen,
                            "calibration": "shakespeare calibration plays, draw_windows(seed=0)"},
               "what": teacher_forced.__doc__.split("\n\n")[0].replace("\n    ", " "), "runs": rows,
               "command": "python benchmarks/llm_reference.py " + " ".join(sys.argv[1:]),
               "seconds": round(time.perf_counter() - t_start, 1)}
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
        return
    with tempfile.TemporaryDirectory() as tmp:
        dense = _spawn("dense", "none", "unstructured", args, Path(tmp))
        print(f"dense perplexity {dense['perplexity']:.4f}", file=sys.stderr, flush=True)
        rows = []
        for method, pattern in (c.split(":", 1) for c in args.configs):
            ours = _spawn("secateurs", method, pattern, args, Path(tmp))
            ref = _spawn("reference", method, pattern, args, Path(tmp))
            ours8 = ours if args.no_batch8 else _spawn("secateurs-batch8", method, pattern, args, Path(tmp))
            forced = _spawn("teacher-forced", method, pattern, args, Path(tmp)) if args.teacher_forced else {}
            row = {"method": method, "pattern": pattern, "secateurs": ours, "reference": ref,
                   "secateurs_batch8": ours8,
                   "perplexity_rel_diff": ours["perplexity"] / ref["perplexity"] - 1,
                   "time_per_block_ratio": ours["seconds_per_block"] / ref["seconds_per_block"],
                   "cpu_per_block_ratio": ours["cpu_seconds_per_block"] / ref["cpu_seconds_per_block"],
                   "peak_above_model_ratio": ours["peak_above_model_bytes"] / max(ref["peak_above_model_bytes"], 1),
                   "batch8_time_per_block_ratio": ours8["seconds_per_block"] / ref["seconds_per_block"],
                   "batch8_peak_above_model_ratio": ours8["peak_above_model_bytes"]
                   / max(ref["peak_above_model_bytes"], 1),
                   "batch8_perplexity_rel_diff": ours8["perplexity"] / ref["perplexity"] - 1,
                   **_compare(ours, ref),
                   **{k: v for k, v in forced.items() if k.startswith("teacher_forced")}}
            for d in (ours, ref, ours8):
                d.pop("weights_file", None)
            if args.no_batch8:
                for key in [k for k in row if k.startswith(("batch8_", "secateurs_batch8"))]:
                    row.pop(key)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k not in ("secateurs", "reference")}),
                  file=sys.stderr, flush=True)
    commits = {}
    for name in ("wanda", "sparsegpt"):
        proc = subprocess.run(["git", "-C", str(REFS / name), "rev-parse", "HEAD"], capture_output=True, text=True)
        commits[name] = proc.stdout.strip()
    doc = {"benchmark": "llm_reference", "model": args.model, "machine": machine_info(), "versions": library_versions(),
           "references": {"locuslab/wanda": commits["wanda"], "IST-DASLab/sparsegpt": commits["sparsegpt"]},
           "settings": {"dtype": args.dtype, "nsamples": args.nsamples, "seqlen": args.seqlen, "eval_windows": args.eval_windows,
                        "calibration": "shakespeare calibration plays, draw_windows(seed=0)",
                        "evaluation": "first eval_windows x seqlen tokens of the held-out plays"},
           "dense_perplexity": dense["perplexity"], "runs": rows,
           "command": "python benchmarks/llm_reference.py " + " ".join(sys.argv[1:]),
           "seconds": round(time.perf_counter() - t_start, 1),
           "peak_rss_parent_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
