"""Structured pruning of the Shakespeare Llama → ``benchmarks/results/structured_llm.json``.

Attention heads (whole grouped-query kv groups) and MLP neurons removed physically with ``secateurs.structured``
(the residual width kept: ``ignore=["model.embed_tokens"]``), at 30/50/70% of each group, by the L2 group norm,
by Wanda-style activation-aware scores (|W|·||X|| summed per unit, calibration rows) and at random; and whole
decoder layers removed by Block Influence (ShortGPT).  For each: parameters, MACs (one 256-token row), CPU latency
(dense and pruned timed interleaved, medians, 1 thread), held-out perplexity right after pruning and after a short
recovery fine-tuning (AdamW on the calibration plays, the same steps for every run).

    python benchmarks/structured_llm.py [--finetune-steps 100] [--quick]
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_info  # noqa: E402
from llm_common import shakespeare_setup  # noqa: E402

import secateurs.structured as st  # noqa: E402
from secateurs.core.feed import Feed  # noqa: E402
from secateurs.llm import perplexity  # noqa: E402
from secateurs.llm.calibration import draw_windows  # noqa: E402
from secateurs.llm.text import load_token_ids  # noqa: E402
from secateurs.zoo.shakespeare import shakespeare_llama, shakespeare_text_file  # noqa: E402

OUT = Path(__file__).parent / "results" / "structured_llm.json"


def finetune(model, ids: torch.Tensor, steps: int, seqlen: int, batch: int, lr: float, seed: int) -> float:
    """Recovery fine-tuning: AdamW with a cosine schedule on random windows of ``ids``; returns the last loss."""
    if steps <= 0:
        return float("nan")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    model.train()
    loss = torch.tensor(float("nan"))
    for step in range(steps):
        starts = torch.randint(0, ids.numel() - seqlen - 1, (batch,), generator=gen)
        x = torch.stack([ids[s:s + seqlen] for s in starts.tolist()])
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()
    return float(loss.detach())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ratios", nargs="+", type=float, default=[0.3, 0.5, 0.7])
    ap.add_argument("--importances", nargs="+", default=["l2", "wanda", "random"])
    ap.add_argument("--layers", nargs="+", type=int, default=[1, 2], help="decoder layers removed (BI)")
    ap.add_argument("--finetune-steps", type=int, default=100)
    ap.add_argument("--eval-windows", type=int, default=40)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--quick", action="store_true", help="one ratio, l2 only, 10 fine-tuning steps")
    args = ap.parse_args()
    if args.quick:
        args.ratios, args.importances, args.layers, args.finetune_steps = [0.5], ["l2"], [1], 10
    torch.set_num_threads(1)
    start = time.time()
    path = shakespeare_llama()
    dense, tok, rows, held, _ = shakespeare_setup(path, "causal", 32, args.seqlen)
    train_ids = load_token_ids(shakespeare_text_file("calibration"), tokenizer=tok)
    eval_ids = held[: args.eval_windows * args.seqlen]
    x = {"input_ids": draw_windows(train_ids, 1, args.seqlen, seed=1)}
    feed = Feed.token_rows(rows, batch_size=8)

    def ppl(m) -> float:
        return round(perplexity(m, eval_ids, seqlen=args.seqlen, batch_size=8), 4)

    dense_ppl = ppl(dense)
    print(f"dense perplexity {dense_ppl}", file=sys.stderr)
    runs = []

    def record(label: str, kind: str, model, rep_params: int, rep_macs: int, extra: dict) -> None:
        lat = st.latency([dense, model], x, rounds=30, threads=1)
        row = {"run": label, "kind": kind, **extra, "params": rep_params, "macs": rep_macs,
               "latency_dense_s": lat[0], "latency_s": lat[1], "speedup": lat[0] / lat[1],
               "perplexity": ppl(model)}
        t0 = time.perf_counter()
        row["finetune_last_loss"] = finetune(model, train_ids, args.finetune_steps, args.seqlen, 4, 3e-4, seed=0)
        row["finetune_seconds"] = round(time.perf_counter() - t0, 1)
        row["perplexity_finetuned"] = ppl(model)
        runs.append(row)
        print(json.dumps(row), file=sys.stderr)

    dense_params, dense_macs = st.count_params(dense), st.count_macs(dense, x)
    for importance in args.importances:
        for ratio in args.ratios:
            model = copy.deepcopy(dense)
            t0 = time.perf_counter()
            rep = st.prune(model, x, sparsity=ratio, method=importance, ignore=["model.embed_tokens"],
                           data=feed if importance == "wanda" else None)
            secs = time.perf_counter() - t0
            heads = [g for g in rep.groups if g["kind"] == "heads"]
            record(f"{importance} {ratio:.0%}", "heads+mlp", model, rep.params_after, rep.macs_after,
                   {"importance": importance, "ratio": ratio, "prune_seconds": round(secs, 2),
                    "kv_groups_kept": [g["kept"] for g in heads],
                    "intermediate": model.config.intermediate_size})
    for n in args.layers:
        model = copy.deepcopy(dense)
        rep = st.prune_layers(model, x, n=n, method="bi", data=[r[None] for r in rows[:8]])
        record(f"layers -{n} (BI)", "layers", model, rep.params_after, rep.macs_after,
               {"importance": "bi", "removed_layers": rep.removed, "layers_after": rep.layers_after})
    doc = {"benchmark": "structured_llm", "machine": machine_info(), "model": str(path),
           "dense": {"params": dense_params, "macs": dense_macs, "perplexity": dense_ppl},
           "settings": {"seqlen": args.seqlen, "eval_windows": args.eval_windows, "calibration_rows": 32,
                        "finetune_steps": args.finetune_steps, "finetune": "AdamW lr 3e-4 cosine, 4x256 windows"},
           "runs": runs, "seconds": round(time.time() - start, 1),
           "command": "python benchmarks/structured_llm.py" + (" --quick" if args.quick else "")}
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(OUT)


if __name__ == "__main__":
    main()
