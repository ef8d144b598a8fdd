"""The oracle study (issue 18, item 4; Feng, Tao & Wang 2024, "Is Oracle Pruning the True Oracle?") on lenet5 /
digits (``--model convnet --data fashion-mnist-10k``: the zoo convnet on the Fashion-MNIST subset →
``results/oracle_convnet_fashion-mnist-10k.json``): the per-unit oracle, every criterion's rank correlation with it, and, at each fine-tuning budget, whether
the loss right after pruning (or the oracle's additive prediction of it) predicts accuracy after fine-tuning.

    .venv/bin/python benchmarks/oracle.py [--budgets 1,5,20] [--n-random 8]
    -> benchmarks/results/oracle.json

The dense lenet5 is the zoo's (60 epochs, cached).  Every budget re-runs the whole study (the oracle and the
criteria's scores are the same each time: same model, same batches); the JSON holds the study of the first
budget in full and, per budget, the pruned models and the correlations.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_info  # noqa: E402

OUT = Path(__file__).parent / "results" / "oracle.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", default="1,5,20", help="fine-tuning epochs, comma-separated")
    ap.add_argument("--sparsities", default="0.3,0.5,0.7")
    ap.add_argument("--n-random", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="lenet5")
    ap.add_argument("--data", default="digits")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.out is None:
        args.out = OUT if (args.model, args.data) == ("lenet5", "digits") else OUT.with_name(
            f"oracle_{args.model}_{args.data}.json")
    from secateurs.io import atomic_write_json
    from secateurs.recipes.oracle import oracle_study

    budgets = [int(b) for b in args.budgets.split(",")]
    sparsities = [float(s) for s in args.sparsities.split(",")]
    t0 = time.perf_counter()
    doc, per_budget = None, {}
    for b in budgets:
        d = oracle_study(args.model, args.data, sparsities=sparsities, n_random=args.n_random, finetune_epochs=b,
                         seed=args.seed)
        doc = doc or d
        per_budget[str(b)] = {"pruned": d["pruned"], "correlations": d["correlations"], "seconds": d["seconds"]}
        c = d["correlations"]
        print(f"budget {b} epochs ({d['seconds']:.0f} s): pruned train loss vs fine-tuned accuracy, kendall "
              + ", ".join(f"s={s}: {v['pruned_train_loss_vs_finetuned_accuracy']['kendall']:+.2f}"
                          for s, v in c["per_sparsity"].items())
              + f"; pooled {c['pooled']['pruned_train_loss_vs_finetuned_accuracy']['kendall']:+.2f}", flush=True)
    for c in doc["criteria"]:
        print(f"  {c['criterion']:<14} vs oracle (pooled over units): spearman {c['pooled']['spearman']:+.3f} "
              f"kendall {c['pooled']['kendall']:+.3f}")
    out = {"benchmark": "oracle", "study": doc, "budgets": per_budget, "seconds": time.perf_counter() - t0,
           "command": "python benchmarks/oracle.py " + " ".join(sys.argv[1:]), "machine": machine_info()}
    atomic_write_json(args.out, out, indent=1, allow_nan=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
