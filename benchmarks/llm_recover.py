"""Recovery after pruning (``secateurs.llm.recover``, PERP) → ``benchmarks/results/llm_recover.json``.

SmolLM2-135M when ``secateurs.zoo.pretrained_llm("smollm2-135m")`` is available, else the Shakespeare Llama, is
pruned 50% unstructured with Wanda and 2:4 with SparseGPT (calibration: ``--nsamples`` windows of ``--seqlen``
tokens of the Shakespeare calibration plays, seed 0), then each pruned model is recovered with every ``--recipes``
entry for ``--steps`` steps of ``--batch-size`` windows of the same calibration plays (seed 0; PERP's AdamW
lr 5e-4, 10% warm-up, linear decay, clipping at 1.0), and the held-out perplexity (first ``--eval-windows``
windows of ``--seqlen`` tokens of the held-out plays, disjoint from the training text) is measured dense, pruned
and recovered.  Each run also checks that every pruned weight is still exactly zero (and 2:4 groups still valid).
The protocol is written into the JSON.

    python benchmarks/llm_recover.py [--model auto|smollm2-135m|shakespeare-llama] [--steps 150] [--seqlen 128]
        [--recipes biases,norms;biases,norms,lora] [--prunings wanda50,sparsegpt24] [--threads 2]
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

from secateurs.core.blocks import find_blocks, find_linears, weight_2d  # noqa: E402
from secateurs.core.modes import num_threads  # noqa: E402
from secateurs.llm import perplexity, prune, prune_structured, recover  # noqa: E402
from secateurs.llm.output import library_versions  # noqa: E402
from secateurs.llm.text import load_local_model, load_local_tokenizer, load_token_ids  # noqa: E402

PRUNINGS = {"wanda50": {"method": "wanda", "sparsity": 0.5, "pattern": "unstructured"},
            "sparsegpt24": {"method": "sparsegpt", "sparsity": None, "pattern": "2:4"},
            # structured: llm.prune_structured (physically smaller; nothing to hold but the shapes)
            "flap20": {"structured": "flap", "sparsity": 0.2, "pattern": "structured"},
            "flap30": {"structured": "flap", "sparsity": 0.3, "pattern": "structured"},
            "shortgpt20": {"structured": "shortgpt", "sparsity": 0.2, "pattern": "structured"},
            # the control: the dense model trained with the same recipe and text (recovery on in-domain text can
            # beat the dense model's perplexity by adapting to the domain; compare with this row, not only dense)
            "dense": {"method": None, "sparsity": 0.0, "pattern": "dense"}}


def _model_path(name: str) -> tuple[str, Path]:
    if name in ("auto", "smollm2-135m"):
        try:
            from secateurs.zoo import pretrained_llm

            return "smollm2-135m", pretrained_llm("smollm2-135m", progress=False)
        except Exception as e:  # noqa: BLE001 - the weight package is optional
            if name != "auto":
                raise
            print(f"SmolLM2-135M is not available ({e}); using the Shakespeare Llama", flush=True)
    from secateurs.zoo.shakespeare import shakespeare_llama

    return "shakespeare-llama", shakespeare_llama(progress=True)


def _zeros(model) -> dict[str, torch.Tensor]:
    return {f"{i}.{n}": weight_2d(m) == 0 for i, b in enumerate(find_blocks(model)[1])
            for n, m in find_linears(b).items()}


def _masks_held(model, before: dict[str, torch.Tensor], pattern: str) -> bool:
    now = _zeros(model)
    same = all(torch.equal(now[k], before[k]) for k in before)
    if pattern == "2:4":
        same = same and all(bool(((~z).reshape(z.shape[0], -1, 4).sum(-1) <= 2).all()) for z in now.values())
    return same


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="auto")
    ap.add_argument("--prunings", default="wanda50,sparsegpt24")
    ap.add_argument("--recipes", default="biases,norms;biases,norms,lora")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--seqlen", type=int, default=128)
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--eval-windows", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "llm_recover.json"))
    args = ap.parse_args()
    from secateurs.zoo.shakespeare import shakespeare_text_file

    t0 = time.perf_counter()
    name, path = _model_path(args.model)
    tok = load_local_tokenizer(path)
    dense = load_local_model(path, "causal")
    calib = load_token_ids(shakespeare_text_file("calibration"), tok)
    held = load_token_ids(shakespeare_text_file("heldout"), tok)[: args.eval_windows * args.seqlen]
    runs = []
    with num_threads(args.threads):
        ppl_dense = perplexity(dense, held, seqlen=args.seqlen)
        print(f"{name}: dense held-out perplexity {ppl_dense:.3f}", flush=True)
        for pname in args.prunings.split(","):
            spec = PRUNINGS[pname]
            pruned = copy.deepcopy(dense)
            t_prune = time.perf_counter()
            if spec.get("structured"):
                rep = prune_structured(pruned, calib, spec["structured"], spec["sparsity"], nsamples=args.nsamples,
                                       seqlen=args.seqlen, seed=0, device="cpu")
                reached = 1 - rep.params_after / rep.params_before
            elif spec["method"]:
                rep = prune(pruned, calib, nsamples=args.nsamples, seqlen=args.seqlen, seed=0, device="cpu",
                            progress=False, **{k: v for k, v in spec.items() if k != "structured"})
                reached = rep.overall_sparsity
            else:
                rep, reached = None, 0.0
            prune_seconds = time.perf_counter() - t_prune
            ppl_pruned = perplexity(pruned, held, seqlen=args.seqlen)
            zeros = _zeros(pruned)
            print(f"{pname}: sparsity {reached:.3f}, perplexity {ppl_pruned:.3f} ({prune_seconds:.0f} s)", flush=True)
            for recipe in args.recipes.split(";"):
                model = copy.deepcopy(pruned)
                train, kd = (recipe[:-3], True) if recipe.endswith("+kd") else (recipe, False)
                r = recover(model, calib, args.steps, train=train, lr=args.lr, seqlen=args.seqlen,
                            batch_size=args.batch_size, seed=0, progress=False,
                            **({"teacher": dense, "distill": "logits"} if kd else {}))
                ppl = perplexity(model, held, seqlen=args.seqlen)
                held_ok = _masks_held(model, zeros, spec["pattern"]) if spec["pattern"] != "structured" else None
                runs.append({
                    "pruning": pname, **spec, "sparsity_reached": reached, "train": recipe,
                    "distill": "logits" if kd else None,
                    "perplexity_dense": ppl_dense, "perplexity_pruned": ppl_pruned, "perplexity_recovered": ppl,
                    "gap_closed": (ppl_pruned - ppl) / (ppl_pruned - ppl_dense) if ppl_pruned != ppl_dense else None,
                    "masks_held": held_ok, "trained_parameters": r.trained_parameters,
                    "trained_fraction": r.trained_fraction, "loss_first": r.loss_first, "loss_last": r.loss_last,
                    "losses": [round(x, 5) for x in r.losses], "recover_seconds": r.seconds,
                    "prune_seconds": prune_seconds, "notes": r.notes,
                })
                print(f"  {recipe:22s}: ppl {ppl_pruned:.3f} -> {ppl:.3f} (dense {ppl_dense:.3f}), "
                      f"{r.trained_parameters:,} params trained, loss {r.loss_first:.3f} -> {r.loss_last:.3f}, "
                      f"masks held {held_ok}, {r.seconds:.0f} s", flush=True)
                del model
            del pruned
    doc = {
        "benchmark": "llm_recover", "model": name + (" (dequantized Q4_1 GGUF, float32)" if "smollm2" in name else ""),
        "protocol": {
            "pruning": f"{args.prunings}: Wanda 50% unstructured / SparseGPT 2:4 (uniform) with llm.prune, FLAP / "
                       f"ShortGPT at 20-30% of the blocks' parameters with llm.prune_structured, 'dense' = the "
                       f"unpruned model trained with the same recipe (the domain-adaptation control); calibration "
                       f"{args.nsamples} x {args.seqlen} tokens of the Shakespeare calibration plays, seed 0; "
                       f"'+kd': logit distillation from the dense model (teacher) instead of the labels",
            "recovery": f"secateurs.llm.recover (PERP): {args.steps} steps x {args.batch_size} windows x "
                        f"{args.seqlen} tokens drawn (seed 0) from the Shakespeare calibration plays; AdamW lr "
                        f"{args.lr or 5e-4}, 10% warm-up, linear decay, grad clip 1.0; LoRA r=16 alpha=32 "
                        f"(MaskLoRA, merged)",
            "heldout": f"perplexity on the first {args.eval_windows} windows of {args.seqlen} tokens of the held-out "
                       f"plays (disjoint from the training text), non-overlapping windows",
            "threads": args.threads,
        },
        "runs": runs, "seconds": time.perf_counter() - t0,
        "command": "python benchmarks/llm_recover.py " + " ".join(sys.argv[1:]),
        "machine": machine_info(), "versions": {**library_versions(), "peft": _version("peft")},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))
    print(f"wrote {out}")


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
