"""One pruning experiment on a zoo model: dense -> prune -> (fine-tune) -> evaluate.

Shared by ``secateurs prune``, ``secateurs demo``, the benchmarks and the weights family of
:class:`secateurs.Recipe` (:mod:`secateurs.recipes.run`, which builds an :class:`Experiment` from the recipe), so
all of them measure the same thing.  A recipe is the general description of a run (every family, controls, cache
key); :class:`Experiment` is what its weights family executes.
"""
from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from torch import nn

from . import io
from .core.prune import prune
from .errors import CheckpointError
from .registry import get


# 10 x #classes examples as in the SNIP/GraSP reference, in 4 batches: SNIP and GraSP sum per-batch gradients of
# the mean loss (the same ranking as one batch of 100), while Taylor's per-batch average needs several batches.
CALIBRATION_BATCH = 25


@dataclass
class Experiment:
    """A run's settings; also its JSON record."""

    model: str = "lenet300"
    dataset: str = "digits"
    method: str = "magnitude"
    allocation: str | None = None  # None: the criterion's paper default
    pattern: str = "unstructured"
    sparsity: float | None = 0.9
    min_keep: int | None = None
    seed: int = 0
    finetune_epochs: int = 0
    finetune_lr: float = 0.01
    ignore: list[str] | None = None
    dense: list[str] | None = None
    scope: str | None = None
    solver: str | None = None
    options: dict = field(default_factory=dict)  # of the criterion/allocation/solver, e.g. {"percdamp": 0.05}


@dataclass
class Outcome:
    settings: dict
    dense: dict
    pruned: dict
    finetuned: dict | None
    sparsity: float
    seconds: float
    layers: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def load_model(spec: str, dataset: str, seed: int = 0, progress: bool = False) -> nn.Module:
    """A zoo model name (trained dense, cached) or the path of a model saved with :func:`secateurs.save`."""
    from .zoo import build_model, pretrained

    if os.path.sep in spec or spec.endswith(".safetensors") or Path(spec).exists():
        meta = io.read_metadata(spec) if Path(spec).is_file() else None
        if meta is None or "arch" not in meta:
            raise CheckpointError(f"{spec}: not a secateurs model file with an architecture record (arch)")
        model = build_model(meta["arch"]["name"], **meta["arch"].get("config", {}))
        return io.load(spec, model).eval()
    get("model", spec)  # did-you-mean before any training starts
    return pretrained(spec, dataset, seed=seed, progress=progress)


def run(exp: Experiment, model: nn.Module | None = None, progress: bool = False) -> tuple[Outcome, nn.Module]:
    """Prune a copy of the dense model as ``exp`` says and measure accuracy before/after (and after fine-tuning)."""
    from .zoo import calibration_batches, evaluate, fit, load_dataset

    data = load_dataset(exp.dataset)
    base = model if model is not None else load_model(exp.model, exp.dataset, exp.seed, progress)
    model = copy.deepcopy(base)
    train_loader, test_loader = data.loaders(batch_size=64, seed=exp.seed)
    dense = evaluate(model, test_loader)
    start = time.perf_counter()
    report = prune(
        model, exp.sparsity, method=exp.method, allocation=exp.allocation, pattern=exp.pattern,
        data=calibration_batches(data, n_per_class=10, seed=exp.seed, batch_size=CALIBRATION_BATCH), targets=None, ignore=exp.ignore,
        min_keep=exp.min_keep, seed=exp.seed, dense=exp.dense, scope=exp.scope, solver=exp.solver, **exp.options,
    )
    seconds = time.perf_counter() - start
    pruned = evaluate(model, test_loader)
    finetuned = None
    if exp.finetune_epochs > 0:
        fit(model, train_loader, exp.finetune_epochs, lr=exp.finetune_lr, seed=exp.seed, progress=progress)
        finetuned = evaluate(model, test_loader)
    model.eval()
    out = Outcome(asdict(exp), dense, pruned, finetuned, report.sparsity, seconds, report.to_dict()["layers"])
    return out, model
