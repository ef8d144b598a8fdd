"""Train a zoo model sparse with any registered schedule: the driver behind ``secateurs train`` and the benchmarks.

Every method runs through the same loop: build the model (seeded), ``Schedule.from_budget(model, sparsity=...,
total_steps=...)`` (each method's paper defaults scaled to the run), the zoo trainer's recipe for that model
(optimizer, learning rate, cosine decay, batch size) with ``pruner.step()`` after every optimizer step, then
``pruner.finish()`` and one test evaluation.  The test accuracy after each epoch is recorded in ``history``.
"""
from __future__ import annotations

import time
from typing import Any

import torch

from ..errors import InvalidArgumentError
from ..registry import get, names
from .base import check_fraction, check_step


def methods() -> list[str]:
    """The registered training-time methods (``secateurs train --method``)."""
    return names("schedule")


def train_sparse(model: str = "lenet300", dataset: str = "digits", schedule: str = "gmp", sparsity: float = 0.9,
                 epochs: int | None = None, seed: int = 0, lr: float | None = None, progress: bool = False,
                 **options: Any) -> dict[str, Any]:
    """Train ``model`` from scratch on ``dataset`` while the registered ``schedule`` makes it ``sparsity`` sparse.

    Returns ``{"accuracy", "loss", "sparsity", "history": [per-epoch records], "updates": [mask updates],
    "seconds", ...}``; ``options`` go to the schedule's ``from_budget`` (e.g. ``allocation="erk"``, or the
    criterion of a gradual schedule: ``method="snip"``).
    """
    from ..zoo import build_for, calibration_batches, evaluate, fit, load_dataset, recipe_for

    cls = get("schedule", schedule)
    sparsity = check_fraction("sparsity", sparsity)
    recipe = recipe_for(model, dataset, epochs)
    epochs = check_step("epochs", recipe["epochs"], 1)
    if lr is not None and not lr > 0:
        raise InvalidArgumentError(f"lr must be > 0, got {lr!r}")
    data = load_dataset(dataset)
    train_loader, test_loader = data.loaders(batch_size=recipe["batch_size"], seed=seed)
    steps_per_epoch = len(train_loader)
    torch.manual_seed(seed)
    net = build_for(model, data)
    calib = calibration_batches(data, n_per_class=10, seed=seed)
    start = time.perf_counter()
    pruner = cls.from_budget(net, sparsity=sparsity, total_steps=epochs * steps_per_epoch, data=calib, seed=seed,
                             **options)
    history: list[dict[str, Any]] = []

    def on_step(step: int, opt: torch.optim.Optimizer) -> None:
        if pruner.optimizer is None:
            pruner.attach_optimizer(opt)
        pruner.step()
        if step % steps_per_epoch == 0:
            ev = evaluate(net, test_loader)
            history.append({"epoch": step // steps_per_epoch, "step": step, "sparsity": pruner.sparsity(),
                            "test_accuracy": ev["accuracy"], "test_loss": ev["loss"]})

    fit(net, train_loader, epochs, lr=lr or recipe["lr"], optimizer=recipe["optimizer"],
        weight_decay=recipe["weight_decay"], momentum=recipe["momentum"], seed=seed, progress=progress,
        num_threads=recipe["num_threads"], on_step=on_step)
    pruner.finish()
    seconds = time.perf_counter() - start
    final = evaluate(net, test_loader)
    return {"model": model, "dataset": dataset, "method": schedule, "target_sparsity": sparsity, "epochs": epochs,
            "seed": seed, "accuracy": final["accuracy"], "loss": final["loss"],
            "sparsity": pruner.sparsity(),
            "history": history, "updates": pruner.history, "seconds": seconds}
