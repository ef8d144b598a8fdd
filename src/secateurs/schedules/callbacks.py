"""Drive any :class:`~secateurs.schedules.base.Schedule` from the Hugging Face ``Trainer`` or PyTorch Lightning.

Both adapters do what a hand-written loop does: attach the training optimizer to the pruner (so it resets the
state of pruned/regrown weights), call ``pruner.step()`` once after every optimizer step while the gradients are
still present (RigL reads them), and ``pruner.finish()`` when training ends.  Build the pruner *before* the
trainer creates its optimizer (masks may be attached at construction)::

    pruner = GradualMagnitude.from_budget(model, sparsity=0.9, total_steps=args.max_steps)
    Trainer(model=model, args=args, train_dataset=ds, callbacks=[HFPruningCallback(pruner)]).train()

    pl.Trainer(max_steps=1000, callbacks=[LightningPruningCallback(pruner)]).fit(lit_module, loader)

The classes are built on first import from this module, so secateurs does not depend on either framework:
without it, importing them raises :class:`MissingExtraError` (a :class:`~secateurs.errors.PruningError` and an
``ImportError``) that names ``pip install secateurs[hf]`` / ``secateurs[lightning]``.

Where the hooks sit (checked in transformers 5.24 and lightning 2.6):

* Hugging Face: ``on_optimizer_step`` runs right after ``optimizer.step()`` and before ``model.zero_grad()``, once
  per optimizer step, i.e. once per ``gradient_accumulation_steps`` micro-batches.
* Lightning: no hook runs between ``optimizer.step()`` and the next zero-grad in every strategy, but with
  automatic optimization the gradients are zeroed inside the *next* step's closure, so they are still present at
  ``on_train_batch_end``.  That hook runs after every micro-batch; the adapter steps the pruner once per
  increase of ``trainer.global_step`` (the optimizer-step count), which is right under gradient accumulation.

On resume, both adapters advance the pruner's step counter to the trainer's global step, so the schedule
continues where it stopped (the masks themselves travel in the model's state dict).
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ..errors import PruningError
from .base import Schedule

__all__ = ["MissingExtraError"]  # the two adapters are built on first access (module __getattr__), not by "*"


class MissingExtraError(PruningError, ImportError):
    """An optional dependency of secateurs (an "extra") is not installed."""


def _require(module: str, extra: str, what: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(f"{what} needs the {module!r} package, which is not installed: "
                                f"pip install secateurs[{extra}]") from exc


def _check_pruner(pruner: Any) -> Schedule:
    if not isinstance(pruner, Schedule):
        raise PruningError(f"the callback drives a secateurs Schedule (e.g. GradualMagnitude), got "
                           f"{type(pruner).__name__}")
    return pruner


def _check_model(pruner: Schedule, model: nn.Module | None) -> None:
    """The trained model must contain the pruner's model (a deep copy would train weights nobody prunes)."""
    if model is None or not isinstance(model, nn.Module):
        return
    if not any(m is pruner.model for m in model.modules()):
        raise PruningError("the trainer trains a model that does not contain the pruner's model; build the pruner "
                           "on the very model (or a submodule of it) that the trainer receives")


def _catch_up(pruner: Schedule, global_step: int) -> None:
    """Resuming: the schedule continues at the trainer's step (no update is replayed)."""
    if pruner.step_count < global_step:
        pruner.step_count = global_step


def _holding(optimizers: list[torch.optim.Optimizer], pruner: Schedule) -> torch.optim.Optimizer | None:
    """The optimizer that updates the pruner's target weights (the first one if none is found)."""
    leaves = {id(t.leaf) for t in pruner.targets}
    for opt in optimizers:
        if any(id(p) in leaves for group in opt.param_groups for p in group["params"]):
            return opt
    return optimizers[0] if optimizers else None


def _build_hf() -> type:
    transformers = _require("transformers", "hf", "HFPruningCallback")

    class HFPruningCallback(transformers.TrainerCallback):
        """Hugging Face ``TrainerCallback``: ``pruner.step()`` after every optimizer step, ``finish()`` at the end."""

        def __init__(self, pruner: Schedule):
            self.pruner = _check_pruner(pruner)

        def on_train_begin(self, args: Any, state: Any, control: Any, model: nn.Module | None = None,
                           optimizer: torch.optim.Optimizer | None = None, **kwargs: Any) -> None:
            _check_model(self.pruner, model)
            _catch_up(self.pruner, state.global_step)
            if optimizer is not None:
                self.pruner.attach_optimizer(optimizer)

        def on_optimizer_step(self, args: Any, state: Any, control: Any,
                              optimizer: torch.optim.Optimizer | None = None, **kwargs: Any) -> None:
            if self.pruner.optimizer is None and optimizer is not None:
                self.pruner.attach_optimizer(optimizer)
            self.pruner.step()

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.pruner.finish()

    HFPruningCallback.__module__ = __name__
    return HFPruningCallback


def _build_lightning() -> type:
    pl = _require("lightning.pytorch", "lightning", "LightningPruningCallback")

    class LightningPruningCallback(pl.Callback):
        """Lightning ``Callback``: ``pruner.step()`` once per optimizer step (gradient accumulation included),
        ``finish()`` when training ends."""

        def __init__(self, pruner: Schedule):
            self.pruner = _check_pruner(pruner)
            self._seen = 0  # trainer.global_step already given to the pruner

        def on_train_start(self, trainer: Any, pl_module: nn.Module) -> None:
            _check_model(self.pruner, pl_module)
            _catch_up(self.pruner, trainer.global_step)
            self._seen = trainer.global_step
            opt = _holding(list(trainer.optimizers), self.pruner)
            if opt is not None:
                self.pruner.attach_optimizer(opt)

        def on_train_batch_end(self, trainer: Any, pl_module: nn.Module, outputs: Any, batch: Any,
                               batch_idx: int) -> None:
            while self._seen < trainer.global_step:  # 0 during accumulation, 1 after an optimizer step
                self._seen += 1
                self.pruner.step()

        def on_train_end(self, trainer: Any, pl_module: nn.Module) -> None:
            self.pruner.finish()

    LightningPruningCallback.__module__ = __name__
    return LightningPruningCallback


_BUILDERS = {"HFPruningCallback": _build_hf, "LightningPruningCallback": _build_lightning}
_BUILT: dict[str, type] = {}


def __getattr__(name: str) -> type:
    """Build an adapter class on first access (PEP 562), importing its framework only then."""
    if name not in _BUILDERS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in _BUILT:
        _BUILT[name] = _BUILDERS[name]()
    return _BUILT[name]


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_BUILDERS))
