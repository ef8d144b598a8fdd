"""Parameter-free Differentiable Pruning (PDP): soft masks computed from the weights themselves.

Cho, Adya & Naik (NeurIPS 2023), "PDP: Parameter-free Differentiable Pruning is All You Need", §3: for a layer
whose target sparsity is r, the threshold t lies halfway between the largest weight magnitude that the target
prunes and the smallest one it keeps, and every weight gets the soft keep probability (the two-way softmax over
its chances z(w) to be pruned and m(w) to be kept, Fig. 2)

    m(w) = exp(w²/τ) / (exp(w²/τ) + exp(t²/τ)) = sigmoid((w² − t²)/τ),

and the forward pass uses ``m(W) ⊙ W``.  No parameter is added: m is a function of W, recomputed at every
forward from the current weights, so gradients reach every weight (including the "boosting" term
``w·∂m/∂w`` that pushes weights near t towards a decision) and a pruned weight can come back.  N:M: t is
computed inside every group of M consecutive input weights, halfway between the N-th and (N+1)-th largest
magnitude.  After training the mask is made hard: the weights with m >= 1/2, i.e. |w| above t.

Schedule (Appendix D, read through secondary sources — PQuant's ``PDP`` layer and a public re-implementation's
README; no code from the authors was found): train dense for s epochs, then fix each layer's target sparsity once by
one global magnitude ranking, and raise it per epoch as ``r_e = min(1, ε·(e − s + 1))·r`` with ε = 0.015,
s = 16 of 100 epochs, τ = 1e-4.  Here the layer budget comes from any engine allocation (default ``"global"``)
evaluated once at ``start_step``; the ramp is ``ramp_steps`` long and moves every ``frequency`` steps (with
``frequency`` = steps per epoch and ``ramp_steps`` = steps per epoch / ε it is the paper's).  Our extension: during an
N:M ramp the kept count per group steps from M down to N.  Choice: t is held constant in the backward pass (no gradient
through the order statistics that define it; PQuant's version lets gradient reach the two boundary weights).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..core.masks import get_mask, set_mask
from ..core.prune import min_keep_groups, check_sparsity
from ..core.targets import Target
from ..errors import InvalidArgumentError, PatternError
from ..patterns import NM, Pattern, Unstructured, parse
from ..registry import register
from .base import SoftThenHard, check_step, reset_optimizer_state
from .iss import build_weight_allocation, lowest_magnitude_keep, magnitude_counts


def check_temperature(value: Any) -> float:
    """τ as a positive finite float, else InvalidArgumentError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InvalidArgumentError(f"temperature must be a positive number (τ of PDP's softmax), got {value!r}")
    return float(value)


_FLOOR = -60.0  # sigmoid(-60) ≈ 9e-27


def _sigmoid(z: torch.Tensor) -> torch.Tensor:
    """sigmoid(z), exactly 0 where it is below ~1e-26.  With τ = 1e-4 most pruned weights get z of -1e3 and less:
    their sigmoid and the masked weights underflow into subnormal floats, which made every convolution of a
    ResNet-20 about 8x slower on x86 CPUs.  The values dropped (and their gradients) are below 1e-26."""
    return torch.where(z < _FLOOR, z.new_zeros(()), torch.sigmoid(z))


