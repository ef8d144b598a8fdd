"""LLaMA-7B-shaped blocks on a GPU: seconds per block and peak GPU memory, secateurs against the references →
``benchmarks/results/llm_gpu.json``.

A ``LlamaForCausalLM`` with LLaMA-7B's block shape (hidden 4096, intermediate 11008, 32 heads) in fp16 on CUDA,
``--blocks`` of them (2 by default: the time per block does not depend on depth), random weights, and 128 random
calibration rows of 2048 tokens, as the LLM-scale issue specifies.  Each (implementation, method) runs in its own
subprocess on a fresh copy: secateurs' ``llm.prune`` (wanda, sparsegpt, and alps when registered) and the authors'
code (locuslab/wanda ``prune_wanda``, IST-DASLab/sparsegpt ``llama_sequential``, imported from the git-ignored
``.refs/`` exactly as ``benchmarks/llm_reference.py`` does).  Recorded: wall seconds per block (whole prune / blocks,
calibration capture included for both), secateurs' own per-block seconds, and the peak GPU memory above the
loaded model.  Goals (issue): SparseGPT ≤ 0.25× the reference's time per block; ALPS ≤ the SparseGPT reference's.

Without CUDA the script says so and exits, unless ``--smoke`` (tiny shapes on the CPU, to check the glue).

    python benchmarks/llm_gpu.py [--blocks 2] [--nsamples 128] [--seqlen 2048]
    python benchmarks/llm_gpu.py --smoke        # CPU, tiny: checks that every path runs
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
OUT = HERE / "results" / "llm_gpu.json"


def build(args, device: torch.device):
    import transformers as T

    torch.manual_seed(0)
    cfg = T.LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.inter,
                        num_hidden_layers=args.blocks, num_attention_heads=args.heads,
                        num_key_value_heads=args.heads, max_position_embeddings=max(args.seqlen, 128),
                        tie_word_embeddings=False)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    with torch.device(device):
        model = T.LlamaForCausalLM(cfg).to(dtype)
    return model.eval()


def worker(args) -> None:
    from secateurs.llm import prune

    device = torch.device(args.device)
    model = build(args, device)
    rows = torch.randint(0, args.vocab, (args.nsamples, args.seqlen), generator=torch.Generator().manual_seed(0))
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    block_seconds = None
    if args.impl == "secateurs":
        rep = prune(model, rows, method=args.method, sparsity=0.5, device=device, progress=False)
        block_seconds = rep.block_seconds
    else:
        from llm_reference import run_reference

        run_reference(model, None, rows.to(device), args.method, "unstructured", 0.5, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() - base) if device.type == "cuda" else None
    zeros = float((model.model.layers[0].mlp.down_proj.weight == 0).float().mean())
    Path(args.result).write_text(json.dumps({
        "impl": args.impl, "method": args.method, "seconds": secs, "seconds_per_block": secs / args.blocks,
        "secateurs_block_seconds": block_seconds, "peak_gpu_bytes_above_model": peak, "down_proj_sparsity": zeros}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--impl"), ap.add_argument("--method"), ap.add_argument("--result")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--inter", type=int, default=11008)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--nsamples", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU: check the glue only")
    args = ap.parse_args()
    if args.smoke:
        args.device, args.hidden, args.inter, args.heads, args.vocab = "cpu", 256, 688, 4, 1000
        args.nsamples, args.seqlen = 4, 128
    if args.worker:
        worker(args)
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing measured (run on a GPU machine, or --smoke to check the glue)",
              file=sys.stderr)
        return
    from _machine import machine_info
    from secateurs.registry import names

    methods = [m for m in ("wanda", "sparsegpt", "alps") if m in names("criterion")]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in methods:
            for impl in ("secateurs", "reference"):
                if impl == "reference" and method == "alps":
                    continue  # the ALPS goal is measured against the SparseGPT reference
                res = Path(tmp) / f"{impl}-{method}.json"
                cmd = [sys.executable, __file__, "--worker", "--impl", impl, "--method", method, "--result",
                       str(res), "--device", args.device, "--blocks", str(args.blocks), "--hidden", str(args.hidden),
                       "--inter", str(args.inter), "--heads", str(args.heads), "--vocab", str(args.vocab),
                       "--nsamples", str(args.nsamples), "--seqlen", str(args.seqlen)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    runs.append({"impl": impl, "method": method, "error": proc.stderr[-2000:]})
                else:
                    runs.append(json.loads(res.read_text()))
                print(json.dumps(runs[-1])[:400], file=sys.stderr)
    per = {(r["impl"], r["method"]): r.get("seconds_per_block") for r in runs}
    ratios = {}
    for m in ("wanda", "sparsegpt"):
        if per.get(("secateurs", m)) and per.get(("reference", m)):
            ratios[f"{m}_time_ratio"] = per[("secateurs", m)] / per[("reference", m)]
    if per.get(("secateurs", "alps")) and per.get(("reference", "sparsegpt")):
        ratios["alps_over_sparsegpt_reference"] = per[("secateurs", "alps")] / per[("reference", "sparsegpt")]
    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" else None
    doc = {"benchmark": "llm_gpu", "machine": machine_info(), "gpu": gpu, "smoke": args.smoke,
           "settings": {k: getattr(args, k) for k in ("blocks", "hidden", "inter", "heads", "vocab", "nsamples",
                                                      "seqlen", "device")},
           "runs": runs, "ratios": ratios}
    out = OUT if not args.smoke else OUT.with_name("llm_gpu_smoke.json")
    tmp_out = out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(doc, indent=1))
    tmp_out.replace(out)


if __name__ == "__main__":
    main()
