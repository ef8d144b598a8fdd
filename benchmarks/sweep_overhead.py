"""Sweep overhead: the same 24-cell sweep of tiny runs on the embedded local Ray versus a plain loop.

Cells: lenet300 on digits, method magnitude / random / snip x sparsity 0.3 / 0.5 / 0.7 / 0.9 x 2 seeds, no
fine-tuning by default (``--finetune-epochs 1`` for a heavier cell).  Each backend runs in a fresh interpreter
into a fresh runs directory (the dense model comes from the zoo's disk cache in both); the time is the
``sweep()`` call: for Ray it includes ``ray.init`` (``num_cpus=2``, reported separately as ``init_seconds``),
starting the workers and their imports.  Workers are reused across cells (one torch import per worker, the dense
model cached per worker).  Goal (issue 18): Ray <= 1.2x the loop's wall time on 2 cores.

    .venv/bin/python benchmarks/sweep_overhead.py [--finetune-epochs 0] [--repeats 1]
    -> benchmarks/results/sweep_overhead.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_info  # noqa: E402

OUT = Path(__file__).parent / "results" / "sweep_overhead.json"
GRID = {"method": ["magnitude", "random", "snip"], "sparsity": [0.3, 0.5, 0.7, 0.9]}
SEEDS = 2


def one(backend: str, epochs: int) -> dict:
    """Run the sweep once in this interpreter (called in a fresh subprocess)."""
    from secateurs import Recipe
    from secateurs.recipes.sweep import sweep

    with tempfile.TemporaryDirectory() as tmp:
        base = Recipe(model="lenet300", data="digits", finetune={"epochs": epochs})
        res = sweep(base, GRID, Path(tmp) / "runs", seeds=SEEDS, backend=backend, num_cpus=2, log=None)
        assert res.ran == 24 and not res.failed, res.failed
        cell = [r["seconds"] for r in res.rows]
        return {"backend": backend, "seconds": res.seconds, "init_seconds": res.init_seconds,
                "cells": len(res.rows), "cell_seconds_sum": sum(cell),
                "accuracy": {r["key"]: r["accuracy"] for r in res.rows}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--finetune-epochs", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--one", choices=["ray", "local"])
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.finetune_epochs)))
        return
    runs = []
    for _ in range(args.repeats):
        for backend in ("local", "ray"):
            p = subprocess.run([sys.executable, __file__, "--one", backend, "--finetune-epochs",
                                str(args.finetune_epochs)], capture_output=True, text=True, check=True)
            runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
            print(f"{backend}: {runs[-1]['seconds']:.1f}s (init {runs[-1]['init_seconds']:.1f}s)", file=sys.stderr)
    loop = min(r["seconds"] for r in runs if r["backend"] == "local")
    ray = min(r["seconds"] for r in runs if r["backend"] == "ray")
    ray_init = min(r["init_seconds"] for r in runs if r["backend"] == "ray")
    same = all(r["accuracy"] == runs[0]["accuracy"] for r in runs)
    key = f"finetune_epochs={args.finetune_epochs}"
    doc = json.loads(OUT.read_text()) if OUT.exists() else {}
    doc.setdefault("configs", {})[key] = {
        "cells": 24, "grid": GRID, "seeds": SEEDS, "num_cpus": 2, "loop_seconds": loop, "ray_seconds": ray,
        "ray_init_seconds": ray_init, "ratio": ray / loop, "ratio_without_init": (ray - ray_init) / loop,
        "goal_ratio": 1.2, "meets_goal": ray / loop <= 1.2, "same_results": same,
        "runs": [{k: v for k, v in r.items() if k != "accuracy"} for r in runs]}
    doc["machine"] = machine_info()
    from secateurs.io import atomic_write_json

    atomic_write_json(OUT, doc)
    c = doc["configs"][key]
    print(f"{key}: loop {loop:.1f}s, ray {ray:.1f}s (init {ray_init:.1f}s): {c['ratio']:.2f}x "
          f"({c['ratio_without_init']:.2f}x without init), same results: {same}")


if __name__ == "__main__":
    main()
