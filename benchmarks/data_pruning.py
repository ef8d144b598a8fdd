"""Data pruning on digits: every scorer x {hard, random, ccs} x pruning rates, test accuracy of a model trained
from scratch on the kept subset (mean and spread over seeds), the full-data accuracy, and distillation at 70/90 %.

    python benchmarks/data_pruning.py [--quick] [--model lenet5] [--seeds 5]

Protocol.  Scores are computed once (seed 0, each scorer's defaults: EL2N at 10 % of the recipe averaged over 10
seeds, GraNd at initialisation over 10, forgetting / AUM / entropy over one full run).  For every training seed s
the selection uses seed s (random and CCS draw) and the student is initialised and trained with seed s for the same
number of optimizer steps as the full-data recipe (the CCS protocol).  The ``random`` strategy ignores the scores,
so it is run once per rate and seed (scorer "-").  Distillation: the teacher is the model trained on the full data
with its recipe (seed 0, cached), weight 0.5, temperature 1.  ``--quick``: 2 rates, 1 seed, 2 scoring seeds.

Writes benchmarks/results/data_pruning.json (``--quick``: data_pruning_quick.json), atomically.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_info  # noqa: E402

import secateurs.data as D  # noqa: E402
from secateurs.zoo import load_dataset  # noqa: E402

SCORERS = ["random", "el2n", "grand", "forgetting", "aum", "entropy"]
STRATEGIES = ["hard", "random", "ccs"]
RATES = [0.3, 0.5, 0.7, 0.8, 0.9]
DISTILL_RATES = [0.7, 0.9]
RESULTS = Path(__file__).parent / "results"


def summarize(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault((r["scorer"], r["strategy"], r["rate"], r["distill"]), []).append(r["accuracy"])
    return [{"scorer": s, "strategy": st, "rate": rate, "distill": dist, "n": len(a), "mean": float(np.mean(a)),
             "std": float(np.std(a, ddof=1)) if len(a) > 1 else 0.0, "min": float(np.min(a)), "max": float(np.max(a))}
            for (s, st, rate, dist), a in sorted(groups.items(), key=lambda kv: (kv[0][3], kv[0][2], kv[0][0],
                                                                                   kv[0][1]))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 rates, 1 seed: a smoke run of the whole pipeline")
    ap.add_argument("--model", default="lenet5")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rates", type=float, nargs="+", default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rates = args.rates or ([0.5, 0.9] if args.quick else RATES)
    seeds = list(range(1 if args.quick else args.seeds))
    score_seeds = 2 if args.quick else 10
    distill_rates = [r for r in (DISTILL_RATES if not args.quick else [0.9])]
    out = args.out or RESULTS / ("data_pruning_quick.json" if args.quick else "data_pruning.json")
    data = load_dataset("digits")
    labels = data.train.tensors[1].numpy()

    scores, score_seconds = {}, {}
    for name in SCORERS:
        t = time.perf_counter()
        opts = {} if name == "random" else {"model": args.model}
        if name in ("el2n", "grand"):
            opts["seeds"] = score_seeds
        scores[name] = D.score(name, data, **opts)
        score_seconds[name] = time.perf_counter() - t
        print(f"scored {name} in {score_seconds[name]:.1f} s", file=sys.stderr)

    rows: list[dict] = []

    def train(scorer: str, strategy: str, rate: float, seed: int, distill: bool) -> None:
        if rate == 0:
            keep = None
        else:
            keep = D.select(scores[scorer if scorer != "-" else "random"], rate, strategy, labels=labels, seed=seed)
        t = time.perf_counter()
        res = D.train_subset(data, keep, model=args.model, seed=seed, distill=distill)
        rows.append({"scorer": scorer, "strategy": strategy, "rate": rate, "seed": seed, "distill": distill,
                     "accuracy": res["accuracy"], "loss": res["loss"], "kept": res["kept"], "steps": res["steps"],
                     "seconds": time.perf_counter() - t})
        print(f"{scorer:>10} {strategy:>6} {rate:.2f} seed {seed} distill={distill}: {res['accuracy']:.4f}",
              file=sys.stderr)

    for seed in seeds:
        train("-", "full", 0.0, seed, False)
        for rate in rates:
            train("-", "random", rate, seed, False)
            for scorer in SCORERS:
                if scorer == "random":
                    continue  # hard/ccs on random scores are random subsets too: the "-" random row covers it
                for strategy in ("hard", "ccs"):
                    train(scorer, strategy, rate, seed, False)
        for rate in distill_rates:
            train("-", "random", rate, seed, True)
            for scorer in SCORERS[1:]:
                for strategy in ("hard", "ccs"):
                    train(scorer, strategy, rate, seed, True)

    doc = {"benchmark": "data_pruning", "dataset": "digits", "model": args.model, "quick": args.quick,
           "rates": rates, "seeds": seeds, "distill_rates": distill_rates,
           "protocol": __doc__.split("Protocol.")[1].split("Writes")[0].strip(),
           "ccs_beta": {str(r): D.default_beta(r) for r in rates},
           "score_seconds": score_seconds, "score_meta": {k: v.meta for k, v in scores.items()},
           "machine": machine_info(), "rows": rows, "summary": summarize(rows)}
    D.write_json_atomic(out, doc)
    print(f"wrote {out}", file=sys.stderr)
    for s in doc["summary"]:
        print(f"{s['scorer']:>10} {s['strategy']:>6} rate {s['rate']:.2f} distill={s['distill']!s:5} "
              f"acc {s['mean']:.4f} ± {s['std']:.4f} (n={s['n']})")


if __name__ == "__main__":
    main()
