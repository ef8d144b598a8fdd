"""What every training-time pruner shares: a step counter driven by ``pruner.step()``, a history, and masks.

A schedule decides *when* and *how much* (``sparsity_at(step)``, ``is_update_step(step)``); the engine
(:func:`secateurs.prune`, with any criterion, allocation and pattern) decides *what*.  Call ``pruner.step()``
once after every ``optimizer.step()``: after the t-th optimizer step ``pruner.step_count == t``, and if t is an
update step the masks change before the next forward.  Masks are the engine's parametrizations, so pruned
weights stay exactly zero between updates with any optimizer (their gradient is zero, their original is zero).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..core.masks import get_mask, get_mask_module, masked_targets, set_mask, zero_fraction
from ..core.targets import Target, resolve_targets
from ..errors import InvalidArgumentError


def check_fraction(name: str, value: Any, *, upper_open: bool = True) -> float:
    """``value`` as a float in [0, 1) (or [0, 1] when ``upper_open`` is False), else InvalidArgumentError."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and 0 <= value and (value < 1 if upper_open else value <= 1)
    if not ok:
        rng = "[0, 1)" if upper_open else "[0, 1]"
        raise InvalidArgumentError(f"{name} must be a number in {rng}, got {value!r}")
    return float(value)


def check_step(name: str, value: Any, minimum: int = 0) -> int:
    """``value`` as an int >= ``minimum``, else InvalidArgumentError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def reset_optimizer_state(optimizer: torch.optim.Optimizer | None, param: torch.Tensor, where: torch.Tensor) -> None:
    """Zero the optimizer's per-weight state (SGD momentum, Adam moments, ...) of ``param`` at ``where``.

    Regrown weights start from zero with fresh state (RigL, ``grow_init='zeros'`` and its momentum reset);
    pruned ones get no stale momentum that would make their original drift from zero.
    """
    if optimizer is None:
        return
    state = optimizer.state.get(param)
    if not state:
        return
    for value in state.values():
        if torch.is_tensor(value) and value.shape == param.shape:
            value.masked_fill_(where.to(value.device), 0)


class Schedule:
    """Base class of the step-driven pruners (GMP, SET, RigL, GraNet, ISS-P, PDP).

    Subclasses implement :meth:`sparsity_at`, :meth:`is_update_step` and :meth:`update` (which changes the
    masks and returns a record for :attr:`history`); :meth:`finish` makes the final masks hard at the end of
    training where a method needs it.
    """

    def __init__(self, model: nn.Module, *, targets=None, ignore=None,
                 optimizer: torch.optim.Optimizer | None = None):
        self.model = model
        self.targets: list[Target] = resolve_targets(model, targets, ignore)
        self.optimizer = optimizer
        self.step_count = 0
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ what subclasses define
    def sparsity_at(self, step: int) -> float:
        raise NotImplementedError

    def is_update_step(self, step: int) -> bool:
        raise NotImplementedError

    def update(self, step: int) -> dict[str, Any]:
        raise NotImplementedError

    def finish(self) -> None:
        """Called once after training (by the adapters and ``secateurs train``); a no-op unless overridden."""

    # ------------------------------------------------------------------ the loop's side
    def step(self) -> dict[str, Any] | None:
        """Advance one optimizer step; update the masks if this step is an update step (returns its record)."""
        self.step_count += 1
        if self.step_count == 1:
            self.fast_masks()
        if not self.is_update_step(self.step_count):
            return None
        record = {"step": self.step_count, **self.update(self.step_count)}
        record.setdefault("sparsity", self.sparsity())
        self.history.append(record)
        self.fast_masks()  # masks an update attached
        return record

    def fast_masks(self) -> None:
        """Let the targets' masks keep a copy in the weight's dtype while training (see ``Mask.float_cache``)."""
        for t in self.targets:
            m = get_mask_module(t.module, t.param)
            if m is not None:
                m.float_cache = True

    def sparsity(self) -> float:
        """Current fraction of zeros among the schedule's target weights."""
        return zero_fraction(self.targets)

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Give the pruner the optimizer whose state it resets when weights are pruned or regrown."""
        self.optimizer = optimizer

    def ensure_masks(self) -> None:
        """Attach an all-ones mask to every target that has none (so the optimizer sees the final parameters)."""
        for t in self.targets:
            if get_mask(t) is None:
                set_mask(t, torch.ones(t.shape, dtype=torch.bool, device=t.leaf.device), zero=False)

    def masked(self) -> list[Target]:
        return masked_targets(self.model)

    def state_dict(self) -> dict[str, Any]:
        return {"step_count": self.step_count, "history": list(self.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        self.history = list(state["history"])


class SoftThenHard(Schedule):
    """A schedule with a soft phase (shrunk or soft-masked weights) that ends in hard engine masks: ISS-P, PDP.

    Subclasses set ``self.hard = False`` at construction and implement :meth:`harden` (idempotent); :meth:`finish`
    makes the masks hard if training stopped before the schedule did.
    """

    hard: bool = False
    final_sparsity: float

    def harden(self) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Make the masks hard (exactly the final sparsity) if the schedule has not already."""
        if not self.hard:
            self.harden()
            self.history.append({"step": self.step_count, "phase": "hard",
                                 "target_sparsity": self.final_sparsity, "sparsity": self.sparsity()})

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "hard": self.hard}
