"""InfoBatch (Qin et al., ICLR 2024) vs random dynamic skipping at the same budget vs full data.

    python benchmarks/infobatch.py [--seeds 3] [--epochs 30] [--ratio 0.5] [--anneal 0.125]

Tasks: digits with LeNet-5, and the Shakespeare plays task (MiniLM embeddings, LeNet-300-100 with
``in_features=384``); both trained by ``secateurs.zoo.fit`` (SGD, momentum 0.9, cosine decay, batch 64, lr 0.05) on
one thread.  Per seed: (1) full data; (2) InfoBatch (``ratio``, ``anneal``); (3) the random control: the same number
of examples skipped in every epoch as that seed's InfoBatch run (``skip_schedule=ib.skipped_per_epoch``), drawn
uniformly.  Reported per run: test accuracy, examples visited (forward+backward passes) and the fraction saved
against full data, wall time; per task: mean and standard deviation over seeds.  The paper reports ~40% of the
training cost saved with no accuracy loss on CIFAR-10/100 and ImageNet (r = 0.5, δ = 0.875).
Results: ``benchmarks/results/infobatch.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info  # noqa: E402


def summarize(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--anneal", type=float, default=0.125)
    ap.add_argument("--tasks", default="digits,shakespeare-plays")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "infobatch.json"))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from secateurs import zoo
    from secateurs.data.infobatch import InfoBatch
    from secateurs.zoo import plays  # noqa: F401  (registers the data set until the zoo imports it)

    specs = {"digits": ("lenet5", {}), "shakespeare-plays": ("lenet300", {"in_features": 384})}
    report: dict = {"benchmark": "InfoBatch vs random dynamic skipping vs full data", "epochs": args.epochs,
                    "ratio": args.ratio, "anneal": args.anneal, "batch_size": 64, "lr": 0.05, "tasks": {}}
    for task in args.tasks.split(","):
        data = zoo.load_dataset(task)
        model_name, kw = specs[task]
        n = len(data.train)
        runs = []
        for seed in range(args.seeds):
            _, test_loader = data.loaders(64, seed)
            row = {"seed": seed}
            skip_schedule = None
            for mode in ("full", "infobatch", "random"):
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    model = zoo.build_model(model_name, num_classes=data.num_classes, **kw)
                t0 = time.perf_counter()
                if mode == "full":
                    loader = data.loaders(64, seed)[0]
                    zoo.fit(model, loader, args.epochs, lr=0.05, seed=seed, num_threads=1)
                    visited = args.epochs * n
                else:
                    ib = InfoBatch(data.train, args.epochs, args.ratio, args.anneal, seed=seed,
                                   mode="infobatch" if mode == "infobatch" else "random",
                                   skip_schedule=skip_schedule if mode == "random" else None)
                    zoo.fit(model, ib.loader(64), args.epochs, lr=0.05, seed=seed, num_threads=1, loss_fn=ib.loss)
                    visited = args.epochs * n - ib.total_skipped
                    if mode == "infobatch":
                        skip_schedule = ib.skipped_per_epoch
                wall = time.perf_counter() - t0
                acc = zoo.evaluate(model, test_loader)["accuracy"]
                row[mode] = {"accuracy": acc, "examples_visited": visited,
                             "saved_fraction": 1 - visited / (args.epochs * n), "wall_seconds": round(wall, 2)}
                print(f"{task} seed {seed} {mode}: acc {acc:.4f} saved {row[mode]['saved_fraction']:.3f} "
                      f"({wall:.1f} s)", flush=True)
            runs.append(row)
        report["tasks"][task] = {
            "model": model_name, "train_examples": n, "test_examples": len(data.test), "runs": runs,
            "summary": {mode: {"accuracy": summarize([r[mode]["accuracy"] for r in runs]),
                               "saved_fraction": summarize([r[mode]["saved_fraction"] for r in runs]),
                               "wall_seconds": summarize([r[mode]["wall_seconds"] for r in runs])}
                        for mode in ("full", "infobatch", "random")},
        }
    report["paper_anchor"] = "Qin et al. 2024: ~40% of the training cost saved, no accuracy loss (CIFAR-10/100, ImageNet)"
    report["command"] = " ".join(sys.argv)
    report["machine"] = machine_info()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(tmp, out)
    print(json.dumps({t: v["summary"] for t, v in report["tasks"].items()}, indent=1))


if __name__ == "__main__":
    main()
