"""Structured LLM pruning (``secateurs.llm.prune_structured``) on SmolLM2-135M and Gemma-3-270M →
``benchmarks/results/llm_structured.json`` (``--model gemma3-270m``: ``llm_structured_gemma3-270m.json``).

FLAP (An et al. 2024, the reference's defaults: WIFV, AL-AM, bias compensation, dense inputs), width pruning
(Wanda-style importance, uniform widths: whole KV groups + MLP neurons rounded to 8) and ShortGPT layer removal
(Block Influence) at 20/30/50% of the blocks' parameters.  Small protocol: 32 calibration windows of 256 tokens from
the Shakespeare calibration plays, held-out perplexity on the first 16 windows of 256 tokens of the held-out plays
(no recovery fine-tune: ``llm_recover.py`` measures that), parameters, CPU prefill latency of one ``seqlen``-token row
and decode throughput (greedy generation of ``--decode-tokens`` new tokens after a 16-token prompt, KV cache on;
tokens/s), 1 thread, dense and pruned timed interleaved in random order, medians.  ``width_mlp`` is width pruning
of the MLP neurons only (``attention=False``): models with few key/value groups (SmolLM2: 3, Gemma-3-270M: 1) lose
a third or all of a layer's attention with one group.  Gemma is calibrated and evaluated with a BOS token per window
(``llm_common.needs_bos``).  Runs when ``secateurs.zoo.pretrained_llm(MODEL)`` is available.

    python benchmarks/llm_structured.py [--model smollm2-135m|gemma3-270m] [--sparsities 0.2,0.3,0.5]
        [--methods flap,width,width_mlp,shortgpt] [--rounds 10] [--decode-tokens 32]
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

from llm_common import needs_bos  # noqa: E402

from secateurs.llm import perplexity, prune_structured  # noqa: E402
from secateurs.llm.output import library_versions  # noqa: E402
from secateurs.llm.text import load_local_model, load_local_tokenizer, load_token_ids  # noqa: E402
from secateurs.structured.count import latency  # noqa: E402

#: benchmark name -> (prune_structured method, options)
VARIANTS = {"flap": ("flap", {}), "width": ("width", {"importance": "wanda"}),
            "width_mlp": ("width", {"importance": "wanda", "attention": False}), "shortgpt": ("shortgpt", {})}


class Decode(torch.nn.Module):
    """Greedy generation of exactly ``n`` new tokens (KV cache on) as one timed call of ``latency``."""

    def __init__(self, model: torch.nn.Module, n: int):
        super().__init__()
        self.model, self.n = model, n

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=self.n,
                                   min_new_tokens=self.n, do_sample=False, pad_token_id=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m", choices=["smollm2-135m", "gemma3-270m"])
    ap.add_argument("--sparsities", default="0.2,0.3,0.5")
    ap.add_argument("--methods", default="flap,width,width_mlp,shortgpt")
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--eval-windows", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.out is None:
        name = "llm_structured.json" if args.model == "smollm2-135m" else f"llm_structured_{args.model}.json"
        args.out = str(Path(__file__).parent / "results" / name)
    from secateurs.zoo import pretrained_llm
    from secateurs.zoo.shakespeare import shakespeare_text_file

    try:
        path = pretrained_llm(args.model, progress=False)
    except Exception as e:  # noqa: BLE001 - the weight package is optional
        print(f"{args.model} is not available ({e}); nothing measured")
        return
    from secateurs.llm.calibration import draw_windows

    tok = load_local_tokenizer(path)
    dense = load_local_model(path, "causal")
    bos = tok.bos_token_id if needs_bos(dense) else None
    calib = load_token_ids(shakespeare_text_file("calibration"), tok)
    rows = draw_windows(calib, args.nsamples, args.seqlen, seed=0, bos_token_id=bos)
    held = load_token_ids(shakespeare_text_file("heldout"), tok)[: args.eval_windows * args.seqlen]
    row = held[: args.seqlen][None]
    prompt = held[:16][None]
    if bos is not None:
        row, prompt = (torch.cat([torch.tensor([[bos]]), x[:, :-1]], 1) for x in (row, prompt))
    t0 = time.perf_counter()
    ppl_dense = perplexity(dense, held, seqlen=args.seqlen, bos_token_id=bos)
    dense_params = sum(p.numel() for p in dense.parameters())
    runs = []
    for variant in args.methods.split(","):
        method, options = VARIANTS[variant]
        for s in (float(x) for x in args.sparsities.split(",")):
            model = copy.deepcopy(dense)
            try:
                rep = prune_structured(model, rows, method, s, nsamples=args.nsamples, seqlen=args.seqlen, seed=0,
                                       device="cpu", **options)
            except Exception as e:  # noqa: BLE001 - an impossible width is a result too (e.g. every head of a layer)
                runs.append({"method": variant, "target_sparsity": s, "error": f"{type(e).__name__}: {e}"})
                print(f"{variant:9s} {s:.2f}: {type(e).__name__}: {e}", flush=True)
                continue
            ppl = perplexity(model, held, seqlen=args.seqlen, bos_token_id=bos)
            t_dense, t_pruned = latency([dense, model], row, rounds=args.rounds, warmup=2, threads=1)
            d_dense, d_pruned = latency([Decode(dense, args.decode_tokens), Decode(model, args.decode_tokens)],
                                        prompt, rounds=max(3, args.rounds // 2), warmup=1, threads=1)
            runs.append({
                "method": variant, "prune_method": method, "target_sparsity": s, "block_sparsity": rep.sparsity,
                "params": rep.params_after, "params_reduction": rep.model_reduction, "perplexity": ppl,
                "prefill_latency_s": t_pruned, "dense_prefill_latency_s": t_dense,
                "speedup": t_dense / t_pruned, "decode_tokens_per_s": args.decode_tokens / d_pruned,
                "dense_decode_tokens_per_s": args.decode_tokens / d_dense, "decode_speedup": d_dense / d_pruned,
                "prune_seconds": rep.seconds, "stock_config": rep.stock_config,
                "removed_layers": rep.removed_layers,
                "widths": [[w["heads"], w["kv_heads"], w["intermediate"]] for w in rep.widths],
                "options": rep.options,
            })
            print(f"{variant:9s} {s:.2f}: params {rep.params_after / 1e6:.1f}M (-{rep.model_reduction:.1%}), "
                  f"ppl {ppl:.2f} (dense {ppl_dense:.2f}), prefill x{t_dense / t_pruned:.2f}, decode "
                  f"x{d_dense / d_pruned:.2f}, {rep.seconds:.0f}s", flush=True)
            del model
    doc = {
        "benchmark": "llm_structured", "model": f"{args.model} (dequantized 4-bit GGUF, float32)",
        "protocol": {"calibration": f"{args.nsamples} x {args.seqlen} tokens, Shakespeare calibration plays, seed 0"
                                    + (", BOS first in every row" if bos is not None else ""),
                     "heldout": f"first {args.eval_windows} windows of {args.seqlen} tokens of the held-out plays",
                     "latency": f"prefill of 1 x {args.seqlen} tokens, 1 thread, {args.rounds} interleaved rounds, "
                                "median",
                     "decode": f"greedy generation of {args.decode_tokens} new tokens after a 16-token prompt, KV "
                               f"cache, 1 thread, {max(3, args.rounds // 2)} interleaved rounds, median; tokens/s",
                     "recovery": "none", "bos_per_window": bos is not None},
        "command": "python benchmarks/llm_structured.py " + " ".join(sys.argv[1:]),
        "dense": {"params": dense_params, "perplexity": ppl_dense},
        "runs": runs, "seconds": time.perf_counter() - t0,
        "machine": machine_info(), "versions": library_versions(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    tmp.replace(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
