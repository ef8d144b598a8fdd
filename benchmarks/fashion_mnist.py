"""Fashion-MNIST benchmarks: weight pruning, sparse training, structured pruning and data pruning on 28x28 images
→ ``benchmarks/results/fashion_mnist.json``.

    OMP_NUM_THREADS=1 python benchmarks/fashion_mnist.py [--parts weights sparse_training structured data_pruning]

CPU budget: the whole script at its defaults must finish in <= 60 minutes on ONE thread (a cold zoo cache included:
the dense models are trained by the first run).  The measured wall and CPU seconds of every part and of the dense
trainings are in the JSON (``budget``).  To fit, everything after dense training uses a fixed 10,000-example
subset of the 60,000 training images (``subset``: the first 10,000 of a seed-0 permutation, registered as the
data set ``fashion-mnist-10k``), while every accuracy is measured on the full 10,000-image test split.

Models (trained once on the full 60,000 training images, then cached):

* ``convnet``: the zoo's small VGG-style CNN with its zoo recipe (``secateurs.zoo.pretrained("convnet",
  "fashion-mnist")``: 3 epochs of Adam, the demo's model).
* ``resnet20``: the zoo ResNet-20 (He et al. 2016) at width 4 (stages of 4/8/16 channels,
  ``build_for("resnet20", data, width=4)``): at the zoo's width 16 one epoch over the 10k subset took 72 s and one
  test pass 27 s on one thread, which puts the weight grid alone past the budget; width 4 has the convnet's MACs
  (2.0M per image).  2 epochs of SGD (lr 0.1, momentum 0.9, wd 5e-4, batch 128, cosine).
* ``vit``: the zoo ViT (Dosovitskiy et al. 2021) with 7x7 patches of the 28x28 image (16 patches + a class token,
  the zoo's 17 tokens), 3 epochs of AdamW (lr 1e-3, wd 0.05).  Kept only if it reaches >= 80% test accuracy in
  <= 8 minutes of training on one thread; otherwise a skipped entry with the measured numbers.

These two are trained here (``pretrained()`` builds a zoo model with its default constructor arguments, which for
ResNet-20 is width 16 and for the ViT the 8x8 digits geometry) and cached with ``secateurs.save`` next to the zoo
cache, under a hash of their recipe.

Parts (``--parts``; each row is written as soon as it is measured, and a re-run skips the rows already present):

1. ``weights``: ``secateurs.prune`` with criteria magnitude, random, snip, taylor (calibration: 10 examples per
   class in batches of 25, as ``secateurs.experiment``) x allocations uniform, global, erk x sparsities; test
   accuracy right after pruning and after fine-tuning for one pass over 5,000 examples of the subset (batch 64,
   78 steps; the model's optimizer at 0.3x its training learning rate, cosine to 0; masks kept).  The convnet gets
   sparsities 50/70/90/95%, ResNet-20 and the ViT 90% only (time).  One seed.
2. ``sparse_training``: the convnet trained from scratch on the subset to 90% sparsity by GMP, RigL and GraNet
   (``secateurs.schedules.train_sparse``, each method's ``from_budget`` defaults) for the same budget as the dense
   baseline (the zoo recipe, 4 epochs of the subset); lottery tickets (IMP, global magnitude, 3 rounds of 53.6%
   to exactly 90%, late rewinding to 3% of training) train once per round, so their row marks a 4x budget.
3. ``structured``: ``secateurs.structured.prune`` (uniform allocation) at 30/50/70% of the channels of every group,
   importance l2 and group Taylor (Molchanov et al. 2019, on the calibration batches), and Torch-Pruning's
   MetaPruner with group L2 (``benchmarks/structured.py``'s peer setup) when ``import torch_pruning`` works, on the
   convnet and ResNet-20: parameters, MACs (``count_macs``, batch 1), CPU latency (``structured.latency``: the
   pruned model and the dense one interleaved, batch 64, 1 thread, thread CPU time, median of 40 rounds),
   accuracy after pruning and after the fine-tuning of part 1.
4. ``data_pruning``: the subset is the full data (n = 10,000).  Scores: EL2N (Paul et al. 2021) after 1 epoch of a
   3-epoch run, averaged over 3 seeds, and forgetting (Toneva et al. 2019) over one 3-epoch run, both with the
   convnet; selections: random, hard (keep the highest scores) and CCS (Zheng et al. 2023, default beta) at pruning
   rates 70/80/90%; the convnet trained from scratch on each kept subset for the optimizer steps of 3 epochs on all
   10,000 (the CCS protocol, ``data_pruning.matched_epochs``), 2 seeds; full-data reference with the same budget.
   The claim check is ``benchmarks/data_pruning.py``'s (2-standard-error rule).
"""
from __future__ import annotations

