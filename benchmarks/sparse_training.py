"""Training-time sparsity methods at equal training budgets → ``benchmarks/results/sparse_training.json``.

Every registered schedule (``secateurs.schedules.methods()``: GMP, one-shot + fine-tune, SET, RigL, GraNet,
ISS-P, PDP, and pruning at initialization with SNIP / GraSP / SynFlow / random-ERK) trains a zoo model from scratch
on digits to 90% and 98% sparsity with the same budget: the zoo recipe of the model (optimizer, peak learning
rate, cosine decay, batch size) for ``--epochs`` epochs, each method configured by its ``from_budget`` defaults
(``secateurs.schedules.train_sparse``).  The dense model trained with the same recipe is the reference.
Iterative magnitude pruning (lottery tickets) is the exception: it needs one full training per round (11 rounds
to 90%, 18 to 98% at 20% per round), so its row is marked with its own budget (``train_epochs``).  Three seeds;
mean and standard deviation of the final test accuracy.

    python benchmarks/sparse_training.py [--models lenet300 resnet20] [--sparsities 0.9 0.98] [--seeds 0 1 2]
                                         [--epochs N] [--methods ...] [--no-imp]

Re-running some models/methods keeps the other rows of the JSON.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_info  # noqa: E402

from secateurs.io import atomic_write_text  # noqa: E402
from secateurs.schedules import methods, train_sparse  # noqa: E402
from secateurs.zoo import build_model, evaluate, fit, load_dataset, recipe_for  # noqa: E402

OUT = Path(__file__).parent / "results" / "sparse_training.json"


def dense_run(model: str, epochs: int, seed: int) -> dict:
    data = load_dataset("digits")
    recipe = recipe_for(model, epochs=epochs)
    train, test = data.loaders(batch_size=recipe["batch_size"], seed=seed)
    torch.manual_seed(seed)
    net = build_model(model)
    t0 = time.perf_counter()
    fit(net, train, epochs, lr=recipe["lr"], optimizer=recipe["optimizer"], weight_decay=recipe["weight_decay"],
        momentum=recipe["momentum"], seed=seed, num_threads=1)
    return {"accuracy": evaluate(net, test)["accuracy"], "sparsity": 0.0, "seconds": time.perf_counter() - t0,
            "train_epochs": epochs}


def imp_run(model: str, sparsity: float, epochs: int, seed: int) -> dict:
    """Lottery-ticket IMP (global magnitude, 20% per round, rewind to init) until ``sparsity``."""
    from secateurs.schedules.lottery import rounds_for, run_lottery

    rounds = rounds_for(sparsity, 0.2)
    t0 = time.perf_counter()
    res = run_lottery(model, "digits", rounds=rounds, prune_rate=0.2, rewind_step=0, epochs=epochs, seed=seed,
                      allocation="global", controls=False, num_threads=1)
    last = res.rounds[-1]
    return {"accuracy": last.ticket_accuracy, "sparsity": 1 - last.density,
            "seconds": time.perf_counter() - t0, "train_epochs": epochs * (rounds + 1), "rounds": rounds}


def summarize(runs: list[dict]) -> dict:
    accs = [r["accuracy"] for r in runs]
    return {"accuracy_mean": statistics.fmean(accs), "accuracy_std": statistics.pstdev(accs) if len(accs) > 1 else 0.0,
            "sparsity": statistics.fmean(r["sparsity"] for r in runs),
            "train_epochs": runs[0].get("train_epochs"), "seconds_mean": statistics.fmean(r["seconds"] for r in runs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["lenet300", "resnet20"])
    ap.add_argument("--sparsities", nargs="+", type=float, default=[0.9, 0.98])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=None, help="default: lenet300 20, resnet20 10")
    ap.add_argument("--methods", nargs="+", default=None)
    ap.add_argument("--no-imp", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    default_epochs = {"lenet300": 20, "resnet20": 10}
    old = json.loads(OUT.read_text()) if OUT.exists() else {}
    rows = [r for r in old.get("rows", []) if r["model"] not in args.models
            or (args.methods and r["method"] not in args.methods + ["dense"])]
    for model in args.models:
        epochs = args.epochs or default_epochs.get(model, recipe_for(model)["epochs"])
        dense = summarize([dense_run(model, epochs, s) for s in args.seeds])
        rows.append({"model": model, "method": "dense", "target_sparsity": 0.0, "epochs": epochs, **dense})
        print(f"{model} dense {dense['accuracy_mean']:.4f} ± {dense['accuracy_std']:.4f}", flush=True)
        for sparsity in args.sparsities:
            chosen = args.methods or methods() + ([] if args.no_imp else ["imp"])
            for method in chosen:
                if method == "imp":
                    runs = [imp_run(model, sparsity, epochs, s) for s in args.seeds]
                else:
                    runs = [train_sparse(model, "digits", method, sparsity, epochs=epochs, seed=s) for s in args.seeds]
                    for r in runs:
                        r["train_epochs"] = epochs
                row = {"model": model, "method": method, "target_sparsity": sparsity, "epochs": epochs,
                       **summarize(runs), "per_seed": [r["accuracy"] for r in runs]}
                rows.append(row)
                print(f"{model} {sparsity:.2f} {method:11s} {row['accuracy_mean']:.4f} ± {row['accuracy_std']:.4f} "
                      f"(sparsity {row['sparsity']:.4f}, {row['seconds_mean']:.1f} s)", flush=True)
                doc = {"machine": machine_info(), "settings": {"dataset": "digits", "seeds": args.seeds,
                                                               "threads": 1}, "rows": rows}
                atomic_write_text(OUT, json.dumps(doc, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
