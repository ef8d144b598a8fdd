"""Iterative Soft Shrinkage-Percentage (ISS-P): unimportant weights shrink every iteration instead of being zeroed.

Wang, Wang, Zhang, Fu & Tao (ICCV 2023), "Iterative Soft Shrinkage Learning for Efficient Image
Super-Resolution", §3 and Fig. 1: during the pruning stage (iterations k <= K_p) each layer's weights are ranked
by L1 magnitude after every optimizer step; the lowest fraction p (the layer's pruning ratio) is *attenuated*,
``W <- W ⊙ (M + α(1 − M))`` with M the keep mask and α the shrink ratio, while the rest is left alone.  Shrunk
weights stay trainable, so a weight that the gradient pushes back up re-enters the kept set at the next ranking
(the sparse structure is re-learned every iteration).  At K_p the mask of the current magnitudes is frozen and
applied hard; the fine-tuning stage (K_p < k <= K_p + K_FT) trains the sparse network with it.

Read from the authors' code (Jiamian-Wang/Iterative-Soft-Shrinkage-SR@37e1e9f, basicsr/pruner/ist_pruner.py
``_iht``, meta_pruner.py, README): the mask is recomputed after every ``optimizer.step()`` by L1 magnitude with
one ranking per layer (``--compare_mode local``), pruned entries are multiplied by ``--ist_ratio 0.95``, the
pruning ratio is the same constant from the first iteration on (``--stage_pr [0-1000:0.95]``: no ramp), and
N:M is supported (``--pick_pruned min_N:M``).  Here "unimportant" is decided by the engine's own pieces: the
allocation (default ``"uniform"`` = the reference's per-layer ratio; ``"global"``, ``"er"``, ``"erk"`` also
work), the layer scope's exact k-smallest selection and the pattern (unstructured, N:M, blocks); the hard prune
at K_p is :func:`secateurs.prune` with ``method="magnitude"`` and the same allocation and pattern, so it selects
exactly the weights the last soft step shrank.

Deviations: the reference also exits the pruning stage through its GReg regulariser bookkeeping
(``reg_upper_limit``); here K_p is simply ``end_step``.  ``from_budget`` uses K_p = half the run (the SwinIR
recipe shrinks for 5000 × 20 = 100k of its 200k iterations) and ERK layer ratios (see there).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .. import registry
from ..allocations.base import Allocation
from ..core.masks import get_mask
from ..core.prune import check_sparsity, min_keep_groups, prune, select_masks
from ..core.targets import Target
from ..errors import InvalidArgumentError, PatternError
from ..patterns import NM, Pattern, parse
from ..registry import register
from .base import SoftThenHard, check_step, reset_optimizer_state


def check_open_fraction(name: str, value: Any) -> float:
    """``value`` as a float strictly inside (0, 1), else InvalidArgumentError."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 < value < 1
    if not ok:
        raise InvalidArgumentError(f"{name} must be a number strictly between 0 and 1, got {value!r}")
    return float(value)


def build_weight_allocation(name: str, options: dict[str, Any], sparsity: float, pat: Pattern) -> Allocation:
    """The registered allocation ``name`` for a magnitude ranking re-done during training (no calibration data)."""
    alloc = registry.build("allocation", name, options)
    if isinstance(pat, NM) and name != "uniform":
        raise PatternError(f"pattern {pat.name} fixes every layer's density; use allocation='uniform', not {name!r}")
    if alloc.stats:
        raise InvalidArgumentError(
            f"allocation {name!r} needs calibration statistics, which a ranking repeated during training does not "
            f"collect; use 'uniform', 'global', 'er' or 'erk'")
    fixed = isinstance(pat, NM)
    alloc.check(sparsity, pat.n if fixed else None, pat.m if fixed else None)
    return alloc


