"""Memory at scale: peak RSS while pruning a model many times larger than one block's working set
→ ``benchmarks/results/llm_scale.json``.

The sequential pipeline must hold, beyond the model itself, only the current block's activations (one buffer of
``nsamples × seqlen × hidden`` floats) and statistics (Wanda's per-column norms, SparseGPT's per-layer Hessians).
A random-weight Llama (memory does not depend on the values; quality numbers use trained weights elsewhere) is
built in a fresh subprocess per method; the process's peak RSS (VmHWM, reset with /proc/self/clear_refs just
before pruning, after a warm-up prune of a one-block model so that first-call costs are not counted) is compared
with the model's size and with the estimated working set of one block, at two depths
(6 and 24 blocks of the same width): the growth above the loaded model must not depend on the depth.

Run: ``.venv/bin/python benchmarks/llm_scale.py`` (a few minutes on 2 CPU cores).
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
from llm_common import reset_peak, vm_bytes  # noqa: E402
RESULTS = HERE / "results" / "llm_scale.json"
MB = 2 ** 20


def worker(args) -> dict:
    import transformers as T

    from secateurs.llm import prune
    from secateurs.core.blocks import find_blocks, find_linears, weight_2d

    def build(layers: int, hidden: int, intermediate: int) -> torch.nn.Module:
        torch.manual_seed(0)
        cfg = T.LlamaConfig(vocab_size=4096, hidden_size=hidden, intermediate_size=intermediate,
                            num_hidden_layers=layers, num_attention_heads=hidden // 64,
                            num_key_value_heads=hidden // 64, max_position_embeddings=2048)
        return T.LlamaForCausalLM(cfg).eval()

    # warm-up on a one-block model: first-call costs (code pages, thread pools, lazy library state) are paid here,
    # not counted as pruning memory
    prune(build(1, 128, 256), torch.randint(0, 4096, (2, 16)), method=args.method, sparsity=0.5, progress=False)
    reset_peak()
    rss_libraries = vm_bytes("VmRSS")  # torch + transformers + secateurs, before the model exists
    model = build(args.layers, args.hidden, args.intermediate)
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    blocks = find_blocks(model)[1]
    block_bytes = sum(p.numel() * p.element_size() for p in blocks[0].parameters())
    widths = [weight_2d(l).shape[1] for l in find_linears(blocks[0]).values()]
    distinct_inputs = {"q/k/v": args.hidden, "o": args.hidden, "gate/up": args.hidden, "down": args.intermediate}
    stats_bytes = (sum(w * w for w in distinct_inputs.values()) if args.method == "sparsegpt"
                   else sum(widths)) * 4
    act_bytes = args.nsamples * args.seqlen * args.hidden * 4
    # one calibration batch through the block: attention scores + the MLP's gate/up/act/product intermediates
    fwd_bytes = args.batch_size * args.seqlen * (4 * args.intermediate + (args.hidden // 64) * args.seqlen + 4 * args.hidden) * 4
    rows = torch.randint(0, 4096, (args.nsamples, args.seqlen), generator=torch.Generator().manual_seed(0))
    reset_peak()
    rss0 = vm_bytes("VmRSS")
    t0 = time.perf_counter()
    report = prune(model, rows, method=args.method, sparsity=0.5, progress=False, batch_size=args.batch_size)
    seconds = time.perf_counter() - t0
    peak = vm_bytes("VmHWM")
    working = block_bytes + act_bytes + stats_bytes + fwd_bytes
    return {
        "method": args.method, "layers": args.layers, "hidden": args.hidden, "intermediate": args.intermediate,
        "nsamples": args.nsamples, "seqlen": args.seqlen, "batch_size": args.batch_size, "threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in model.parameters()), "model_bytes": model_bytes,
        "block_weight_bytes": block_bytes, "activation_buffer_bytes": act_bytes, "block_statistics_bytes": stats_bytes,
        "block_forward_temporaries_bytes": fwd_bytes, "block_working_set_bytes": working,
        "model_over_block_working_set": model_bytes / working,
        "rss_libraries_bytes": rss_libraries, "rss_before_prune_bytes": rss0, "peak_rss_bytes": peak,
        "peak_above_start_bytes": peak - rss0,
        "peak_rss_over_model_size": peak / model_bytes,
        "peak_rss_without_libraries_over_model_size": (peak - rss_libraries) / model_bytes,
        "peak_above_start_over_model_size": (peak - rss0) / model_bytes,
        "peak_above_start_over_block_working_set": (peak - rss0) / working,
        "prune_seconds": round(seconds, 1), "overall_sparsity": report.overall_sparsity,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--method", default="wanda")
    ap.add_argument("--layers", type=int, default=12, help="worker: depth of the model")
    ap.add_argument("--depths", type=int, nargs="+", default=[6, 24], help="depths to compare")
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--intermediate", type=int, default=2048)
    ap.add_argument("--nsamples", type=int, default=16)
    ap.add_argument("--seqlen", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--result")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.worker:
        Path(args.result).write_text(json.dumps(worker(args)))
        return
    sys.path.insert(0, str(HERE))
    from _machine import machine_info

    from secateurs.llm.output import library_versions

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for method, layers in [(m, n) for m in ("wanda", "sparsegpt") for n in args.depths]:
            result = Path(tmp) / f"{method}-{layers}.json"
            cmd = [sys.executable, __file__, "--worker", "--method", method, "--result", str(result),
                   f"--layers={layers}",
                   *[f"--{k}={getattr(args, k)}" for k in ("hidden", "intermediate", "nsamples", "seqlen")],
                   f"--batch-size={args.batch_size}"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                raise RuntimeError(proc.stderr[-3000:])
            run = json.loads(result.read_text())
            runs.append(run)
            print(json.dumps({k: (round(v / MB, 1) if k.endswith("bytes") else v) for k, v in run.items()}),
                  file=sys.stderr, flush=True)
    doc = {"benchmark": "llm_scale", "machine": machine_info(), "versions": library_versions(), "runs": runs,
           "command": "python benchmarks/llm_scale.py " + " ".join(sys.argv[1:]),
           "note": "peak_above_start: growth of the process's peak RSS over its RSS just before prune() (model, "
                   "torch and transformers already resident); rss_libraries: the process before the model was "
                   "built. The same width at two depths shows whether pruning memory grows with the model."}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
