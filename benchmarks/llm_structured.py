"""Structured LLM pruning (``secateurs.llm.prune_structured``) on SmolLM2-135M → ``benchmarks/results/llm_structured.json``.

FLAP (An et al. 2024, the reference's defaults: WIFV, AL-AM, bias compensation, dense inputs), width pruning
(Wanda-style importance, uniform widths: whole KV groups + MLP neurons rounded to 8) and ShortGPT layer removal
(Block Influence) at 20/30/50% of the blocks' parameters.  Small protocol: 32 calibration windows of 256 tokens from
the Shakespeare calibration plays, held-out perplexity on the first 16 windows of 256 tokens of the held-out plays
(no recovery fine-tune), parameters, and CPU prefill latency of one 256-token row (1 thread, dense and pruned timed
interleaved in random order, medians).  Runs when ``secateurs.zoo.pretrained_llm("smollm2-135m")`` is available.

    python benchmarks/llm_structured.py [--sparsities 0.2,0.3,0.5] [--methods flap,width,shortgpt] [--rounds 10]
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_info  # noqa: E402

from secateurs.llm import perplexity, prune_structured  # noqa: E402
from secateurs.llm.output import library_versions  # noqa: E402
from secateurs.llm.text import load_local_model, load_local_tokenizer, load_token_ids  # noqa: E402
from secateurs.structured.count import latency  # noqa: E402

OPTIONS = {"flap": {}, "width": {"importance": "wanda"}, "shortgpt": {}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sparsities", default="0.2,0.3,0.5")
    ap.add_argument("--methods", default="flap,width,shortgpt")
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--eval-windows", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "llm_structured.json"))
    args = ap.parse_args()
    from secateurs.zoo import pretrained_llm
    from secateurs.zoo.shakespeare import shakespeare_text_file

    try:
        path = pretrained_llm("smollm2-135m", progress=False)
    except Exception as e:  # noqa: BLE001 - the weight package is optional
        print(f"SmolLM2-135M is not available ({e}); nothing measured")
        return
    tok = load_local_tokenizer(path)
    dense = load_local_model(path, "causal")
    calib = load_token_ids(shakespeare_text_file("calibration"), tok)
    held = load_token_ids(shakespeare_text_file("heldout"), tok)[: args.eval_windows * args.seqlen]
    row = held[: args.seqlen][None]
    t0 = time.perf_counter()
    ppl_dense = perplexity(dense, held, seqlen=args.seqlen)
    dense_params = sum(p.numel() for p in dense.parameters())
    runs = []
    for method in args.methods.split(","):
        for s in (float(x) for x in args.sparsities.split(",")):
            model = copy.deepcopy(dense)
            rep = prune_structured(model, calib, method, s, nsamples=args.nsamples, seqlen=args.seqlen, seed=0,
                                   device="cpu", **OPTIONS[method])
            ppl = perplexity(model, held, seqlen=args.seqlen)
            t_dense, t_pruned = latency([dense, model], row, rounds=args.rounds, warmup=2, threads=1)
            runs.append({
                "method": method, "target_sparsity": s, "block_sparsity": rep.sparsity,
                "params": rep.params_after, "params_reduction": rep.model_reduction, "perplexity": ppl,
                "prefill_latency_s": t_pruned, "dense_prefill_latency_s": t_dense,
                "speedup": t_dense / t_pruned, "prune_seconds": rep.seconds, "stock_config": rep.stock_config,
                "removed_layers": rep.removed_layers,
                "widths": [[w["heads"], w["kv_heads"], w["intermediate"]] for w in rep.widths],
                "options": rep.options,
            })
            print(f"{method:9s} {s:.2f}: params {rep.params_after / 1e6:.1f}M (-{rep.model_reduction:.1%}), "
                  f"ppl {ppl:.2f} (dense {ppl_dense:.2f}), prefill x{t_dense / t_pruned:.2f}, {rep.seconds:.0f}s",
                  flush=True)
            del model
    doc = {
        "benchmark": "llm_structured", "model": "smollm2-135m (dequantized Q4_1 GGUF, float32)",
        "protocol": {"calibration": f"{args.nsamples} x {args.seqlen} tokens, Shakespeare calibration plays, seed 0",
                     "heldout": f"first {args.eval_windows} windows of {args.seqlen} tokens of the held-out plays",
                     "latency": f"prefill of 1 x {args.seqlen} tokens, 1 thread, {args.rounds} interleaved rounds, "
                                "median", "recovery": "none"},
        "dense": {"params": dense_params, "perplexity": ppl_dense},
        "runs": runs, "seconds": time.perf_counter() - t0,
        "machine": machine_info(), "versions": library_versions(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
