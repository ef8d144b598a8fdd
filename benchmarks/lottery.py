"""Lottery tickets on digits: ticket vs random re-initialisation vs random mask, per density, 3 seeds.

    python benchmarks/lottery.py            # LeNet-300-100 and ResNet-20, seeds 0 1 2 (~13 min on an idle core)
    python benchmarks/lottery.py --quick    # one seed, 3 levels, few epochs: a smoke check, writes nothing

Settings follow the paper where it has a rule for the architecture (Frankle & Carbin 2019, §2 and §4):

- LeNet-300-100: layer-wise pruning, 20% of each hidden layer and 10% of the output layer per level, rewound to
  initialisation (k = 0).
- ResNet-20: global pruning, 20% of the convolution weights per level, the fc layer not pruned; late rewinding
  (Frankle et al. 2019/2020: deeper networks trained at learning rate 0.1 need it) to 3% of training.

Training is the zoo recipe (SGD momentum 0.9, cosine decay, batch 64; lr 0.05 LeNet, 0.1 ResNet) with fewer
epochs for ResNet-20 to fit the time budget.  Accuracy is on the 450 held-out test images at the end of each run.
"Keeps the dense accuracy to density d" = the lowest density at which the 3-seed mean accuracy is still within
``--tolerance`` (default 1 point) of the dense mean (``lowest_density_within_tolerance``), and the lowest density
reached before the first level that falls out of it (``within_tolerance_at_every_level_down_to``).  Writes ``benchmarks/results/lottery.json`` after every
(model, seed), resuming from it (delete the file to start over).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_info  # noqa: E402

from secateurs.schedules.lottery import run_lottery  # noqa: E402

OUT = Path(__file__).parent / "results" / "lottery.json"
STEPS_PER_EPOCH = 22  # digits: 1,347 training images, batch 64
CONFIGS = {
    "lenet300": {"rounds": 16, "epochs": 20, "prune_rate": 0.2, "output_rate": 0.1, "allocation": "uniform",
                 "ignore": None, "rewind_fraction": 0.0},
    "resnet20": {"rounds": 10, "epochs": 12, "prune_rate": 0.2, "output_rate": None, "allocation": "global",
                 "ignore": ["fc"], "rewind_fraction": 0.03},
}
ARMS = ("ticket_accuracy", "reinit_accuracy", "random_mask_accuracy")


def config(model: str, quick: bool) -> dict:
    c = dict(CONFIGS[model])
    if quick:
        c.update(rounds=3, epochs=3 if model == "lenet300" else 2)
    c["rewind_step"] = round(c.pop("rewind_fraction") * c["epochs"] * STEPS_PER_EPOCH)
    return c


def summarize(runs: dict[str, list[dict]], tolerance: float) -> dict:
    """Per level: mean and standard deviation over seeds of each arm; and how far down each arm holds."""
    seeds = sorted(runs)
    levels = min(len(runs[s]) for s in seeds)
    table = []
    for lvl in range(levels):
        rows = [runs[s][lvl] for s in seeds]
        entry = {"round": lvl, "density": statistics.fmean(r["density"] for r in rows)}
        for arm in ARMS:
            vals = [r[arm] for r in rows if r[arm] is not None]
            entry[arm] = statistics.fmean(vals) if vals else None
            entry[arm.replace("accuracy", "std")] = statistics.pstdev(vals) if len(vals) > 1 else None
        table.append(entry)
    dense = table[0]["ticket_accuracy"]
    holds, unbroken = {}, {}
    for arm in ARMS:
        ok = [e["density"] for e in table[1:] if e[arm] is not None and e[arm] >= dense - tolerance]
        holds[arm.replace("_accuracy", "")] = min(ok) if ok else None
        last = None  # lowest density reached before the first level that falls out of tolerance
        for e in table[1:]:
            if e[arm] is None or e[arm] < dense - tolerance:
                break
            last = e["density"]
        unbroken[arm.replace("_accuracy", "")] = last
    lowest = table[-1]
    return {
        "per_round": table,
        "dense_accuracy": dense,
        "tolerance": tolerance,
        "lowest_density_within_tolerance": holds,
        "within_tolerance_at_every_level_down_to": unbroken,
        "at_lowest_density": {arm: lowest[arm] for arm in ("density",) + ARMS},
        "ticket_beats_reinit_rounds": sum(e["ticket_accuracy"] > e["reinit_accuracy"] for e in table[1:]),
        "ticket_beats_random_mask_rounds": sum(e["ticket_accuracy"] > e["random_mask_accuracy"] for e in table[1:]),
        "pruned_rounds": len(table) - 1,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--tolerance", type=float, default=0.01, help="accuracy drop that still counts as 'kept'")
    ap.add_argument("--quick", action="store_true", help="seed 0, 3 levels, 2-3 epochs; print, write nothing")
    args = ap.parse_args()
    torch.set_num_threads(1)  # tiny models: one thread is fastest and immune to a busy neighbour
    seeds = [0] if args.quick else args.seeds
    doc = json.loads(OUT.read_text()) if OUT.exists() and not args.quick else {"experiments": {}}
    start = time.time()
    for model in args.models:
        cfg = config(model, args.quick)
        exp = doc["experiments"].setdefault(model, {"config": cfg, "runs": {}, "seconds": {}})
        if exp["config"] != cfg:  # settings changed: the old runs are not comparable
            exp.update(config=cfg, runs={}, seconds={})
        for seed in seeds:
            if str(seed) in exp["runs"]:
                continue
            t0, c0 = time.time(), time.process_time()
            res = run_lottery(model, "digits", seed=seed, num_threads=1, progress=True, **cfg)
            exp["runs"][str(seed)] = [r.to_dict() for r in res.rounds]
            exp["seconds"][str(seed)] = round(time.time() - t0, 1)
            # CPU time: what the run costs on an idle core (wall time on a shared machine is mostly waiting)
            exp.setdefault("cpu_seconds", {})[str(seed)] = round(time.process_time() - c0, 1)
            exp["summary"] = summarize(exp["runs"], args.tolerance)
            print(f"{model} seed {seed}: {exp['seconds'][str(seed)]:.0f} s", file=sys.stderr)
            doc["machine"] = machine_info()
            if not args.quick:
                OUT.parent.mkdir(parents=True, exist_ok=True)
                tmp = OUT.with_suffix(".tmp")
                tmp.write_text(json.dumps(doc, indent=1))
                tmp.replace(OUT)
    doc["seconds_this_invocation"] = round(time.time() - start, 1)
    if not args.quick:
        OUT.write_text(json.dumps(doc, indent=1))
    for model, exp in doc["experiments"].items():
        s = exp.get("summary")
        if not s:
            continue
        print(f"\n{model} (dense {s['dense_accuracy']:.4f}; {len(exp['runs'])} seeds)")
        print(f"{'round':>5} {'density':>8} {'ticket':>8} {'reinit':>8} {'rand mask':>9}")
        for e in s["per_round"]:
            cells = [f"{e[a]:8.4f}" if e[a] is not None else f"{'-':>8}" for a in ARMS]
            print(f"{e['round']:>5} {e['density']:8.4f} {cells[0]} {cells[1]} {cells[2]:>9}")
        print(f"lowest density within {s['tolerance']:.3f} of dense: {s['lowest_density_within_tolerance']}")


if __name__ == "__main__":
    main()
