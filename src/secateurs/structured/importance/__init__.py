"""Group importances (registry kind ``importance``); any engine criterion name works as one too."""
from __future__ import annotations

from typing import Any

from ... import registry
from ...errors import UnknownNameError
from .base import Group, Importance, ImportanceContext, per_unit
from . import bn_scale, fpgm, l1, l2, random, taylor  # noqa: F401  (registration)
from .criterion import CriterionImportance


def build(name: str, options: dict[str, Any]) -> Importance:
    """The importance ``name``: a registered one, else an engine criterion reduced per unit."""
    if name in registry.names("importance"):
        return registry.build("importance", name, options)
    if name in registry.names("criterion"):
        return CriterionImportance(name, **registry.validate(CriterionImportance, options, f"importance {name!r}"))
    raise UnknownNameError("importance", name, registry.names("importance") + registry.names("criterion"))


__all__ = ["Group", "Importance", "ImportanceContext", "CriterionImportance", "build", "per_unit"]
