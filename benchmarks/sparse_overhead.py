"""Training-step overhead of training-time sparsity → ``benchmarks/results/sparse_overhead.json``.

For every registered schedule (``secateurs.schedules.methods()``), a zoo model is trained for ``--steps``
optimizer steps twice from the same initial weights and the same batches: dense (plain ``model``) and with the
method (its masks, ``pruner.step()`` after every optimizer step, the mask updates at the method's own
frequency from ``from_budget(total_steps=--steps)``).  The two runs are interleaved in chunks of ``--chunk``
steps so machine noise hits both alike; each step (forward, backward, ``optimizer.step()``, ``pruner.step()``)
is timed with the thread's CPU time on one thread.  Reported: the mean step time of each and their ratio over
this short run (its mask updates come every ``max(10, steps/100)`` steps, far more often than in a real run);
the steady-state ratio (median of the second half's steps without an update: the masks' own cost, plus ISS-P's
per-step shrink and PDP's per-forward soft mask, which are part of those methods); the cost of one mask update;
and the ratio amortized at the references' update frequency (every 100 steps), which the goal (≤ 1.15×) is
checked against.

    python benchmarks/sparse_overhead.py [--models resnet20 lenet300] [--methods gmp rigl ...] [--steps 400]

Re-running some models/methods keeps the other rows of the JSON.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_info  # noqa: E402

from secateurs.io import atomic_write_text  # noqa: E402
from secateurs.registry import get  # noqa: E402
from secateurs.schedules import methods  # noqa: E402
from secateurs.zoo import build_model, calibration_batches, load_dataset, recipe_for  # noqa: E402

OUT = Path(__file__).parent / "results" / "sparse_overhead.json"
GOAL = 1.15
REFERENCE_FREQUENCY = 100  # RigL/SET/GraNet references and TF's GMP update masks every 100 steps


def _optimizer(model: nn.Module, recipe: dict) -> torch.optim.Optimizer:
    if recipe["optimizer"] == "adam":
        return torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    return torch.optim.SGD(model.parameters(), lr=recipe["lr"], momentum=recipe["momentum"],
                           weight_decay=recipe["weight_decay"])


def measure(model_name: str, method: str, steps: int, chunk: int, sparsity: float, seed: int = 0) -> dict:
    data = load_dataset("digits")
    recipe = recipe_for(model_name)
    loader, _ = data.loaders(batch_size=recipe["batch_size"], seed=seed)
    batches = [b for _, b in zip(range(steps), _cycle(loader))]
    torch.manual_seed(seed)
    dense = build_model(model_name)
    sparse = copy.deepcopy(dense)
    pruner = get("schedule", method).from_budget(sparse, sparsity=sparsity, total_steps=steps,
                                                 data=calibration_batches(data, seed=seed), seed=seed)
    runs = {"dense": (dense, _optimizer(dense, recipe), None), "sparse": (sparse, _optimizer(sparse, recipe), pruner)}
    pruner.attach_optimizer(runs["sparse"][1])
    loss_fn = nn.CrossEntropyLoss()
    times: dict[str, list[float]] = {"dense": [], "sparse": []}
    updated: list[bool] = []  # per sparse step: did the pruner change its masks on it
    for start in range(0, steps, chunk):
        for name in (("dense", "sparse") if (start // chunk) % 2 == 0 else ("sparse", "dense")):
            model, opt, pr = runs[name]
            model.train()
            for x, y in batches[start:start + chunk]:
                t0 = time.thread_time_ns()
                opt.zero_grad(set_to_none=True)
                loss_fn(model(x), y).backward()
                opt.step()
                if pr is not None:
                    n = len(pr.history)
                    pr.step()
                times[name].append((time.thread_time_ns() - t0) / 1e9)
                if pr is not None:
                    updated.append(len(pr.history) > n)
    pruner.finish()
    mean = {k: sum(v) / len(v) for k, v in times.items()}
    # steady state: the second half of the run (masks established), steps without a mask update
    half = steps // 2
    steady = statistics.median(t for t, u in zip(times["sparse"][half:], updated[half:]) if not u)
    dense_med = statistics.median(times["dense"][half:])
    upd = [t for t, u in zip(times["sparse"], updated) if u]
    update_cost = max(0.0, statistics.fmean(upd) - steady) if upd else 0.0
    every = pruner_frequency(pruner)
    amortized = (steady + (update_cost / REFERENCE_FREQUENCY if every and every > 1 else 0.0)) / dense_med
    return {"model": model_name, "method": method, "steps": steps, "sparsity": sparsity,
            "updates": len(pruner.history), "update_every": every, "final_sparsity": pruner.sparsity(),
            "dense_step_s": mean["dense"], "sparse_step_s": mean["sparse"], "ratio": mean["sparse"] / mean["dense"],
            "steady_ratio": steady / dense_med, "update_cost_s": update_cost,
            "amortized_ratio_at_reference_frequency": amortized,
            "meets_goal": amortized <= GOAL}


def pruner_frequency(pruner) -> int | None:
    """Steps between mask updates as configured (None: a one-shot method)."""
    return getattr(pruner, "frequency", None)


def _cycle(loader):
    while True:
        yield from loader


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet20", "lenet300"])
    ap.add_argument("--methods", nargs="+", default=None)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--chunk", type=int, default=20)
    ap.add_argument("--sparsity", type=float, default=0.9)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for model_name in args.models:
        for method in args.methods or methods():
            row = measure(model_name, method, args.steps, args.chunk, args.sparsity)
            print(f"{model_name:9s} {method:11s} dense {row['dense_step_s'] * 1e3:7.2f} ms  sparse "
                  f"{row['sparse_step_s'] * 1e3:7.2f} ms  ratio {row['ratio']:.3f}  steady {row['steady_ratio']:.3f}  "
                  f"amortized@100 {row['amortized_ratio_at_reference_frequency']:.3f}  updates {row['updates']}",
                  flush=True)
            rows.append(row)
    old = json.loads(OUT.read_text()).get("runs", []) if OUT.exists() else []  # a partial re-run keeps other rows
    done = {(r["model"], r["method"]) for r in rows}
    rows = [r for r in old if (r["model"], r["method"]) not in done and "steady_ratio" in r] + rows
    doc = {"machine": machine_info(), "settings": vars(args) | {"goal_ratio": GOAL, "clock": "time.thread_time_ns",
                                                                 "threads": 1}, "runs": rows}
    atomic_write_text(OUT, json.dumps(doc, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