class SoftMask(nn.Module):
    """Parametrization ``W -> m(W) ⊙ W`` with PDP's soft mask ``m(w) = sigmoid((w² − t²)/τ)``.

    ``prune_count`` (unstructured) or ``keep_n`` (N:M) set where t lies; with nothing to prune the weight
    passes through unchanged.  The threshold is recomputed from the incoming weight at every forward.
    """

    def __init__(self, temperature: float, transposed: bool = False, nm: tuple[int, int] | None = None):
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.transposed = transposed
        self.m = None if nm is None else nm[1]
        self.prune_count = 0
        self.keep_n = self.m

    @property
    def active(self) -> bool:
        return self.prune_count > 0 if self.m is None else self.keep_n < self.m

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.soft_mask(w) if self.active else w

    def _view2d(self, x: torch.Tensor) -> torch.Tensor:
        if self.transposed:
            return x.t()
        return x.reshape(x.shape[0], -1) if x.dim() > 1 else x.reshape(1, -1)

    def threshold(self, w: torch.Tensor) -> torch.Tensor:
        """t: halfway between the largest pruned and the smallest kept magnitude (per M-group for N:M)."""
        a = w.detach().abs().float()
        if self.m is None:
            flat = a.reshape(-1)
            k = self.prune_count
            below = flat.kthvalue(k).values  # the largest pruned magnitude
            if int(torch.count_nonzero(flat <= below)) > k:  # tied across the boundary: t is that value
                return below
            # the smallest kept one, without a second selection pass
            return 0.5 * (below + torch.where(flat > below, flat, flat.new_full((), math.inf)).min())
        rows, cols = self._view2d(a).shape
        top = self._view2d(a).reshape(rows, cols // self.m, self.m).topk(self.keep_n + 1, dim=-1).values
        return 0.5 * (top[..., self.keep_n - 1] + top[..., self.keep_n])

    def soft_mask(self, w: torch.Tensor) -> torch.Tensor:
        """m(W), shaped like W, differentiable in W (t held constant)."""
        t = self.threshold(w)
        x = w.float()
        if self.m is None:
            return _sigmoid(((x * x - t * t) / self.temperature)).to(w.dtype)
        x2 = self._view2d(x)
        rows, cols = x2.shape
        g = x2.reshape(rows, cols // self.m, self.m)
        m2 = _sigmoid((g * g - (t * t).unsqueeze(-1)) / self.temperature).reshape(rows, cols)
        return (m2.t() if self.transposed else m2.reshape(w.shape)).to(w.dtype)

    def extra_repr(self) -> str:
        what = f"prune={self.prune_count}" if self.m is None else f"keep={self.keep_n}:{self.m}"
        return f"{what}, temperature={self.temperature:g}"


def get_soft_mask(t: Target) -> SoftMask | None:
    if not parametrize.is_parametrized(t.module, t.param):
        return None
    return next((p for p in getattr(t.module.parametrizations, t.param) if isinstance(p, SoftMask)), None)


def remove_soft_mask(t: Target) -> None:
    """Take PDP's parametrization off a target (the raw trainable weight comes back; other masks stay)."""
    sm = get_soft_mask(t)
    if sm is None:
        return
    plist = getattr(t.module.parametrizations, t.param)
    if len(plist) == 1:
        parametrize.remove_parametrizations(t.module, t.param, leave_parametrized=False)
    else:
        del plist[[i for i, p in enumerate(plist) if p is sm][0]]


@register("schedule", "pdp")
class PDP(SoftThenHard):
    """PDP (Cho et al., NeurIPS 2023): soft masks sigmoid((W² − t²)/τ) from the weights during training, hard
    (engine masks, exact sparsity) at ``end_step`` or :meth:`finish`.

    Args:
        sparsity: final fraction of zeros among the targets; implied by an N:M pattern.
        start_step: steps trained dense before the masks engage (the paper's s warm-up epochs).
        ramp_steps: steps over which the sparsity rises linearly to its final value (0: at once).
        temperature: τ (paper: 1e-4; in units of w², so it depends on the weights' scale).
        frequency: the ramp moves every this many steps (the paper: once per epoch).
        end_step: make the masks hard after this step and train on with them; None: only at :meth:`finish`.
        allocation: how the sparsity is split over layers, decided once at ``start_step`` (default and paper:
            "global"; N:M patterns fix every layer's density, so "uniform").
        pattern: "unstructured" or "N:M".
        min_keep: at least this many weights stay in every layer (the engine's floor against layer collapse,
            which a global budget at very high sparsity can cause).
    """

    def __init__(self, model: nn.Module, sparsity: float | None = None, start_step: int = 0, ramp_steps: int = 0,
                 temperature: float = 1e-4, frequency: int = 1, end_step: int | None = None,
                 allocation: str | None = None, pattern: str | Pattern = "unstructured", *, targets=None, ignore=None,
                 seed: int = 0, min_keep: int | None = None, optimizer: torch.optim.Optimizer | None = None,
                 **options: Any):
        self.pattern = parse(pattern)
        if not isinstance(self.pattern, (Unstructured, NM)):
            raise PatternError(f"PDP makes soft masks for single weights or N:M groups; pattern "
                               f"{self.pattern.name!r} is not supported (use 'unstructured' or e.g. '2:4')")
        self.final_sparsity = check_sparsity(sparsity, self.pattern)
        self.temperature = check_temperature(temperature)
        self.start_step = check_step("start_step", start_step)
        self.ramp_steps = check_step("ramp_steps", ramp_steps)
        self.frequency = check_step("frequency", frequency, 1)
        if end_step is not None:
            check_step("end_step", end_step, 1)
            if end_step < self.start_step + self.ramp_steps:
                raise InvalidArgumentError(
                    f"end_step ({end_step}) comes before the ramp ends (start_step + ramp_steps = "
                    f"{self.start_step + self.ramp_steps}); the hard mask would skip part of the schedule")
        self.end_step = end_step
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidArgumentError(f"seed must be an int, got {seed!r}")
        self.seed = seed
        self.allocation = allocation or ("uniform" if isinstance(self.pattern, NM) else "global")
        self.alloc = build_weight_allocation(self.allocation, dict(options), self.final_sparsity, self.pattern)
        super().__init__(model, targets=targets, ignore=ignore, optimizer=optimizer)
        min_keep_groups(min_keep, self.pattern, self.targets)  # validates before anything is touched
        self.min_keep = min_keep
        for t in self.targets:
            self.pattern.validate(t.name, t.shape2d)
            if get_soft_mask(t) is not None:
                raise InvalidArgumentError(f"layer {t.name!r} already carries a PDP soft mask; call finish() or "
                                           f"remove_soft_masks() on the other PDP pruner first")
        # the layer budget (its reachability under min_keep checked before anything is attached); with no warm-up
        # it is the one the first update uses, the weights being the same
        first = None if isinstance(self.pattern, NM) else \
            magnitude_counts(self.targets, self.pattern, self.alloc, self.final_sparsity, seed, min_keep)
        nm = (self.pattern.n, self.pattern.m) if isinstance(self.pattern, NM) else None
        for t in self.targets:  # identity until the masks engage; parameters keep their identity
            parametrize.register_parametrization(t.module, t.param, SoftMask(self.temperature, t.transposed, nm),
                                                 unsafe=True)
        # per-layer pruned weights at the final sparsity (unstructured), fixed when the masks engage
        self.counts: list[int] | None = first if self.start_step == 0 else None
        self.hard = False
        if self.start_step == 0:
            self.history.append({"step": 0, **self.update(0), "sparsity": self.sparsity()})

    # ------------------------------------------------------------------ schedule
    def ramp_factor(self, step: int) -> float:
        """Fraction of the final sparsity in force after ``step``: 0 before start, then min(1, ε·(j + 1)) with
        j the number of whole ``frequency`` periods since start and ε = frequency / ramp_steps."""
        if step < self.start_step:
            return 0.0
        if self.ramp_steps == 0:
            return 1.0
        return min(1.0, ((step - self.start_step) // self.frequency + 1) * self.frequency / self.ramp_steps)

    def kept_per_group(self, step: int) -> int:
        """N:M: weights kept in each group of M after ``step`` (M down to N along the ramp)."""
        n, m = self.pattern.n, self.pattern.m
        return m - round(self.ramp_factor(step) * (m - n))

    def sparsity_at(self, step: int) -> float:
        """Target sparsity after ``step`` (before per-layer rounding)."""
        if isinstance(self.pattern, NM):
            return 1 - self.kept_per_group(step) / self.pattern.m
        return self.ramp_factor(step) * self.final_sparsity

    def is_update_step(self, step: int) -> bool:
        if self.hard:
            return False
        if self.end_step is not None and step == self.end_step:
            return True
        return step >= self.start_step and self.ramp_factor(step) != self.ramp_factor(step - 1)

    def update(self, step: int) -> dict[str, Any]:
        if self.end_step is not None and step >= self.end_step:
            self.harden()
            return {"phase": "hard", "target_sparsity": self.final_sparsity}
        factor = self.ramp_factor(step)
        if isinstance(self.pattern, NM):
            keep_n = self.kept_per_group(step)
            for t in self.targets:
                get_soft_mask(t).keep_n = keep_n
        else:
            if self.counts is None and factor > 0:  # the layer budget, once, from the weights at the start
                self.counts = magnitude_counts(self.targets, self.pattern, self.alloc, self.final_sparsity,
                                               self.seed, self.min_keep)
            for t, c in zip(self.targets, self.counts or [0] * len(self.targets)):
                get_soft_mask(t).prune_count = round(factor * c)
        return {"phase": "soft", "target_sparsity": self.sparsity_at(step), "temperature": self.temperature}

    # ------------------------------------------------------------------ masks
    def soft_masks(self) -> list[torch.Tensor]:
        """The current m(W) of every target (ones where nothing is pruned yet); detached."""
        out = []
        with torch.no_grad():
            for t in self.targets:
                sm = get_soft_mask(t)
                w = t.weight if sm is None else self._below(t)
                out.append(sm.soft_mask(w) if sm is not None and sm.active else torch.ones_like(w))
        return out

    @staticmethod
    def _below(t: Target) -> torch.Tensor:
        """The weight as the soft mask sees it (after any engine mask, before the soft mask)."""
        plist = getattr(t.module.parametrizations, t.param)
        x = plist.original
        for p in plist:
            if isinstance(p, SoftMask):
                break
            x = p(x)
        return x

    def remove_soft_masks(self) -> None:
        """Take every PDP parametrization off (the model trains dense again; engine masks stay)."""
        for t in self.targets:
            remove_soft_mask(t)

    def harden(self) -> None:
        """Replace the soft masks by engine masks at the final sparsity, exactly; later calls do nothing.

        Unstructured: each layer keeps its budgeted number of largest magnitudes (those with m >= 1/2 at the end
        of the ramp); N:M: the N largest of every M.  Pruned originals are zeroed, their optimizer state reset.
        """
        if self.hard:
            return
        self.remove_soft_masks()
        if isinstance(self.pattern, NM):
            keeps = lowest_magnitude_keep(self.targets, self.pattern, self.alloc, self.final_sparsity, self.seed)
        else:
            if self.counts is None:  # finished before the masks engaged: budget from the weights now
                self.counts = magnitude_counts(self.targets, self.pattern, self.alloc, self.final_sparsity,
                                               self.seed, self.min_keep)
            keeps = lowest_magnitude_keep(self.targets, self.pattern, self.alloc, self.final_sparsity, self.seed,
                                          counts=self.counts)
        for t, keep in zip(self.targets, keeps):
            prev = get_mask(t)
            keep = keep if prev is None else keep & prev
            set_mask(t, keep)
            reset_optimizer_state(self.optimizer, t.leaf, ~keep)
        self.hard = True

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "counts": self.counts}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.counts = None if state.get("counts") is None else [int(c) for c in state["counts"]]
        if state.get("hard"):
            self.harden()
        elif self.step_count >= self.start_step:
            self.update(self.step_count)

    @classmethod
    def from_budget(cls, model: nn.Module, *, sparsity: float, total_steps: int, data=None,
                    optimizer: torch.optim.Optimizer | None = None, seed: int = 0, **kw: Any) -> "PDP":
        """Appendix D's recipe scaled to ``total_steps`` (read as a 100-epoch run): dense for the first 16%,
        the sparsity rising by ε = 0.015 of its final value every 1% of the run (so it is reached at ~83%),
        τ = 1e-4, one global magnitude budget; the masks become hard at :meth:`finish`."""
        total = check_step("total_steps", total_steps, 1)
        epoch = max(1, total // 100)
        kw.setdefault("start_step", round(0.16 * total))
        kw.setdefault("frequency", epoch)
        kw.setdefault("ramp_steps", max(1, round(epoch / 0.015)) if total >= 100 else max(1, round(total / 1.5)))
        return cls(model, sparsity, seed=seed, optimizer=optimizer, **kw)
