"""Gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune", eq. 1).

The sparsity rises from ``s_i`` to ``s_f`` along a cubic ramp over ``n`` pruning steps of ``Δt`` optimizer steps
starting at ``t0``::

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n Δt)) ** 3        (clamped to s_i before t0, s_f after t0 + nΔt)

— fast pruning while the network is redundant, slowing down as fewer weights remain.  Semantics follow the
reference implementation, tensorflow/model-optimization@0578604 ``PolynomialDecay`` (power 3, progress
``p = (step - begin) / (end - begin)`` clamped to [0, 1]) with ``prune_low_magnitude``'s masking: masks are
recomputed at ``begin, begin + frequency, ...`` and once more at ``end_step`` (TF updates only when
``(step - begin) % frequency == 0``, which can miss ``end_step``; we add it so the run ends exactly at ``s_f``).
A pruned weight stays pruned, as in TF, where the masked weight is zero and so ranks lowest thereafter.

Each update is one call of the engine, :func:`secateurs.prune`, at ``sparsity_at(t)`` on the already-masked model
(which prunes further), so any criterion, allocation and pattern works: gradual ERK-SNIP is
``GradualMagnitude(model, 0.9, 0, 1000, 100, method="snip", allocation="erk", data=batches)``.

Deviations from the paper / reference, stated:

* The default allocation is "global" (one magnitude ranking over all targets), as issue 9 asks; Zhu & Gupta and
  TF prune every layer to ``s_t`` (``allocation="uniform"``).
* Gradual N:M (e.g. ``pattern="2:4"``) steps through the patterns (M-1):M, (M-2):M, ..., N:M: at step t the
  masks are (M-k):M with k = round(M · s_t), the level nearest the cubic ramp s_t towards s_f = 1 - N/M (so the
  masks never stray more than 1/(2M) from the ramp, and N:M is reached before ``end_step``, leaving time to
  recover, instead of as one last jump).  Each level is the engine's N:M selection among the weights the previous
  level kept, so every M-group always keeps at least N weights and the run ends exactly N:M.  ``sparsity_at``
  returns this quantised value (what the masks hold).  The ramp is coarse for small M (2:4: 25%, then 50%).
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn

from ..core.masks import get_mask
from ..core.prune import check_prune, prune
from .._compat import renamed
from ..errors import InvalidArgumentError, PatternError
from ..patterns import NM, parse
from ..registry import register
from .base import Schedule, check_fraction, check_step, reset_optimizer_state

# prune() arguments the schedule sets itself, or that would defeat masks (bake writes zeros with no mask to keep)
_RESERVED = ("model", "sparsity", "bake", "stream", "progress")



def cubic_sparsity(step: int, initial: float, final: float, start: int, end: int) -> float:
    """Zhu & Gupta (2017) eq. 1: s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³, with the progress clamped to [0, 1].

    The one implementation of the cubic ramp: GMP's schedule and GraNet's gradual pruning (its reference
    ``Masking.pruning``) both call it.
    """
    p = min(1.0, max(0.0, (step - start) / (end - start)))
    return final + (initial - final) * (1.0 - p) ** 3

@register("schedule", "gmp")
class GradualMagnitude(Schedule):
    """Gradual pruning on the cubic schedule of Zhu & Gupta 2017, eq. 1 (any criterion, allocation, pattern).

    Args:
        sparsity: s_f (``final_sparsity`` is its deprecated name), the fraction of target weights that are zero from ``end_step`` on, in [0, 1); for
            an N:M pattern it must be 1 - N/M (or None, which means that).
        start_step: t0, the first update (0: applied at construction, before training).
        end_step: t0 + nΔt, the last update; must be > ``start_step``.
        frequency: Δt, optimizer steps between updates (TF's default is 100).
        initial_sparsity: s_i, the sparsity of the first update.
        method, allocation, pattern: the engine's criterion, allocation and pattern for every update.
        targets, ignore, data, loss_fn, seed, options: passed to :func:`secateurs.prune` at every update
            (``data`` for data-dependent criteria such as SNIP: pass a few batches, it is read at every update).
        optimizer: whose per-weight state (momentum, Adam moments) is reset where weights get pruned; may be
            given later with :meth:`attach_optimizer`.

    Call :meth:`step` after every optimizer step and :meth:`finish` after training.  All arguments are checked
    here, before any weight is touched; then every target gets an all-ones mask so that an optimizer created
    afterwards holds the parameters that training will update.
    """

    @renamed(final_sparsity="sparsity")
    def __init__(self, model: nn.Module, sparsity: float | None, start_step: int, end_step: int,
                 frequency: int, initial_sparsity: float = 0.0, method: str = "magnitude",
                 allocation: str | None = "global", pattern: str = "unstructured", *, targets=None, ignore=None,
                 data=None, loss_fn=None, seed: int = 0, optimizer: torch.optim.Optimizer | None = None,
                 **options: Any):
        final_sparsity = sparsity  # s_f of Zhu & Gupta's eq. 1
        pat = parse(pattern)
        self.nm: tuple[int, int] | None = (pat.n, pat.m) if isinstance(pat, NM) else None
        if self.nm is not None:
            implied = 1 - pat.fixed_density
            if final_sparsity is None:
                final_sparsity = implied
            elif not isinstance(final_sparsity, (int, float)) or abs(final_sparsity - implied) > 1e-9:
                raise PatternError(f"pattern {pat.name} ends at sparsity {implied:g}; got final_sparsity="
                                   f"{final_sparsity!r} (pass {implied:g} or None)")
            if allocation not in (None, "global", "uniform"):
                raise InvalidArgumentError(
                    f"gradual {pat.name} steps every layer through (M-1):M ... N:M alike; allocation "
                    f"{allocation!r} is not supported here (use 'uniform', or prune once with secateurs.prune)")
        self.final_sparsity = check_fraction("final_sparsity", final_sparsity)
        self.initial_sparsity = check_fraction("initial_sparsity", initial_sparsity)
        if self.final_sparsity < self.initial_sparsity:
            raise InvalidArgumentError(f"final_sparsity ({self.final_sparsity:g}) is below initial_sparsity "
                                       f"({self.initial_sparsity:g}); gradual pruning only removes weights")
        self.start_step = check_step("start_step", start_step)
        self.end_step = check_step("end_step", end_step)
        if self.end_step <= self.start_step:
            raise InvalidArgumentError(
                f"end_step ({end_step}) must be after start_step ({start_step}): the ramp runs from start to end "
                f"(to prune once at one step, use secateurs.prune or the 'oneshot' schedule)")
        self.frequency = check_step("frequency", frequency, 1)
        bad = [k for k in options if k in _RESERVED]
        if bad:
            raise InvalidArgumentError(f"option(s) {', '.join(map(repr, bad))} cannot be given to a gradual schedule: "
                                       f"it sets the sparsity itself and keeps masks")
        self.method, self.allocation, self.pattern = method, allocation, pattern
        self._pattern_name = pat.name
        # N:M patterns fix every layer's density: the engine's default (uniform) is the only allocation
        engine_alloc = None if self.nm is not None and allocation == "global" else allocation
        self._kw: dict[str, Any] = dict(method=method, allocation=engine_alloc, data=data, loss_fn=loss_fn,
                                        targets=targets, ignore=ignore, seed=seed, **options)
        super().__init__(model, targets=targets, ignore=ignore, optimizer=optimizer)  # touches no weight
        # the engine's own checks of the final call (names, options, pattern vs layer shapes, data), not run
        check_prune(model, None if self.nm else self.final_sparsity, pattern=pattern, **self._kw)
        self._applied = 0.0  # the sparsity of the last update (the schedule never goes back)
        self.reports: list[Any] = []  # the engine's PruneReport of every update that pruned
        self.ensure_masks()
        if self.start_step == 0:
            self.history.append({"step": 0, **self.update(0), "sparsity": self.sparsity()})

    # ------------------------------------------------------------------------------------------ the schedule
    def ramp(self, step: int) -> float:
        """Zhu & Gupta's eq. 1 at ``step`` (:func:`cubic_sparsity`)."""
        return cubic_sparsity(step, self.initial_sparsity, self.final_sparsity, self.start_step, self.end_step)

    def sparsity_at(self, step: int) -> float:
        """The scheduled sparsity at ``step``: :meth:`ramp`; for N:M patterns the nearest multiple of 1/M."""
        s = self.ramp(step)
        if self.nm is None:
            return s
        n, m = self.nm
        return min(m - n, math.floor(s * m + 0.5)) / m

    def is_update_step(self, step: int) -> bool:
        """``start, start + frequency, ...`` up to ``end_step``, and ``end_step`` itself."""
        if not self.start_step <= step <= self.end_step:
            return False
        return (step - self.start_step) % self.frequency == 0 or step == self.end_step

    def update_steps(self) -> list[int]:
        """Every step at which the masks are recomputed."""
        steps = list(range(self.start_step, self.end_step + 1, self.frequency))
        return steps if steps[-1] == self.end_step else steps + [self.end_step]

    def update(self, step: int) -> dict[str, Any]:
        target = self.sparsity_at(step)
        record: dict[str, Any] = {"target_sparsity": target}
        if target > self._applied:  # an unchanged target (s_t = 0, constant ramp, same N:M level) would be a no-op
            record["pattern"] = self._apply(target)
        return record

    def _apply(self, target: float) -> str:
        """Prune the model further to ``target`` with the engine; reset the optimizer state of what it removed."""
        before = [get_mask(t) for t in self.targets]
        before = [None if m is None else m.clone() for m in before]
        if self.nm is None:
            pattern = self._pattern_name
            self.reports.append(prune(self.model, target, pattern=self.pattern, **self._kw))
        else:
            m = self.nm[1]
            pattern = f"{m - round(target * m)}:{m}"
            self.reports.append(prune(self.model, None, pattern=pattern, **self._kw))
        for t, old in zip(self.targets, before):
            new = get_mask(t)
            gone = ~new if old is None else old & ~new
            reset_optimizer_state(self.optimizer, t.leaf, gone)
        self._applied = target
        return pattern

    def finish(self) -> None:
        """End at exactly ``final_sparsity``: if training stopped before ``end_step``, prune the rest now."""
        if self._applied >= self.sparsity_at(self.end_step):
            return
        warnings.warn(f"training ended at step {self.step_count}, before end_step={self.end_step}: pruning to the "
                      f"final sparsity {self.final_sparsity:g} in one shot", RuntimeWarning, stacklevel=2)
        record = {"step": self.step_count, "target_sparsity": self.sparsity_at(self.end_step), "finish": True}
        record["pattern"] = self._apply(record["target_sparsity"])
        record["sparsity"] = self.sparsity()
        self.history.append(record)

    def average_density(self, total_steps: int) -> float:
        """Mean over steps 0..total_steps-1 of the targets' scheduled density 1 - s, as the masks hold it.

        The quantity of "The Journey Matters" (Jin et al. 2025): the average parameter count over a run.  The
        density between two updates is the one set by the earlier update (dense before ``start_step`` unless
        ``start_step`` is 0); multiply by the number of target weights for a parameter count.
        """
        total_steps = check_step("total_steps", total_steps, 1)
        points = [t for t in self.update_steps() if t < total_steps] + [total_steps]
        acc, applied = float(points[0]), 0.0  # steps before the first update are dense
        for a, b in zip(points, points[1:]):
            applied = max(applied, self.sparsity_at(a))
            acc += (b - a) * (1.0 - applied)
        return acc / total_steps

    # ------------------------------------------------------------------------------------------ presets
    @classmethod
    def from_budget(cls, model: nn.Module, *, sparsity: float, total_steps: int, data=None,
                    optimizer: torch.optim.Optimizer | None = None, seed: int = 0, **kw: Any) -> "GradualMagnitude":
        """GMP for a run of ``total_steps`` optimizer steps ending at ``sparsity``.

        Our choice (Zhu & Gupta's own t0 and Δt are unconfirmed, see ALGORITHMS.md): prune from step 0 to 75% of
        the run, leaving the last quarter to recover at the final sparsity, with about 100 updates per run
        (``frequency = total_steps // 100``, at least 1) — TF's frequency of 100 steps on a 10k-step run.
        ``kw`` may override ``start_step``, ``end_step``, ``frequency`` and any constructor argument.
        """
        total = check_step("total_steps", total_steps, 1)
        start = kw.pop("start_step", 0)
        end = kw.pop("end_step", max(start + 1, (3 * total) // 4))
        frequency = kw.pop("frequency", max(1, total // 100))
        return cls(model, sparsity, start, end, frequency, data=data, optimizer=optimizer, seed=seed, **kw)

    @classmethod
    @renamed(final_sparsity="sparsity")
    def journey(cls, model: nn.Module, sparsity: float | None, total_steps: int, **kw: Any) \
            -> "GradualMagnitude":
        """The sparse pre-training schedule of Jin et al. 2025, "The Journey Matters: Average Parameter Count
        over Pre-training Unifies Sparse and Dense Scaling Laws": the cubic ramp of Zhu & Gupta from 25% to 75%
        of the ``total_steps`` run (dense for the first quarter, at ``final_sparsity`` for the last).

        Updates every ``total_steps // 100`` steps unless ``frequency`` is given (our choice; the paper's update
        frequency is unconfirmed).  :meth:`average_density` gives the run's average parameter count, which the
        paper shows places sparse and dense runs on one scaling law.
        """
        total = check_step("total_steps", total_steps, 1)
        start = total // 4
        end = max(start + 1, (3 * total) // 4)
        frequency = kw.pop("frequency", max(1, total // 100))
        return cls(model, sparsity, start, end, frequency, **kw)

    # ------------------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "applied": self._applied}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._applied = float(state["applied"])