import argparse
import copy
import functools
import hashlib
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_info  # noqa: E402
from data_pruning import claim_by_rate, claim_check, matched_epochs, summarize  # noqa: E402

import secateurs  # noqa: E402
import secateurs.data as D  # noqa: E402
from secateurs import structured  # noqa: E402
from secateurs.experiment import CALIBRATION_BATCH, load_model  # noqa: E402
from secateurs.io import atomic_write_json, read_metadata  # noqa: E402
from secateurs.schedules import run_lottery, train_sparse  # noqa: E402
from secateurs.zoo.fashion_mnist import SUBSET_SIZE, subset_indices as zoo_subset_indices  # noqa: E402
from secateurs.zoo import (ClassificationData, build_for, cache_path, calibration_batches, evaluate, fit,  # noqa: E402
                           load_dataset, pretrained, recipe_for)

OUT = Path(__file__).parent / "results" / "fashion_mnist.json"
PARTS = ["weights", "sparse_training", "structured", "data_pruning"]
BUDGET_S = 3600
SUBSET_NAME = "fashion-mnist-10k"  # registered by the zoo (secateurs.zoo.fashion_mnist)
EVAL_BATCH = 1000
FT_EXAMPLES, FT_BATCH, FT_LR_FACTOR = 5000, 64, 0.3
VIT_LIMIT_S, VIT_MIN_ACCURACY = 480.0, 0.80

# dense models trained here (convnet: the zoo's pretrained recipe); "build": build_for keywords
TRAINED: dict[str, dict[str, Any]] = {
    "resnet20": {"build": {"width": 4}, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
                 "batch_size": 128, "epochs": 2},
    "vit": {"build": {"image_size": 28, "patch_size": 7}, "optimizer": "adam", "lr": 1e-3, "momentum": 0.9,
            "weight_decay": 0.05, "batch_size": 128, "epochs": 3},
}
CRITERIA = ["magnitude", "random", "snip", "taylor"]
ALLOCATIONS = ["uniform", "global", "erk"]
W_SPARSITIES = {"convnet": [0.5, 0.7, 0.9, 0.95], "resnet20": [0.9], "vit": [0.9]}
ST_METHODS, ST_SPARSITY, ST_EPOCHS = ["gmp", "rigl", "granet"], 0.9, 4
IMP_ROUNDS, IMP_REWIND_FRACTION = 3, 0.03
S_MODELS, S_RATIOS, S_RUNS = ["convnet", "resnet20"], [0.3, 0.5, 0.7], ["l2", "taylor", "torch-pruning l2"]
LATENCY_BATCH, LATENCY_ROUNDS = 64, 40
DP_SCORERS, DP_RATES, DP_SEEDS, DP_EPOCHS, DP_EL2N_SEEDS = ["el2n", "forgetting"], [0.7, 0.8, 0.9], [0, 1], 3, 3


# ------------------------------------------------------------------------------------------------ data
@functools.lru_cache(maxsize=1)
def full_data() -> ClassificationData:
    return load_dataset("fashion-mnist")


def subset_indices() -> torch.Tensor:
    return zoo_subset_indices(len(full_data().train))


def fashion_mnist_10k() -> ClassificationData:
    """The fixed 10,000-example training subset, the full test split (the zoo's ``fashion-mnist-10k``)."""
    return load_dataset(SUBSET_NAME)


def test_loader() -> DataLoader:
    return DataLoader(full_data().test, batch_size=EVAL_BATCH, shuffle=False)


def accuracy(model: torch.nn.Module) -> float:
    return evaluate(model, test_loader())["accuracy"]


def ft_loader(seed: int = 0) -> DataLoader:
    x, y = fashion_mnist_10k().train.tensors
    return DataLoader(TensorDataset(x[:FT_EXAMPLES], y[:FT_EXAMPLES]), batch_size=FT_BATCH, shuffle=True,
                      generator=torch.Generator().manual_seed(seed))


