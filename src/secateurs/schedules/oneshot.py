"""One-shot pruning during a training run: prune once at a chosen step, train on with the masks fixed.

At step 0 this is pruning at initialization: the criteria are the engine's (SNIP, Lee et al. 2019, eq. 6;
GraSP, Wang et al. 2020, eq. 8; SynFlow, Tanaka et al. 2020, eq. 1 with its 100 iterative rounds; random) and
so are the layer-wise ratios (global, ER/ERK — "The Unreasonable Effectiveness of Random Pruning", Liu et al.
2022).  In Python, pruning at initialization is the one-liner

    secateurs.prune(model, 0.9, method="snip", allocation="global", data=calibration_batches(data))

followed by ordinary training (the masks keep pruned weights at zero with any optimizer).  Later in the run it
is the classic "train, prune once by magnitude, fine-tune" baseline.  The schedule object exists so that
``secateurs train`` and the benchmarks drive every method through the same loop.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..core.prune import prune
from ..registry import register
from .base import Schedule, check_fraction, check_step, reset_optimizer_state


class OneShot(Schedule):
    """Prune once at ``at_step`` (0: at construction, before training) with any criterion × allocation × pattern."""

    default_method = "magnitude"
    default_allocation = "global"
    default_at = 0.5  # from_budget: the fraction of the run trained dense before pruning

    def __init__(self, model: nn.Module, sparsity: float, at_step: int = 0, method: str | None = None,
                 allocation: str | None = None, pattern: str = "unstructured", *, data=None, loss_fn=None,
                 targets=None, ignore=None, seed: int = 0, optimizer: torch.optim.Optimizer | None = None,
                 **options: Any):
        super().__init__(model, targets=targets, ignore=ignore, optimizer=optimizer)
        self.final_sparsity = check_fraction("sparsity", sparsity)
        self.at_step = check_step("at_step", at_step)
        self.method = method or self.default_method
        self.allocation = allocation or self.default_allocation
        self._kw = dict(method=self.method, allocation=self.allocation, pattern=pattern, data=data, loss_fn=loss_fn,
                        targets=targets, ignore=ignore, seed=seed, **options)
        self.report = None
        if self.at_step == 0:
            self.history.append({"step": 0, **self.update(0)})
            self.history[-1]["sparsity"] = self.sparsity()

    def sparsity_at(self, step: int) -> float:
        return self.final_sparsity if step >= self.at_step else 0.0

    def is_update_step(self, step: int) -> bool:
        return step == self.at_step

    def update(self, step: int) -> dict[str, Any]:
        self.report = prune(self.model, self.final_sparsity, **self._kw)
        for t in self.targets:  # no stale momentum pushing pruned originals off zero
            reset_optimizer_state(self.optimizer, t.leaf, t.weight.detach() == 0)
        return {"method": self.method, "allocation": self.allocation}

    @classmethod
    def from_budget(cls, model: nn.Module, *, sparsity: float, total_steps: int, data=None,
                    optimizer: torch.optim.Optimizer | None = None, seed: int = 0, **kw: Any) -> "OneShot":
        at = kw.pop("at_step", round(cls.default_at * check_step("total_steps", total_steps, 1)))
        return cls(model, sparsity, at, data=data, optimizer=optimizer, seed=seed, **kw)


register("schedule", "oneshot")(OneShot)


def _at_init(name: str, method: str, allocation: str, doc: str) -> type[OneShot]:
    cls = type(f"AtInit_{name.replace('-', '_')}", (OneShot,),
               {"default_method": method, "default_allocation": allocation, "default_at": 0.0, "__doc__": doc})
    return register("schedule", name)(cls)


SNIPAtInit = _at_init("snip", "snip", "global", "SNIP saliency |g ⊙ θ| at initialization, one global ranking "
                      "(Lee et al. 2019), then sparse training.")
GraSPAtInit = _at_init("grasp", "grasp", "global", "GraSP, gradient-flow preservation −θ ⊙ Hg at initialization "
                       "(Wang et al. 2020), then sparse training.")
SynFlowAtInit = _at_init("synflow", "synflow", "global", "SynFlow, data-free iterative synaptic flow, 100 rounds "
                         "(Tanaka et al. 2020), then sparse training.")
RandomERKAtInit = _at_init("random-erk", "random", "erk", "A random mask with Erdős–Rényi-kernel layer densities "
                           "(Evci et al. 2020; Liu et al. 2022), then sparse training.")
