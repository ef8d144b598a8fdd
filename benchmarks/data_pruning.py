"""Data pruning on digits and the Shakespeare plays task: every scorer x {hard, random, ccs} x pruning rates 30-90 %,
test accuracy of a model trained from scratch on the kept subset (mean and spread over 5 seeds), the full-data
accuracy, distillation at 70/90 %, and a computed check of the CCS paper's claim.

    OMP_NUM_THREADS=1 python benchmarks/data_pruning.py [--dataset digits|shakespeare-plays ...] [--quick] [--seeds 5]

Data sets and models (chosen so that each data set's grid runs in <= 30 min on one thread, measured):

* ``digits`` (1,347 train / 450 test 8x8 images, 10 classes): LeNet-5 with the zoo recipe (SGD 0.05, momentum 0.9,
  batch 64) but a 30-epoch full-data budget instead of the recipe's 60: one subset training took 1.9 s at 30 epochs
  against 4.4 s at 60, which put the 5-seed grid at ~40 min; the full-data accuracy is the same (0.973, seed 0).
  Scorers: random, el2n, grand, forgetting, aum, entropy, and ssp on the penultimate features of the full-data
  LeNet-5 (supervised features: not the paper's self-supervised embedding).
* ``shakespeare-plays`` (1,788 train / 597 test MiniLM sentence embeddings of speeches, 384-d, 4 plays): the zoo
  MLP LeNet-300-100 (``build_for("lenet300", data)``), zoo recipe with a 40-epoch budget instead of 20 (full-data
  accuracy 0.506 at 20 epochs, 0.533 at 40, 0.546 at 80; 1.5 s per training at 40).  Scorers: the digits ones plus
  ssp and dbp on the MiniLM embeddings themselves; dbp is also run with its own selector (per-cluster quotas).

Protocol.  Scores are computed once (seed 0) with the benchmark's epoch budget E as the run length: EL2N at 10 % of
E averaged over 10 seeds, GraNd at initialisation over 10 seeds, forgetting / AUM / entropy over one E-epoch run;
ssp/dbp by k-means (k = round(sqrt(n/2))).  For every training seed s the selection uses seed s (random and CCS
draw; CCS's beta is default_beta(rate)) and the student is initialised and trained with seed s for the same number
of optimizer steps as the E-epoch full-data run (the CCS protocol): epochs = round(E * ceil(n/64) / (kept // 64)),
full batches only.  The ``random`` strategy ignores the scores, so it is one row per rate and seed (scorer "-"),
shared by all scorers; hard/ccs on the random scorer would also be random subsets and are not run.
Distillation: the teacher is the model trained on the full data for E epochs (seed 0, zoo cache), weight 0.5,
temperature 1.  ``--quick``: rates 50/90 %, 1 seed, 2 scoring seeds.

Claim check (the CCS paper, Zheng et al. 2023: "keeping only the hardest examples collapses at high pruning rates
while CCS stays at or above random"), per data set, rate, scorer, with and without distillation, from the seed
means and their standard errors: ``hard_below_random`` when mean(hard) - mean(random) < -2 SE of the difference,
``ccs_at_or_above_random`` when mean(ccs) - mean(random) >= -2 SE; ``holds`` when both.

Writes benchmarks/results/data_pruning.json (``--quick``: data_pruning_quick.json) atomically, after every seed;
the entry of a data set not being run is kept as it was.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_info  # noqa: E402

import secateurs.data as D  # noqa: E402
from secateurs.zoo import load_dataset, pretrained, recipe_for  # noqa: E402

TRAINING_SCORERS = ["el2n", "grand", "forgetting", "aum", "entropy"]
DATASETS: dict[str, dict[str, Any]] = {
    "digits": {"model": "lenet5", "epochs": 30, "embedding": "penultimate",
               "scorers": ["random", *TRAINING_SCORERS, "ssp"]},
    "shakespeare-plays": {"model": "lenet300", "epochs": 40, "embedding": "inputs (MiniLM)",
                          "scorers": ["random", *TRAINING_SCORERS, "ssp", "dbp"]},
}
EXTRA_STRATEGIES = {"dbp": ["dbp"]}  # scorer -> strategies run besides hard and ccs
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


def _versus(a: dict, b: dict) -> dict[str, float]:
    """mean(a) - mean(b) and the standard error of that difference (from the seed spreads)."""
    se = math.sqrt(a["std"] ** 2 / a["n"] + b["std"] ** 2 / b["n"])
    return {"diff_pp": 100 * (a["mean"] - b["mean"]), "se_pp": 100 * se}


def claim_check(summary: list[dict]) -> list[dict]:
    """Per rate, distillation flag and scorer: is hard below random, is CCS at or above random (2-SE rule)?"""
    by = {(s["scorer"], s["strategy"], s["rate"], s["distill"]): s for s in summary}
    out = []
    for (scorer, strategy, rate, distill), hard in sorted(by.items(), key=lambda kv: (kv[0][3], kv[0][2], kv[0][0])):
        if strategy != "hard" or (scorer, "ccs", rate, distill) not in by or ("-", "random", rate, distill) not in by:
            continue
        rand, ccs = by[("-", "random", rate, distill)], by[(scorer, "ccs", rate, distill)]
        h, c = _versus(hard, rand), _versus(ccs, rand)
        hard_below = h["diff_pp"] < -2 * h["se_pp"]
        ccs_ok = c["diff_pp"] >= -2 * c["se_pp"]
        out.append({"scorer": scorer, "rate": rate, "distill": distill, "random": rand["mean"], "hard": hard["mean"],
                    "ccs": ccs["mean"], "hard_minus_random_pp": h["diff_pp"], "hard_se_pp": h["se_pp"],
                    "ccs_minus_random_pp": c["diff_pp"], "ccs_se_pp": c["se_pp"], "hard_below_random": hard_below,
                    "ccs_at_or_above_random": ccs_ok, "holds": hard_below and ccs_ok})
    return out


def claim_by_rate(checks: list[dict]) -> list[dict]:
    """How many scorers satisfy each half of the claim at every rate (the claim is about high rates)."""
    groups: dict[tuple, list[dict]] = {}
    for c in checks:
        groups.setdefault((c["distill"], c["rate"]), []).append(c)
    return [{"distill": d, "rate": r, "scorers": len(cs),
             "hard_below_random": sum(c["hard_below_random"] for c in cs),
             "ccs_at_or_above_random": sum(c["ccs_at_or_above_random"] for c in cs),
             "holds": sum(c["holds"] for c in cs), "holds_for": [c["scorer"] for c in cs if c["holds"]],
             "fails_for": [c["scorer"] for c in cs if not c["holds"]]}
            for (d, r), cs in sorted(groups.items())]


def matched_epochs(n: int, kept: int, full_epochs: int, batch_size: int) -> int:
    """Epochs on ``kept`` examples (full batches only, as train_subset) for the optimizer steps of ``full_epochs``
    epochs on all ``n`` (the CCS protocol's fixed iteration budget)."""
    bs = min(batch_size, kept)
    return max(1, round(full_epochs * math.ceil(n / batch_size) / (kept // bs)))


def compute_scores(name: str, data: Any, cfg: dict, teacher: torch.nn.Module, score_seeds: int
                   ) -> tuple[dict[str, D.Scores], dict[str, float]]:
    scores, seconds = {}, {}
    for scorer in cfg["scorers"]:
        t = time.perf_counter()
        opts: dict[str, Any] = {}
        if scorer in TRAINING_SCORERS:
            opts = {"model": cfg["model"], "total_epochs": cfg["epochs"]}
            if scorer in ("el2n", "grand"):
                opts["seeds"] = score_seeds
        elif scorer in ("ssp", "dbp") and cfg["embedding"] == "penultimate":
            opts["encoder"] = teacher  # the full-data model's penultimate features
        scores[scorer] = D.score(scorer, data, **opts)
        seconds[scorer] = time.perf_counter() - t
        print(f"[{name}] scored {scorer} in {seconds[scorer]:.1f} s", file=sys.stderr, flush=True)
    return scores, seconds


def load_results(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) and isinstance(doc.get("datasets"), dict) else {}


def run_dataset(name: str, args: argparse.Namespace, out: Path) -> None:
    cfg = DATASETS[name]
    rates = args.rates or ([0.5, 0.9] if args.quick else RATES)
    seeds = list(range(1 if args.quick else args.seeds))
    distill_rates = [0.9] if args.quick else DISTILL_RATES
    score_seeds = 2 if args.quick else 10
    data = load_dataset(name)
    labels = data.train.tensors[1].numpy()
    n = len(labels)
    batch = recipe_for(cfg["model"])["batch_size"]
    start = time.perf_counter()
    teacher = pretrained(cfg["model"], name, seed=0, epochs=cfg["epochs"]).eval()
    scores, score_seconds = compute_scores(name, data, cfg, teacher, score_seeds)
    ranked_scorers = [s for s in cfg["scorers"] if s != "random"]
    rows: list[dict] = []

    def train(scorer: str, strategy: str, rate: float, seed: int, distill: bool) -> None:
        keep = None if rate == 0 else D.select(scores[scorer if scorer != "-" else "random"], rate, strategy,
                                               labels=labels, seed=seed)
        kept = n if keep is None else len(keep)
        t = time.perf_counter()
        res = D.train_subset(data, keep, model=cfg["model"], seed=seed, epochs=matched_epochs(n, kept, cfg["epochs"],
                             batch), distill=distill, teacher=teacher if distill else None)
        rows.append({"scorer": scorer, "strategy": strategy, "rate": rate, "seed": seed, "distill": distill,
                     "accuracy": res["accuracy"], "loss": res["loss"], "kept": res["kept"], "epochs": res["epochs"],
                     "steps": res["steps"], "seconds": time.perf_counter() - t})
        print(f"[{name}] {scorer:>10} {strategy:>6} {rate:.2f} seed {seed} distill={distill}: {res['accuracy']:.4f}",
              file=sys.stderr, flush=True)

    def grid(rate: float, seed: int, distill: bool) -> None:
        train("-", "random", rate, seed, distill)
        for scorer in ranked_scorers:
            for strategy in ("hard", "ccs", *EXTRA_STRATEGIES.get(scorer, [])):
                train(scorer, strategy, rate, seed, distill)

    for i, seed in enumerate(seeds):
        train("-", "full", 0.0, seed, False)
        for rate in rates:
            grid(rate, seed, False)
        for rate in distill_rates:
            grid(rate, seed, True)
        summary = summarize(rows)
        checks = claim_check(summary)
        train_s = [r["seconds"] for r in rows]
        entry = {
            "dataset": name, "model": cfg["model"], "epochs": cfg["epochs"], "batch_size": batch,
            "recipe": {k: v for k, v in recipe_for(cfg["model"], name, cfg["epochs"]).items() if k != "format"},
            "n_train": n, "n_test": len(data.test), "num_classes": data.num_classes, "embedding": cfg["embedding"],
            "scorers": cfg["scorers"], "rates": rates, "seeds": seeds[: i + 1], "distill_rates": distill_rates,
            "complete": i == len(seeds) - 1, "teacher_epochs": cfg["epochs"],
            "ccs_beta": {str(r): D.default_beta(r) for r in rates},
            "timing": {"score_seconds": score_seconds, "trainings": len(rows),
                       "train_seconds_mean": float(np.mean(train_s)), "train_seconds_total": float(np.sum(train_s)),
                       "wall_seconds": time.perf_counter() - start},
            "score_meta": {k: {m: v for m, v in s.meta.items() if m not in ("clusters", "complexity", "sizes",
                                                                            "d_intra", "d_inter")}
                           for k, s in scores.items()},
            "claim": {"statement": "keeping only the hardest collapses at high rates while CCS stays at or above "
                                   "random (Zheng et al. 2023); 2-SE rule, see protocol",
                      "by_rate": claim_by_rate(checks), "checks": checks},
            "summary": summary, "rows": rows,
        }
        doc = load_results(out) or {"benchmark": "data_pruning", "datasets": {}}
        doc.update(protocol=__doc__.split("Protocol.")[1].split("Writes")[0].strip(), quick=args.quick,
                   anchors={"ccs_paper": "CCS +7.04 pp over random at 90 % pruning on CIFAR-10 (Zheng et al. 2023)"})
        doc["datasets"][name] = {**entry, "machine": machine_info()}
        D.write_json_atomic(out, doc)
        print(f"[{name}] seed {seed} done, wrote {out} ({time.perf_counter() - start:.0f} s so far)", file=sys.stderr,
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", nargs="+", choices=sorted(DATASETS), default=list(DATASETS))
    ap.add_argument("--quick", action="store_true", help="rates 50/90 %%, 1 seed: a smoke run of the whole pipeline")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rates", type=float, nargs="+", default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = args.out or RESULTS / ("data_pruning_quick.json" if args.quick else "data_pruning.json")
    for name in args.dataset:
        run_dataset(name, args, out)
    doc = load_results(out)
    for name in args.dataset:
        for c in doc["datasets"][name]["claim"]["by_rate"]:
            print(f"{name:>18} rate {c['rate']:.2f} distill={c['distill']!s:5} claim holds for {c['holds']}/"
                  f"{c['scorers']} scorers (hard<random {c['hard_below_random']}, ccs>=random "
                  f"{c['ccs_at_or_above_random']})")


if __name__ == "__main__":
    main()