class Clock:
    """Wall and CPU seconds of a block."""

    def __enter__(self) -> "Clock":
        self.t, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall, self.cpu = time.perf_counter() - self.t, time.process_time() - self.c


# ------------------------------------------------------------------------------------------------ dense models
def recipe_of(name: str) -> dict[str, Any]:
    if name == "convnet":
        r = recipe_for("convnet", "fashion-mnist")
        return {k: r[k] for k in ("optimizer", "lr", "momentum", "weight_decay", "batch_size", "epochs")}
    return {k: v for k, v in TRAINED[name].items() if k != "build"}


def _trained_path(name: str) -> Path:
    spec = {"model": name, "dataset": "fashion-mnist", "seed": 0, "threads": 1, **TRAINED[name]}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    return cache_path(name, "fashion-mnist").parent / f"bench-{name}-fashion-mnist-seed0-{digest}.safetensors"


def dense_model(name: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The trained dense model and its record (accuracy, parameters, training seconds, recipe)."""
    if name == "convnet":
        cold = not cache_path("convnet", "fashion-mnist").exists()
        with Clock() as c:
            m = pretrained("convnet", "fashion-mnist", seed=0)
        met = dict(m.zoo_metrics or {})
        rec = {"source": 'secateurs.zoo.pretrained("convnet", "fashion-mnist")', "accuracy": accuracy(m),
               "train_seconds": met.get("train_seconds"),
               # CPU time is known only when the model was trained by this run (else: the cached wall seconds)
               "train_cpu_seconds": c.cpu if cold else met.get("train_seconds"),
               "trained_by_this_run": cold}
    else:
        path = _trained_path(name)
        if path.exists():
            m = load_model(str(path), "fashion-mnist")
            rec = json.loads(read_metadata(path)["record"])
        else:
            spec, data = TRAINED[name], full_data()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                m = build_for(name, data, **spec["build"])
            train, _ = data.loaders(spec["batch_size"], seed=0)
            with Clock() as c:
                fit(m, train, spec["epochs"], lr=spec["lr"], optimizer=spec["optimizer"],
                    weight_decay=spec["weight_decay"], momentum=spec["momentum"], seed=0, num_threads=1)
            rec = {"source": f"build_for({name!r}, fashion-mnist, **{spec['build']}) + secateurs.zoo.fit on the "
                             "60,000 training images, cached with secateurs.save", "build": spec["build"],
                   "accuracy": accuracy(m), "train_seconds": c.wall, "train_cpu_seconds": c.cpu}
            secateurs.save(m.eval(), path, {"record": json.dumps(rec)})
        rec["cache"] = str(path)
    rec.update(params=structured.count_params(m), macs=structured.count_macs(m, full_data().test.tensors[0][:1]),
               recipe=recipe_of(name))
    return m.eval(), rec


def usable(name: str, rec: dict[str, Any]) -> tuple[bool, str | None]:
    if name != "vit":
        return True, None
    cpu = rec["train_cpu_seconds"]
    if cpu > VIT_LIMIT_S:
        return False, f"training took {cpu:.0f} CPU s > {VIT_LIMIT_S:.0f} s on one thread"
    if rec["accuracy"] < VIT_MIN_ACCURACY:
        return False, f"test accuracy {rec['accuracy']:.4f} < {VIT_MIN_ACCURACY} after {cpu:.0f} CPU s of training"
    return True, None


def finetune(model: torch.nn.Module, name: str, seed: int = 0) -> None:
    r = recipe_of(name)
    fit(model, ft_loader(seed), 1, lr=FT_LR_FACTOR * r["lr"], optimizer=r["optimizer"],
        weight_decay=r["weight_decay"], momentum=r["momentum"], seed=seed, num_threads=1)
    model.eval()


# ------------------------------------------------------------------------------------------------ the JSON
class Results:
    """The JSON document, merged per part and row, written atomically after every row."""

    def __init__(self, path: Path, argv: list[str]):
        self.path = path
        try:
            self.doc = json.loads(path.read_text())
        except (OSError, ValueError):
            self.doc = {}
        self.doc.setdefault("parts", {})
        self.doc.setdefault("models", {})
        self.doc["command"] = "OMP_NUM_THREADS=1 python benchmarks/fashion_mnist.py " + " ".join(argv)

    def part(self, name: str) -> dict[str, Any]:
        return self.doc["parts"].setdefault(name, {"rows": [], "wall_seconds": 0.0, "cpu_seconds": 0.0})

    def has(self, part: str, key: dict[str, Any]) -> bool:
        return any(all(r.get(k) == v for k, v in key.items()) for r in self.part(part)["rows"])

    def add(self, part: str, row: dict[str, Any], clock: Clock | None = None) -> None:
        p = self.part(part)
        p["rows"].append(row)
        if clock is not None:
            p["wall_seconds"] += clock.wall
            p["cpu_seconds"] += clock.cpu
        self.write()

    def charge(self, part: str, clock: Clock) -> None:
        p = self.part(part)
        p["wall_seconds"] += clock.wall
        p["cpu_seconds"] += clock.cpu

    def write(self) -> None:
        d = self.doc
        dense_wall = sum(m.get("train_seconds") or 0 for m in d["models"].values())
        dense_cpu = sum(m.get("train_cpu_seconds") or 0 for m in d["models"].values())
        parts_wall = sum(p["wall_seconds"] for p in d["parts"].values())
        parts_cpu = sum(p["cpu_seconds"] for p in d["parts"].values())
        d["budget"] = {"limit_seconds": BUDGET_S, "threads": 1,
                       "rule": "the whole script at its defaults, cold zoo cache included, on one thread; judged "
                               "by CPU time (what it costs on an idle core), wall time also recorded (it includes "
                               "the time other jobs on a shared machine took the core)",
                       "dense_training_cpu_seconds": dense_cpu, "dense_training_wall_seconds": dense_wall,
                       "parts_cpu_seconds": parts_cpu, "parts_wall_seconds": parts_wall,
                       "total_cpu_seconds": dense_cpu + parts_cpu, "total_wall_seconds": dense_wall + parts_wall,
                       "within_budget": dense_cpu + parts_cpu <= BUDGET_S,
                       "per_part_cpu_seconds": {k: round(p["cpu_seconds"], 1) for k, p in d["parts"].items()},
                       "per_part_wall_seconds": {k: round(p["wall_seconds"], 1) for k, p in d["parts"].items()}}
        d["machine"] = machine_info()
        atomic_write_json(self.path, d)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ 1. weights
def part_weights(res: Results, models: dict[str, torch.nn.Module], quick: bool) -> None:
    part = res.part("weights")
    part["settings"] = {"criteria": CRITERIA, "allocations": ALLOCATIONS, "sparsities": W_SPARSITIES, "seed": 0,
                        "calibration": f"calibration_batches(subset, n_per_class=10, batch_size={CALIBRATION_BATCH})",
                        "finetune": f"1 pass over {FT_EXAMPLES} subset examples, batch {FT_BATCH}, the model's "
                                    f"optimizer at {FT_LR_FACTOR}x its training lr, cosine to 0, masks kept",
                        "evaluation": "full 10,000-image test split"}
    calib = calibration_batches(fashion_mnist_10k(), n_per_class=10, seed=0, batch_size=CALIBRATION_BATCH)
    for name, base in models.items():
        sps = W_SPARSITIES[name][-1:] if quick else W_SPARSITIES[name]
        crits = CRITERIA[:2] if quick else CRITERIA
        for crit in crits:
            for alloc in ALLOCATIONS:
                for s in sps:
                    key = {"model": name, "criterion": crit, "allocation": alloc, "sparsity": s, "seed": 0}
                    if res.has("weights", key):
                        continue
                    with Clock() as c:
                        m = copy.deepcopy(base)
                        rep = secateurs.prune(m, s, method=crit, allocation=alloc, data=calib, seed=0)
                        pruned = accuracy(m)
                        finetune(m, name)
                        tuned = accuracy(m)
                    row = {**key, "accuracy_pruned": pruned, "accuracy_finetuned": tuned,
                           "sparsity_measured": rep.sparsity, "sparsity_after_finetune": secateurs.sparsity(m),
                           "min_layer_density": min(1 - l["sparsity"] for l in rep.to_dict()["layers"]),
                           "seconds": round(c.wall, 2), "cpu_seconds": round(c.cpu, 2)}
                    res.add("weights", row, c)
                    log(f"weights {name} {crit:9s} {alloc:7s} {s:.2f}: {pruned:.4f} -> {tuned:.4f} ({c.wall:.1f} s)")


# ------------------------------------------------------------------------------------------------ 2. sparse training
def part_sparse_training(res: Results, quick: bool) -> None:
    epochs = 1 if quick else ST_EPOCHS
    data = fashion_mnist_10k()
    recipe = recipe_for("convnet", SUBSET_NAME, epochs)
    steps = epochs * math.ceil(len(data.train) / recipe["batch_size"])
    prune_rate = 1 - (1 - ST_SPARSITY) ** (1 / IMP_ROUNDS)
    rewind = round(IMP_REWIND_FRACTION * steps)
    part = res.part("sparse_training")
    part["settings"] = {"model": "convnet", "data": f"{SUBSET_NAME} (train), full test split", "epochs": epochs,
                        "steps": steps, "recipe": {k: recipe[k] for k in ("optimizer", "lr", "weight_decay",
                                                                         "batch_size")},
                        "target_sparsity": ST_SPARSITY, "seed": 0,
                        "imp": {"rounds": IMP_ROUNDS, "prune_rate": prune_rate, "allocation": "global",
                                "rewind_step": rewind, "train_epochs": epochs * (IMP_ROUNDS + 1)}}
    for method in ["dense", *ST_METHODS, "imp"]:
        key = {"method": method, "seed": 0}
        if res.has("sparse_training", key):
            continue
        with Clock() as c:
            if method == "dense":
                train, _ = data.loaders(recipe["batch_size"], seed=0)
                torch.manual_seed(0)
                net = build_for("convnet", data)
                fit(net, train, epochs, lr=recipe["lr"], optimizer=recipe["optimizer"],
                    weight_decay=recipe["weight_decay"], momentum=recipe["momentum"], seed=0, num_threads=1)
                out = {"accuracy": accuracy(net), "sparsity": 0.0, "train_epochs": epochs}
            elif method == "imp":
                r = run_lottery("convnet", data, rounds=IMP_ROUNDS, prune_rate=prune_rate, rewind_step=rewind,
                                epochs=epochs, seed=0, allocation="global", controls=False, num_threads=1)
                out = {"accuracy": r.rounds[-1].ticket_accuracy, "sparsity": 1 - r.rounds[-1].density,
                       "train_epochs": epochs * (IMP_ROUNDS + 1),
                       "per_round": [{"density": x.density, "ticket_accuracy": x.ticket_accuracy} for x in r.rounds]}
            else:
                r = train_sparse("convnet", SUBSET_NAME, method, ST_SPARSITY, epochs=epochs, seed=0)
                out = {"accuracy": r["accuracy"], "sparsity": r["sparsity"], "train_epochs": epochs,
                       "updates": len(r["updates"])}
        row = {**key, "target_sparsity": 0.0 if method == "dense" else ST_SPARSITY, **out,
               "seconds": round(c.wall, 2), "cpu_seconds": round(c.cpu, 2)}
        res.add("sparse_training", row, c)
        log(f"sparse_training {method:7s} {row['accuracy']:.4f} (sparsity {row['sparsity']:.4f}, {c.wall:.0f} s)")


# ------------------------------------------------------------------------------------------------ 3. structured
def _peer() -> tuple[Callable | None, str | None, str | None]:
    try:
        import torch_pruning  # noqa: F401
        from structured import _version, prune_peer
    except ImportError as e:
        return None, None, f"torch_pruning not importable ({e}): peer omitted"
    return prune_peer, _version("torch-pruning"), None


def part_structured(res: Results, models: dict[str, torch.nn.Module], quick: bool) -> None:
    peer, peer_version, peer_note = _peer()
    calib = calibration_batches(fashion_mnist_10k(), n_per_class=10, seed=0, batch_size=CALIBRATION_BATCH)
    x1 = full_data().test.tensors[0][:1]
    xb = full_data().test.tensors[0][:LATENCY_BATCH]
    example = fashion_mnist_10k().train.tensors[0][:64]
    rounds = 5 if quick else LATENCY_ROUNDS
    part = res.part("structured")
    part["settings"] = {"models": S_MODELS, "ratios": S_RATIOS, "runs": S_RUNS, "allocation": "uniform",
                        "example_batch": 64, "macs_batch": 1,
                        "latency": {"batch": LATENCY_BATCH, "rounds": rounds, "warmup": 5, "threads": 1,
                                    "clock": "thread CPU time", "statistic": "median",
                                    "pairing": "pruned and dense interleaved in one structured.latency call"},
                        "finetune": f"1 pass over {FT_EXAMPLES} subset examples, batch {FT_BATCH}, the model's "
                                    f"optimizer at {FT_LR_FACTOR}x its training lr",
                        "torch_pruning": peer_version, "peer_note": peer_note}
    for name in S_MODELS:
        if name not in models:
            continue
        dense = models[name]
        d_params, d_macs = structured.count_params(dense), structured.count_macs(dense, x1)
        for ratio in ([0.5] if quick else S_RATIOS):
            for run in S_RUNS:
                key = {"model": name, "ratio": ratio, "run": run}
                if res.has("structured", key) or (run.startswith("torch-pruning") and peer is None):
                    continue
                with Clock() as c:
                    m = copy.deepcopy(dense)
                    try:
                        if run.startswith("torch-pruning"):
                            peer(m, example, ratio)
                        else:
                            structured.prune(m, example, sparsity=ratio, method=run, allocation="uniform",
                                             data=calib if run == "taylor" else None)
                    except Exception as e:  # noqa: BLE001 - a failure is a result
                        row = {**key, "ok": False, "error": f"{type(e).__name__}: {e}"[:500]}
                    else:
                        params, macs = structured.count_params(m), structured.count_macs(m, x1)
                        pruned = accuracy(m)
                        lat_dense, lat = structured.latency([dense, m], xb, rounds=rounds, warmup=5, threads=1,
                                                            clock="thread")
                        finetune(m, name)
                        row = {**key, "ok": True, "params": params, "macs": macs, "dense_params": d_params,
                               "dense_macs": d_macs, "mac_reduction": d_macs / macs, "param_reduction": d_params / params,
                               "latency_s": lat, "dense_latency_s": lat_dense, "speedup": lat_dense / lat,
                               "accuracy_pruned": pruned, "accuracy_finetuned": accuracy(m),
                               "conv_widths": [x.out_channels for x in m.modules() if isinstance(x, torch.nn.Conv2d)]}
                row.update(seconds=round(c.wall, 2), cpu_seconds=round(c.cpu, 2))
                res.add("structured", row, c)
                if row["ok"]:
                    log(f"structured {name} {ratio:.0%} {run:16s} MACs {row['mac_reduction']:.2f}x, speed-up "
                        f"{row['speedup']:.2f}x, acc {row['accuracy_pruned']:.4f} -> {row['accuracy_finetuned']:.4f}")
                else:
                    log(f"structured {name} {ratio:.0%} {run:16s} FAILED {row['error']}")


# ------------------------------------------------------------------------------------------------ 4. data pruning
def part_data_pruning(res: Results, quick: bool) -> None:
    data = fashion_mnist_10k()
    labels = data.train.tensors[1].numpy()
    n = len(labels)
    epochs = 1 if quick else DP_EPOCHS
    rates = [0.9] if quick else DP_RATES
    seeds = DP_SEEDS[:1] if quick else DP_SEEDS
    batch = recipe_for("convnet")["batch_size"]
    part = res.part("data_pruning")
    part["settings"] = {"model": "convnet", "n_train": n, "epochs": epochs, "batch_size": batch, "rates": rates,
                        "seeds": seeds, "scorers": DP_SCORERS, "selectors": ["random", "hard", "ccs"],
                        "el2n": {"seeds": 2 if quick else DP_EL2N_SEEDS, "total_epochs": epochs,
                                 "epochs": "10% of the run, at least 1"},
                        "forgetting": {"seeds": 1, "total_epochs": epochs},
                        "ccs_beta": {str(r): D.default_beta(r) for r in rates},
                        "budget": "optimizer steps of the full-data run (data_pruning.matched_epochs)"}
    scores: dict[str, D.Scores] = {}
    with Clock() as c:
        for s in DP_SCORERS:
            opts: dict[str, Any] = {"model": "convnet", "total_epochs": epochs}
            if s == "el2n":
                opts["seeds"] = 2 if quick else DP_EL2N_SEEDS
            scores[s] = D.score(s, data.train, **opts)
    if not part.get("score_seconds"):
        res.charge("data_pruning", c)
        part["score_seconds"] = round(c.wall, 1)
    grid = [("-", "full", 0.0)] + [(sc, st, r) for r in rates for sc, st in
                                   [("-", "random")] + [(s, x) for s in DP_SCORERS for x in ("hard", "ccs")]]
    for seed in seeds:
        for scorer, strategy, rate in grid:
            key = {"scorer": scorer, "strategy": strategy, "rate": rate, "seed": seed}
            if res.has("data_pruning", key):
                continue
            with Clock() as c:
                keep = None if strategy == "full" else D.select(
                    scores[scorer] if scorer != "-" else np.zeros(n), rate, strategy, labels=labels, seed=seed)
                kept = n if keep is None else len(keep)
                out = D.train_subset(data, keep, model="convnet", seed=seed,
                                     epochs=matched_epochs(n, kept, epochs, batch))
            row = {**key, "distill": False, "accuracy": out["accuracy"], "kept": out["kept"], "epochs": out["epochs"],
                   "steps": out["steps"], "seconds": round(c.wall, 2), "cpu_seconds": round(c.cpu, 2)}
            res.add("data_pruning", row, c)
            log(f"data_pruning {scorer:10s} {strategy:6s} {rate:.1f} seed {seed}: {row['accuracy']:.4f} "
                f"({out['steps']} steps, {c.wall:.0f} s)")
            summary = summarize(part["rows"])
            checks = claim_check(summary)
            part.update(summary=summary, claim={
                "statement": "keeping only the hardest collapses at high rates while CCS stays at or above random "
                             "(Zheng et al. 2023, ICLR); 2-SE rule of benchmarks/data_pruning.py",
                "by_rate": claim_by_rate(checks), "checks": checks,
                "ccs_beats_random": [{"scorer": ch["scorer"], "rate": ch["rate"],
                                      "ccs_minus_random_pp": ch["ccs_minus_random_pp"], "se_pp": ch["ccs_se_pp"],
                                      "beats": ch["ccs_minus_random_pp"] > 2 * ch["ccs_se_pp"]} for ch in checks]})
            res.write()


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=PARTS)
    ap.add_argument("--quick", action="store_true", help="a smoke run of every part (writes --out, default "
                                                         "results/fashion_mnist_quick.json)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = args.out or (OUT.with_name("fashion_mnist_quick.json") if args.quick else OUT)
    res = Results(out, sys.argv[1:])
    res.doc.update(benchmark="fashion_mnist", quick=args.quick, protocol=__doc__.split("Models (")[0].strip(),
                   subset={"name": SUBSET_NAME, "size": SUBSET_SIZE, "seed": 0,
                           "rule": "first 10,000 of torch.randperm(60000, seed 0), sorted",
                           "class_counts": np.bincount(fashion_mnist_10k().train.tensors[1].numpy()).tolist()})
    t0, c0 = time.perf_counter(), time.process_time()
    need = set()
    if "weights" in args.parts:
        need |= {"convnet", "resnet20", "vit"}
    if "structured" in args.parts:
        need |= set(S_MODELS)
    models: dict[str, torch.nn.Module] = {}
    for name in ["convnet", "resnet20", "vit"]:
        if name not in need:
            continue
        m, rec = dense_model(name)
        ok, reason = usable(name, rec)
        rec.update(used=ok, skipped_reason=reason)
        res.doc["models"][name] = rec
        log(f"dense {name}: accuracy {rec['accuracy']:.4f}, {rec['params']} params, {rec['macs']} MACs, "
            f"trained in {rec['train_seconds']} s" + ("" if ok else f"; SKIPPED: {reason}"))
        if ok:
            models[name] = m
        res.write()
    for part in args.parts:
        if part == "weights":
            part_weights(res, models, args.quick)
        elif part == "sparse_training":
            part_sparse_training(res, args.quick)
        elif part == "structured":
            part_structured(res, models, args.quick)
        else:
            part_data_pruning(res, args.quick)
    res.doc.setdefault("invocations", []).append(
        {"parts": args.parts, "wall_seconds": round(time.perf_counter() - t0, 1),
         "cpu_seconds": round(time.process_time() - c0, 1), "date": machine_info()["date"]})
    res.write()
    log(f"wrote {out} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