def magnitude_counts(targets: Sequence[Target], pat: Pattern, alloc: Allocation, sparsity: float, seed: int = 0,
                     min_keep: int | None = None) -> list[int]:
    """Pattern groups to prune per layer for ``sparsity`` by magnitude, as :func:`secateurs.prune` plans them
    (the engine's public :func:`~secateurs.core.prune.select_masks`).  Shared by ISS-P and PDP (its budget)."""
    return select_masks(targets, _magnitudes(targets), sparsity, pattern=pat, allocation=alloc, seed=seed,
                        min_keep=min_keep).counts


def lowest_magnitude_keep(targets: Sequence[Target], pat: Pattern, alloc: Allocation, sparsity: float,
                          seed: int = 0, min_keep: int | None = None, counts: Sequence[int] | None = None) \
        -> list[torch.Tensor]:
    """Keep masks (weight-shaped, bool, earlier masks included) of each target: the complement of the
    ``sparsity`` lowest-|W| groups, split over layers by the allocation (or by fixed ``counts``), selected and
    expanded by the engine's own step (:func:`~secateurs.core.prune.select_masks`), so a hard prune afterwards
    picks the same weights."""
    return select_masks(targets, _magnitudes(targets), sparsity, pattern=pat, allocation=alloc, seed=seed,
                        min_keep=min_keep, counts=counts).keeps


def _magnitudes(targets: Sequence[Target]) -> list[torch.Tensor]:
    return [t.weight.detach().abs().float() for t in targets]


def names_selector(targets: Sequence[Target]):
    """A ``targets=`` callable for :func:`secateurs.prune` that selects exactly these modules."""
    ids = {id(t.module) for t in targets}
    return lambda _name, module: id(module) in ids


