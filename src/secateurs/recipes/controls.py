"""The built-in controls of a sweep, switched on by ``--controls``: which control runs a grid gets, and how each
control's model is made.

* ``dense``: the trained dense model, evaluated (one per model x data x seed) — the ceiling.
* ``scratch``: the method's mask (weights) or pruned architecture (structured) on a freshly initialised model,
  trained from scratch with the zoo recipe's dense budget (Scratch-E of Liu et al. 2019, "Rethinking the Value of
  Network Pruning"; ``finetune.scratch_epochs`` overrides it).
* ``random_mask``: a random mask keeping the method's number of weights in every layer (Liu et al. 2022, "The
  Unreasonable Effectiveness of Random Pruning"), on the dense weights, fine-tuned with the method's budget; drawn
  by :func:`secateurs.schedules.lottery.random_layer_masks`, the lottery ticket's random-mask control.  Structured:
  random group importance at the same ratio; data: random selection at the same rate.
* ``global_magnitude``: global magnitude pruning with a minimum-keep floor per layer (Gupta et al. 2022, "Is
  Complexity Required for Neural Network Pruning? A Case Study on Global Magnitude Pruning": global MP with a
  minimum threshold), at the same sparsity and budget.

Every result row carries ``control`` (None for the method itself).  Which control runs a sweep adds is decided by
:func:`secateurs.recipes.sweep.with_controls`; this module makes their models.  ``r`` is a
:class:`~secateurs.recipes.Recipe` (not imported here: the recipe runs through this module).
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


# Gupta et al. 2022 keep a minimum number of weights in every layer (their MT); we keep 2 % of the smallest
# prunable layer (at least 1), unless the recipe sets min_keep.
MIN_KEEP_FRACTION = 0.02


def global_magnitude_floor(r: Any, model: nn.Module) -> int:
    """The minimum number of weights kept per layer by the global-magnitude control."""
    from ..core.targets import resolve_targets

    if r.min_keep is not None:
        return r.min_keep
    smallest = min(t.numel for t in resolve_targets(model, None, r.ignore))
    return max(1, int(MIN_KEEP_FRACTION * smallest))


def method_masks(r: Any, model: nn.Module, calib: list) -> dict[str, torch.Tensor]:
    """The keep masks the recipe's method would give ``model`` (computed, the model untouched)."""
    from ..core.prune import plan_masks

    return plan_masks(model, r.spec(), data=calib).masks


def masked_control(r: Any, base: nn.Module, data: Any, calib: list) -> tuple[nn.Module, int]:
    """The model of the ``scratch`` or ``random_mask`` control of a weights recipe, and its training epochs."""
    from ..core.masks import set_mask
    from ..core.targets import resolve_targets
    from ..schedules.lottery import random_layer_masks
    from ..zoo import build_for, recipe_for

    masks = method_masks(r, base, calib)
    if r.control == "random_mask":
        model = copy.deepcopy(base)
        targets = [t for t in resolve_targets(model) if t.key in masks]
        kept = [int(masks[t.key].sum()) for t in targets]
        return random_layer_masks(model, targets, kept, r.seed), r.finetune.epochs
    # scratch: the same mask on a fresh initialisation, trained with the dense model's budget
    with torch.random.fork_rng():
        torch.manual_seed(_reinit_seed(r.seed))
        model = build_for(r.model, data)
    for t in resolve_targets(model):
        if t.key in masks:
            set_mask(t, masks[t.key].clone())
    return model, r.finetune.scratch_epochs or recipe_for(r.model, r.data)["epochs"]


def reinitialise(model: nn.Module, seed: int) -> nn.Module:
    """Re-draw every parameter of ``model`` (in place) with its modules' own initialisers (``reset_parameters``),
    seeded: the pruned architecture "trained from scratch" (Liu et al. 2019)."""
    with torch.random.fork_rng():
        torch.manual_seed(_reinit_seed(seed))
        for m in model.modules():
            if hasattr(m, "reset_parameters") and callable(m.reset_parameters):
                m.reset_parameters()
    return model


def _reinit_seed(seed: int) -> int:
    return 7_919 + seed  # not the dense model's initialisation seed
