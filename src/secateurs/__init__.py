"""secateurs: prune neural networks and their training data.

Public API::

    report = secateurs.prune(model, sparsity=0.9, method="magnitude", allocation="global")
    spec = secateurs.PruneSpec(0.5, "wanda", allocation="owl")   # validated, JSON-serialisable
    plan = secateurs.plan_masks(model, spec, data=batches)       # masks computed, model untouched
    plan.apply(model)                           # == secateurs.run_spec(model, spec, data=batches)
    secateurs.sparsity(model); secateurs.save(model, "m.safetensors"); secateurs.load("m.safetensors", model)
    secateurs.finalize(model)   # bake the zeros in, remove the masks
"""
from __future__ import annotations

from .core.masks import finalize, sparsity
from .core.prune import plan_masks, prune, run_spec
from .core.report import PruneReport
from .core.spec import MaskPlan, PruneSpec
from .errors import (
    CheckpointError,
    InvalidArgumentError,
    MissingDataError,
    ModelStructureError,
    NonFiniteError,
    NoTargetsError,
    OutputExistsError,
    PatternError,
    PruningError,
    UnknownNameError,
    UnreachableTargetError,
)
from .io import load, save
from .recipes import Recipe, RecipeError

from ._version import __version__

__all__ = [
    "prune", "PruneSpec", "run_spec", "plan_masks", "MaskPlan", "finalize", "sparsity", "save", "load", "PruneReport", "PruningError", "InvalidArgumentError",
    "UnknownNameError", "PatternError", "NoTargetsError", "MissingDataError", "NonFiniteError",
    "UnreachableTargetError", "CheckpointError", "ModelStructureError", "OutputExistsError", "Recipe", "RecipeError", "__version__",
]
