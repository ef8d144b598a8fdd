"""Quality of every criterion x allocation x sparsity on digits: accuracy right after pruning and after 2 epochs
of fine-tuning, 3 seeds (seed s trains the dense model with seed s and seeds the pruning and fine-tuning).

    python benchmarks/quality.py [--models lenet300 resnet20] [--seeds 0 1 2]

Writes benchmarks/results/quality.json incrementally (re-running resumes; delete the file to start over).
Rows with allocation "global+mt" are global magnitude with the minimum-keep floor (Gupta et al. 2022, MT =
0.05% of all targeted weights, their default).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_info  # noqa: E402

from secateurs.core.targets import resolve_targets  # noqa: E402
from secateurs.experiment import Experiment, load_model, run  # noqa: E402

CRITERIA = ["magnitude", "random", "snip", "grasp", "synflow", "taylor"]
ALLOCATIONS = ["global", "uniform", "erk"]
SPARSITIES = [0.5, 0.8, 0.9, 0.95, 0.98]
OUT = Path(__file__).parent / "results" / "quality.json"


def key(r: dict) -> tuple:
    s = r["settings"]
    return (s["model"], s["method"], r["allocation"], s["sparsity"], s["seed"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["lenet300", "resnet20"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--finetune-epochs", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)  # tiny models: one thread is fastest and immune to a busy neighbour
    doc = json.loads(OUT.read_text()) if OUT.exists() else {"runs": []}
    done = {key(r) for r in doc["runs"]}
    start = time.time()
    for model in args.models:
        for seed in args.seeds:
            base = load_model(model, "digits", seed)
            n = sum(t.numel for t in resolve_targets(base))
            grid = [(c, a) for c in CRITERIA for a in ALLOCATIONS] + [("magnitude", "global+mt")]
            for c, a in grid:
                for s in SPARSITIES:
                    if (model, c, a, s, seed) in done:
                        continue
                    mt = int(0.0005 * n) if a == "global+mt" else None
                    exp = Experiment(model, "digits", c, a.split("+")[0], "unstructured", s, mt, seed,
                                     args.finetune_epochs)
                    outcome, _ = run(exp, base)
                    rec = {**outcome.to_dict(), "allocation": a}
                    rec.pop("layers")
                    rec["min_layer_density"] = min(1 - l["sparsity"] for l in outcome.layers)
                    doc["runs"].append(rec)
                    done.add(key(rec))
                    print(f"{model} seed{seed} {c:9s} {a:10s} {s:.2f}: {outcome.pruned['accuracy']:.3f} -> "
                          f"{outcome.finetuned['accuracy']:.3f}", flush=True)
                    doc["machine"] = machine_info()
                    doc["finetune_epochs"] = args.finetune_epochs
                    tmp = OUT.with_suffix(".tmp")
                    tmp.write_text(json.dumps(doc, indent=1))
                    os.replace(tmp, OUT)
    print(f"done in {time.time() - start:.0f}s")


if __name__ == "__main__":
    main()