@register("schedule", "iss")
class IterativeSoftShrinkage(SoftThenHard):
    """ISS-P (Wang et al., ICCV 2023): shrink the lowest-magnitude weights by ``shrink`` after every optimizer
    step until ``end_step``, then prune them hard (engine masks) and train on sparse.

    Args:
        sparsity: the pruning ratio p (fraction of the targeted weights zero at the end); implied by N:M.
        end_step: K_p, the step after which the mask is frozen and applied hard.
        shrink: α in (0, 1), the factor applied to unimportant weights at each update (reference: 0.95).
        start_step: shrinking starts after this step (0: from the first step, as the reference does).
        frequency: shrink every this many steps (reference: 1, every iteration).
        allocation: how p is split over layers ("uniform": one ratio per layer, the reference's "local").
        pattern: "unstructured", "N:M" or "RxC" blocks.
        min_keep: at least this many weights stay in every layer (the engine's floor against layer collapse).
    """

    def __init__(self, model: nn.Module, sparsity: float | None, end_step: int, shrink: float = 0.95,
                 start_step: int = 0, frequency: int = 1, allocation: str = "uniform",
                 pattern: str | Pattern = "unstructured", *, targets=None, ignore=None, seed: int = 0,
                 min_keep: int | None = None, optimizer: torch.optim.Optimizer | None = None, **options: Any):
        self.pattern = parse(pattern)
        self.final_sparsity = check_sparsity(sparsity, self.pattern)
        self.shrink = check_open_fraction("shrink", shrink)
        self.start_step = check_step("start_step", start_step)
        self.end_step = check_step("end_step", end_step, 1)
        if self.end_step <= self.start_step:
            raise InvalidArgumentError(f"end_step ({end_step}) must come after start_step ({start_step}): the soft "
                                       f"shrinking stage runs between them")
        self.frequency = check_step("frequency", frequency, 1)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidArgumentError(f"seed must be an int, got {seed!r}")
        self.allocation = allocation
        self.options = dict(options)
        self.alloc = build_weight_allocation(allocation, self.options, self.final_sparsity, self.pattern)
        super().__init__(model, targets=targets, ignore=ignore, optimizer=optimizer)
        for t in self.targets:
            self.pattern.validate(t.name, t.shape2d)
        min_keep_groups(min_keep, self.pattern, self.targets)  # a non-negative int or None
        self.min_keep = min_keep
        if not isinstance(self.pattern, NM):  # min_keep and the allocation can meet the target: fail now, not mid-run
            magnitude_counts(self.targets, self.pattern, self.alloc, self.final_sparsity, seed, min_keep)
        self.seed = seed
        self.hard = False
        self.report = None

    # ------------------------------------------------------------------ schedule
    def sparsity_at(self, step: int) -> float:
        """The target p: 0 until ``start_step``, then constant (the reference ranks at p from the first step)."""
        return self.final_sparsity if step > self.start_step else 0.0

    def is_update_step(self, step: int) -> bool:
        if step == self.end_step:
            return True
        return self.start_step < step < self.end_step and (step - self.start_step) % self.frequency == 0

    def update(self, step: int) -> dict[str, Any]:
        if step >= self.end_step:
            self.harden()
            return {"phase": "hard", "target_sparsity": self.final_sparsity}
        keeps = lowest_magnitude_keep(self.targets, self.pattern, self.alloc, self.final_sparsity, self.seed,
                                      self.min_keep)
        shrunk = 0
        with torch.no_grad():
            for t, keep in zip(self.targets, keeps):
                leaf = t.leaf
                # geometric shrinking reaches subnormal floats after ~1,700 steps at 0.95 (fp32), which slow every
                # matmul/conv many times on CPUs: values that would become subnormal are set to exactly 0
                small = leaf.abs() < torch.finfo(leaf.dtype).tiny / self.shrink
                torch.where(keep, leaf, (leaf * self.shrink).masked_fill_(small, 0), out=leaf)
                shrunk += keep.numel() - int(torch.count_nonzero(keep))
        return {"phase": "soft", "target_sparsity": self.final_sparsity, "shrunk": shrunk}

    # ------------------------------------------------------------------ end of the pruning stage
    def harden(self) -> None:
        """Freeze the current magnitude mask as engine masks (exact sparsity); later calls do nothing."""
        if self.hard:
            return
        self.report = prune(self.model, None if isinstance(self.pattern, NM) else self.final_sparsity,
                            method="magnitude", allocation=self.allocation, pattern=self.pattern,
                            targets=names_selector(self.targets), min_keep=self.min_keep, seed=self.seed,
                            **self.options)
        for t in self.targets:  # no stale momentum pushing pruned originals off zero
            reset_optimizer_state(self.optimizer, t.leaf, ~get_mask(t))
        self.hard = True

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.hard = bool(state.get("hard", False))

    @classmethod
    def from_budget(cls, model: nn.Module, *, sparsity: float, total_steps: int, data=None,
                    optimizer: torch.optim.Optimizer | None = None, seed: int = 0,
                    **kw: Any) -> "IterativeSoftShrinkage":
        """The reference recipe scaled to ``total_steps``: shrink by 0.95 after every step for the first half
        of the run (K_p = total_steps // 2), then fine-tune with the frozen hard mask.

        Layer ratios: ERK, not the class default "uniform".  The reference prunes every layer at one ratio but
        keeps its output layers dense (``--skip_layers *tail*``); with the classifier among the targets a
        uniform ratio starves it at high sparsity (LeNet-300-100 on digits at 98%, 20 epochs, seeds 0-2: test
        accuracy 0.83 uniform vs 0.94 ERK), and ERK keeps small layers denser.  ``allocation="uniform"``
        restores the reference's per-layer ratio."""
        total = check_step("total_steps", total_steps, 2)
        end = kw.pop("end_step", total // 2)
        if "allocation" not in kw:  # N:M fixes every layer's density: the one ratio is the only choice
            kw["allocation"] = "uniform" if isinstance(parse(kw.get("pattern", "unstructured")), NM) else "erk"
        return cls(model, sparsity, end, seed=seed, optimizer=optimizer, **kw)
