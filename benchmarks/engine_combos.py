"""New combinations of the one engine on the zoo's trained models → ``benchmarks/results/engine_combos.json``.

Wanda (Sun et al. 2023) and SparseGPT (Frantar & Alistarh 2023), the LLM methods, on image classifiers: their
Linear layers (LeNet-300-100: all three; LeNet-5 and ResNet-20: the classifier layers; the zoo ViT, if present:
every Linear of its blocks, gathered block by block).  Against magnitude with the same uniform allocation and
global magnitude, and magnitude followed by the SparseGPT solver (OBS update of the kept weights).  Accuracy on
the digits test split right after pruning (no fine-tuning); calibration: 100 training images (10 per class).

    python benchmarks/engine_combos.py [--models lenet300 lenet5 resnet20 vit] [--seeds 0 1 2]
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_info  # noqa: E402

import secateurs  # noqa: E402
from secateurs.registry import names  # noqa: E402
from secateurs.zoo import calibration_batches, evaluate, load_dataset, pretrained  # noqa: E402

OUT = Path(__file__).parent / "results" / "engine_combos.json"
SPARSITIES = [0.5, 0.7, 0.9]
# (label, method, scope, allocation, solver); None: the method's paper default
RUNS = [
    ("magnitude / global", "magnitude", None, "global", None),
    ("magnitude / uniform", "magnitude", None, "uniform", None),
    ("wanda (row, uniform)", "wanda", None, None, None),
    ("wanda / layer / uniform", "wanda", "layer", "uniform", None),
    ("wanda / global", "wanda", "layer", "global", None),
    ("sparsegpt (uniform)", "sparsegpt", None, None, None),
    ("magnitude / uniform + sparsegpt solver", "magnitude", None, "uniform", "sparsegpt"),
    ("wanda + sparsegpt solver", "wanda", None, None, "sparsegpt"),
]


def linears(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["lenet300", "lenet5", "resnet20"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("digits")
    rows, start = [], time.time()
    for model_name in args.models:
        if model_name not in names("model"):
            print(f"skip {model_name}: not in the zoo", file=sys.stderr)
            continue
        for seed in args.seeds:
            dense = pretrained(model_name, "digits", seed=seed)
            _, test_loader = data.loaders(batch_size=256, seed=seed)
            calib = calibration_batches(data, n_per_class=10, seed=seed, batch_size=25)
            base_acc = evaluate(dense, test_loader)["accuracy"]
            blocks = "blocks" if hasattr(dense, "blocks") else None
            targets = [n for n in linears(dense) if blocks is None or n.startswith("blocks.")]
            for label, method, scope, alloc, solver in RUNS:
                for s in SPARSITIES:
                    model = copy.deepcopy(dense)
                    t0 = time.perf_counter()
                    rep = secateurs.prune(model, s, method=method, allocation=alloc, data=calib, targets=targets,
                                          scope=scope, solver=solver, seed=seed, blocks=blocks)
                    acc = evaluate(model, test_loader)["accuracy"]
                    rows.append({"model": model_name, "seed": seed, "run": label, "method": method,
                                 "allocation": rep.allocation, "scope": rep.scope, "solver": solver,
                                 "sparsity": s, "achieved": round(rep.sparsity, 6), "dense_accuracy": base_acc,
                                 "accuracy": acc, "seconds": round(time.perf_counter() - t0, 3),
                                 "targets": targets, "blocks": blocks})
                    print(f"{model_name} s{seed} {label:40s} {s:.0%}: {acc:.4f} (dense {base_acc:.4f})",
                          file=sys.stderr)
    if OUT.exists():  # keep the rows of the models not re-run now
        old = json.loads(OUT.read_text()).get("runs", [])
        rows = [r for r in old if r["model"] not in args.models] + rows
    doc = {"machine": machine_info(), "seconds": round(time.time() - start, 1), "sparsities": SPARSITIES,
           "runs": rows}
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(OUT)


if __name__ == "__main__":
    main()
