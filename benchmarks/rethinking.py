"""The "Rethinking" control on Fashion-MNIST, run as a sweep of the recipe harness → ``results/rethinking.json``.

Liu, Sun, Zhou, Huang & Darrell 2019, "Rethinking the Value of Network Pruning" (ICLR): for structured pruning
with a predefined (uniform) target architecture, training the pruned architecture from a random initialisation
for as many epochs as the dense model was trained ("Scratch-E") matches or beats fine-tuning the pruned weights.
Here one :class:`secateurs.Recipe` (family ``structured``, the zoo ``convnet`` trained on Fashion-MNIST, L2 channel
importance, uniform widths, ``--finetune`` epochs of SGD fine-tuning: 1, the usual short fine-tune, and 3, the dense
model's own budget) is swept by :func:`secateurs.recipes.sweep` over the channel sparsities, fine-tuning budgets and
seeds with the built-in controls switched on: ``scratch`` (the same pruned
architecture re-initialised and trained with the zoo recipe's optimizer for the dense model's epochs: Scratch-E),
``random_mask`` (random channels at the same widths, fine-tuned alike) and ``dense``.  Every cell is one recipe
run, cached in ``--runs`` (resumable: a killed run re-runs only unfinished cells); the same grid from the command
line::

    secateurs sweep benchmarks/recipes/rethinking.yaml --grid sparsity=0.3,0.5,0.7 --grid finetune.epochs=1,3 --seeds 3 \\
        --control scratch --control random_mask --control dense --backend local

    python benchmarks/rethinking.py [--model convnet] [--data fashion-mnist-10k] [--sparsities 0.3,0.5,0.7]
        [--seeds 3] [--finetune 1,3] [--backend local|ray] [--runs benchmarks/runs/rethinking]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import machine_info  # noqa: E402

OUT = HERE / "results" / "rethinking.json"
RECIPE = HERE / "recipes" / "rethinking.yaml"


def _mean_sd(xs: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(xs), "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0, "n": len(xs)}


def summarise(rows: list[dict]) -> list[dict]:
    """One line per (sparsity, arm): accuracy mean ± sd over seeds; arms = the method and each control."""
    groups: dict[tuple, dict[int, dict]] = {}
    for r in rows:
        ft = r["train_epochs"]  # the fine-tuning epochs of the method and random_mask rows
        c = r.get("control")
        arm = c if c in ("scratch", "dense") else f"{c or r['method']}, fine-tuned {ft} epoch(s)"
        s = 0.0 if arm == "dense" else r["target_sparsity"]
        # a control does not read finetune.epochs (scratch trains the dense model's epochs): one row per seed
        groups.setdefault((s, arm), {}).setdefault(r["seed"], r)
    groups = {k: list(v.values()) for k, v in groups.items()}
    out = []
    for (s, arm), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        out.append({"sparsity": s, "arm": arm, "accuracy": _mean_sd([r["accuracy"] for r in rs]),
                    "pruned_accuracy": _mean_sd([r["pruned"]["accuracy"] for r in rs]),
                    "params": rs[0]["params"], "macs": rs[0]["macs"], "train_epochs": rs[0]["train_epochs"],
                    "seeds": sorted(r["seed"] for r in rs)})
    return out


def verdicts(summary: list[dict]) -> list[dict]:
    """At every sparsity: scratch − fine-tuned accuracy, with the standard error of the difference."""
    by = {(r["sparsity"], r["arm"]): r for r in summary}
    out = []
    for (s, arm), r in sorted(by.items()):
        if arm in ("scratch", "dense") or arm.startswith("random_mask"):
            continue
        sc = by.get((s, "scratch"))
        if sc is None:
            continue
        a, b = r["accuracy"], sc["accuracy"]
        se = ((a["sd"] ** 2) / a["n"] + (b["sd"] ** 2) / b["n"]) ** 0.5
        out.append({"sparsity": s, "method": arm, "scratch_minus_finetuned": b["mean"] - a["mean"], "se": se,
                    "scratch_at_least_as_good": b["mean"] - a["mean"] >= -2 * se})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="convnet")
    ap.add_argument("--data", default="fashion-mnist-10k")
    ap.add_argument("--sparsities", default="0.3,0.5,0.7")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--finetune", default="1,3", help="fine-tuning epochs after pruning (comma-separated: a grid)")
    ap.add_argument("--backend", default="local", choices=["local", "ray"])
    ap.add_argument("--runs", type=Path, default=HERE / "runs" / "rethinking",
                    help="the runs directory (committed: `make readme` draws its HTML report from it)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    from secateurs.io import atomic_write_json
    from secateurs.recipes import Recipe
    from secateurs.recipes.sweep import sweep

    epochs = [int(e) for e in args.finetune.split(",")]
    base = Recipe.from_yaml(RECIPE).with_changes({"model": args.model, "data": args.data,
                                                  "finetune.epochs": epochs[0]})
    grid = {"sparsity": [float(s) for s in args.sparsities.split(",")]}
    if len(epochs) > 1:
        grid["finetune.epochs"] = epochs
    t0 = time.perf_counter()
    res = sweep(base, grid, args.runs, seeds=args.seeds, controls=("scratch", "random_mask", "dense"),
                backend=args.backend)
    if res.failed:
        raise SystemExit(f"{len(res.failed)} cells failed: {res.failed[:2]}")
    summary = summarise(res.rows)
    doc = {"benchmark": "rethinking", "recipe": base.to_dict(), "grid": grid, "seeds": args.seeds,
           "controls": ["scratch", "random_mask", "dense"],
           "protocol": (f"{args.model} trained on {args.data} by the zoo; structured {base.resolved_method} "
                        f"pruning (uniform widths) then {args.finetune} epoch(s) of SGD fine-tuning (lr 0.01); "
                        "scratch = the pruned architecture re-initialised and trained with the zoo recipe for the "
                        "dense model's epochs (Scratch-E); random_mask = random channels at the same widths, "
                        "fine-tuned alike; test accuracy on the full test split, mean ± sd over seeds"),
           "summary": summary, "verdicts": verdicts(summary), "rows": res.rows,
           "sweep": {k: v for k, v in res.to_dict().items() if k != "rows"},
           "seconds": time.perf_counter() - t0,
           "command": "python benchmarks/rethinking.py " + " ".join(sys.argv[1:]), "machine": machine_info()}
    atomic_write_json(args.out, doc, indent=1)
    for r in summary:
        a = r["accuracy"]
        print(f"{r['sparsity']:.1f} {r['arm']:<12} {a['mean']:.4f} ± {a['sd']:.4f} (epochs {r['train_epochs']})")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
