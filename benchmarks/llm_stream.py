"""Peak memory of streaming a checkpoint block by block → ``benchmarks/results/llm_stream.json``.

Two Llama checkpoints built from one config that differ only in depth (24 and 48 blocks; random fp16 weights,
sharded safetensors) are pruned with :func:`secateurs.llm.prune_checkpoint` (Wanda and SparseGPT, 50%), each in a
fresh subprocess whose peak RSS (VmHWM) is read after the run, next to the checkpoint's size on disk and the
seconds per block.  The goal of the LLM-scale issue: the 48-block prune peaks at most 1.1x the 24-block one (the
peak is one block + embeddings/head + calibration activations, whatever the depth), and far below the checkpoint
size.  ``--load`` adds the in-memory ``secateurs.llm.prune`` of the same checkpoints for contrast.

    python benchmarks/llm_stream.py [--hidden 512] [--layers 24 48]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
OUT = HERE / "results" / "llm_stream.json"


def build(path: Path, layers: int, hidden: int, vocab: int) -> int:
    import torch
    import transformers as T

    torch.manual_seed(0)
    cfg = T.LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=int(hidden * 2.6875) // 8 * 8,
                        num_hidden_layers=layers, num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64,
                        max_position_embeddings=512, tie_word_embeddings=False)
    model = T.LlamaForCausalLM(cfg).to(torch.float16)
    model.save_pretrained(path, max_shard_size="50MB")
    return sum(f.stat().st_size for f in path.glob("*.safetensors"))


def worker(args) -> None:
    import torch

    from llm_common import vm_bytes
    from secateurs.llm import prune, prune_checkpoint

    torch.set_num_threads(1)
    rows = torch.randint(0, args.vocab, (args.nsamples, args.seqlen), generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    if args.mode == "stream":
        rep = prune_checkpoint(args.src, args.dst, rows, method=args.method, sparsity=0.5, progress=False)
    else:
        import transformers as T

        model = T.AutoModelForCausalLM.from_pretrained(args.src, dtype=torch.float16)
        rep = prune(model, rows, method=args.method, sparsity=0.5, progress=False)
    secs = time.perf_counter() - t0
    Path(args.result).write_text(json.dumps({
        "peak_rss_bytes": vm_bytes("VmHWM"), "seconds": secs, "seconds_per_block": secs / len(rep.block_seconds),
        "block_seconds_median": sorted(rep.block_seconds)[len(rep.block_seconds) // 2], "sparsity": rep.sparsity}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--mode", default="stream", choices=["stream", "load"])
    ap.add_argument("--src"), ap.add_argument("--dst"), ap.add_argument("--result")
    ap.add_argument("--method", default="wanda")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--layers", nargs="+", type=int, default=[24, 48])
    ap.add_argument("--methods", nargs="+", default=["wanda", "sparsegpt"])
    ap.add_argument("--nsamples", type=int, default=16)
    ap.add_argument("--seqlen", type=int, default=128)
    ap.add_argument("--load", action="store_true", help="also time/measure the in-memory prune")
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    from _machine import machine_info

    start = time.time()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for layers in args.layers:
            src = tmp / f"llama-{layers}"
            size = build(src, layers, args.hidden, args.vocab)
            for method in args.methods:
                for mode in ["stream"] + (["load"] if args.load else []):
                    res = tmp / f"r-{layers}-{method}-{mode}.json"
                    subprocess.run([sys.executable, __file__, "--worker", "--mode", mode, "--src", str(src),
                                    "--dst", str(tmp / f"out-{layers}-{method}-{mode}"), "--result", str(res),
                                    "--method", method, "--vocab", str(args.vocab), "--nsamples",
                                    str(args.nsamples), "--seqlen", str(args.seqlen)], check=True)
                    row = {"layers": layers, "method": method, "mode": mode, "checkpoint_bytes": size,
                           **json.loads(res.read_text())}
                    row["peak_over_checkpoint"] = row["peak_rss_bytes"] / size
                    runs.append(row)
                    print(json.dumps(row), file=sys.stderr)
    ratios = {}
    for method in args.methods:
        peaks = {r["layers"]: r["peak_rss_bytes"] for r in runs if r["method"] == method and r["mode"] == "stream"}
        if len(peaks) >= 2:
            lo, hi = min(peaks), max(peaks)
            ratios[method] = peaks[hi] / peaks[lo]
    doc = {"benchmark": "llm_stream", "machine": machine_info(), "settings": {
        "hidden": args.hidden, "vocab": args.vocab, "dtype": "float16", "nsamples": args.nsamples,
        "seqlen": args.seqlen, "sparsity": 0.5}, "runs": runs,
        "peak_ratio_deep_over_shallow": ratios, "seconds": round(time.time() - start, 1),
        "command": "python benchmarks/llm_stream.py" + (" --load" if args.load else "")}
    tmp_out = OUT.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(doc, indent=1))
    tmp_out.replace(OUT)


if __name__ == "__main__":
    main()
