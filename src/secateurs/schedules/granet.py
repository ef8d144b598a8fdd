"""GraNet: gradual pruning with zero-cost neuroregeneration (Liu, Chen, Chen, Atashgahi, Yin, Kou, Shen,
Pechenizkiy, Wang & Mocanu 2021, "Sparse Training via Boosting Pruning Plasticity with Neuroregeneration",
NeurIPS)."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..core.masks import get_mask
from ..core.prune import check_prune, prune
from .._compat import renamed
from ..errors import InvalidArgumentError
from ..registry import register
from .base import check_fraction, check_step, reset_optimizer_state
from .gmp import cubic_sparsity
from .dst import DropAndGrow, budget_defaults, cosine_decay

PRUNE_END_FRACTION = 110 / 160  # from_budget: the README's CIFAR runs end pruning at epoch 110 of 160


@register("schedule", "granet")
class GraNet(DropAndGrow):
    """GraNet: gradual magnitude pruning from ``initial_sparsity`` to ``final_sparsity`` with zero-cost
    neuroregeneration (Liu et al. 2021; equation numbers of the paper unconfirmed here).

    Every ``frequency`` steps after ``start_step``:

    1. *Gradual pruning* (until ``end_step``): global magnitude pruning to s_t of the cubic schedule
       (:func:`secateurs.schedules.gmp.cubic_sparsity`, Zhu & Gupta's Eq. 1), through the engine (``secateurs.prune(..., method="magnitude",
       allocation=allocation)``; earlier masks are kept).
    2. *Neuroregeneration* (until the end of training, ``total_steps``): each layer drops its
       ``ceil(r_t · active)`` smallest-|θ| connections and regrows as many where the dense gradient is largest, so
       the sparsity is unchanged ("zero-cost"); the death rate r_t = r_min + (r0 − r_min)/2·(1 + cos(π t/T)) decays
       over the whole run T = ``total_steps``.

    Defaults from VITA-Group/GraNet (CIFAR/sparselearning/core.py, main.py, README): death rate r0 = 0.5 decayed
    with ``CosineDecay`` (``eta_min=0.005``) over all training steps; an update every 100 steps
    (``--update-frequency``); initial density 0.5 (``--init-density``, i.e. ``initial_sparsity=0.5``, random with
    ERK layer densities, ``--sparse-init ERK``); global magnitude pruning (``--method GraNet``; "uniform" is
    ``GraNet_uniform``); every Linear/Conv weight is pruned (``--rm-first`` off); gradient regrowth
    (``gradient_growth`` on the current batch's gradient); new connections start at zero (the reference's
    ``apply_mask`` after growth leaves them at their zeroed value) with their optimizer state reset here.

    Deviations: the reference recomputes the global threshold over every weight with ``>`` (ties at the threshold
    can leave a few more or fewer); the engine prunes exactly ``round(s_t · N)`` weights.  The reference also
    regenerates at the last step of training if it is an update step; here regeneration stops before
    ``total_steps`` so no connection is regrown (at zero) with no step left to train it.  Two more differences,
    where this follows the paper (measured in ``benchmarks/dst_reference.py``): the reference's
    ``gradient_growth`` ranks active entries at 0, so when fewer inactive entries than dropped have a nonzero
    gradient it regrows fewer than it dropped (connections are lost); here exactly as many are regrown.  And the
    reference prunes only up to the step before its final iteration, ending short of the final density by
    (s_f − s_i)/n³; here the last pruning step is ``end_step``.
    """

    @renamed(final_sparsity="sparsity")
    def __init__(self, model: nn.Module, sparsity: float, *, end_step: int, total_steps: int,
                 initial_sparsity: float = 0.5, start_step: int = 0, frequency: int = 100, death_rate: float = 0.5,
                 death_rate_min: float = 0.005, allocation: str = "global", init_allocation: str = "erk",
                 init_method: str = "random", dense=None, data=None, targets=None, ignore=None, seed: int = 0,
                 optimizer: torch.optim.Optimizer | None = None):
        final_sparsity = sparsity  # s_f
        self.final_sparsity = check_fraction("sparsity", final_sparsity)
        self.initial_sparsity = check_fraction("initial_sparsity", initial_sparsity)
        if self.final_sparsity < self.initial_sparsity:
            raise InvalidArgumentError(f"final_sparsity ({final_sparsity}) is below initial_sparsity "
                                       f"({initial_sparsity}); gradual pruning only removes weights")
        self.total_steps = check_step("total_steps", total_steps, 1)
        end = check_step("end_step", end_step, 1)
        if end > self.total_steps:
            raise InvalidArgumentError(f"end_step ({end_step}) is beyond total_steps ({total_steps}): pruning must "
                                       f"end within the run")
        self.death_rate = check_fraction("death_rate", death_rate)
        self.death_rate_min = check_fraction("death_rate_min", death_rate_min)
        if self.death_rate_min > self.death_rate:
            raise InvalidArgumentError(f"death_rate_min ({death_rate_min}) must not exceed death_rate ({death_rate})")
        self.prune_allocation = allocation
        self.grows_by_gradient = self.death_rate > 0
        super().__init__(model, init_sparsity=self.initial_sparsity, frequency=frequency, start_step=start_step,
                         end_step=end, allocation=init_allocation, init_method=init_method, dense=dense, data=data,
                         targets=targets, ignore=ignore, seed=seed, optimizer=optimizer)

    @classmethod
    def from_budget(cls, model: nn.Module, *, sparsity: float, total_steps: int, data=None,
                    optimizer: torch.optim.Optimizer | None = None, seed: int = 0, **kw: Any) -> "GraNet":
        """GraNet for a run of ``total_steps`` steps ending at ``sparsity``: from 50 % (the reference's
        ``--init-density 0.5``; from dense when ``sparsity`` <= 0.5) pruned until 110/160 of the run (the
        README's CIFAR runs), an update every ``max(10, total_steps // 100)`` steps (``dst.budget_defaults``), death rate 0.5 cosine-decayed
        to 0.005 over the run, regeneration to the end.  ``kw`` overrides any of these."""
        total = check_step("total_steps", total_steps, 1)
        sparsity = check_fraction("sparsity", sparsity)
        defaults = {"initial_sparsity": 0.5 if sparsity > 0.5 else 0.0, "total_steps": total,
                    "end_step": max(1, round(PRUNE_END_FRACTION * total)),
                    "frequency": budget_defaults(total)["frequency"]}
        return cls(model, sparsity, **{**defaults, "data": data, "optimizer": optimizer, "seed": seed, **kw})

    def check_options(self) -> None:
        super().check_options()
        check_prune(self.model, self.final_sparsity, method="magnitude", allocation=self.prune_allocation,
                    targets=self._select, dense=self.dense or None, seed=self.seed)

    # ------------------------------------------------------------------ schedule
    def sparsity_at(self, step: int) -> float:
        return cubic_sparsity(step, self.initial_sparsity, self.final_sparsity, self.start_step, self.end_step)

    def death_rate_at(self, step: int) -> float:
        return cosine_decay(self.death_rate, step / self.total_steps, floor=self.death_rate_min)

    def is_update_step(self, step: int) -> bool:
        return self.start_step < step < self.total_steps and (step - self.start_step) % self.frequency == 0

    def _prune_to(self, target: float, step: int) -> None:
        old = [get_mask(t).clone() for t in self.targets]
        prune(self.model, target, method="magnitude", allocation=self.prune_allocation, targets=self._select,
              dense=self.dense or None, seed=self.seed + step)
        for t, m in zip(self.targets, old):  # no stale momentum moves a pruned original away from zero
            reset_optimizer_state(self.optimizer, t.leaf, m & ~get_mask(t))

    def finish(self) -> None:
        """End at exactly ``final_sparsity`` even if no update step came at or after ``end_step``."""
        super().finish()
        total = sum(t.numel for t in self.targets)
        if round(self.final_sparsity * total) > total - sum(self.active_counts().values()):
            self._prune_to(self.final_sparsity, self.step_count)
            self.history.append({"step": self.step_count, "target_sparsity": self.final_sparsity, "finish": True,
                                 "sparsity": self.sparsity(), "mask_sparsity": self.mask_sparsity()})

    def n_drop(self, active: int, step: int) -> int:
        return math.ceil(self.death_rate_at(step) * active)

    def update(self, step: int) -> dict[str, Any]:
        if self.grows_by_gradient:  # fail before the pruning step touches anything
            self.dense_grads([t for t in self.targets if get_mask(t) is not None])
        target = self.sparsity_at(step)
        total = sum(t.numel for t in self.targets)
        before = total - sum(self.active_counts().values())
        if round(target * total) > before:  # past end_step the clamped schedule asks for the final sparsity:
            self._prune_to(target, step)      # an end_step off the update grid is reached at the next update
        pruned = total - sum(self.active_counts().values()) - before
        rate = self.death_rate_at(step)
        out = self.regrow(step) if rate > 0 else {"dropped": 0, "grown": 0}
        return {"target_sparsity": target, "pruned": pruned, "death_rate": rate, **out,
                "mask_sparsity": self.mask_sparsity()}
