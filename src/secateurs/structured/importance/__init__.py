"""Group importances (registry kind ``importance``); any engine criterion name works as one too.  Names never
collide with criteria: the group Taylor and random importances are ``group_taylor`` and ``group_random``
(``taylor`` and ``random`` still select them in :func:`secateurs.structured.prune`)."""
from __future__ import annotations

from typing import Any

from ... import registry
from ...errors import UnknownNameError
from .base import Group, Importance, ImportanceContext, per_unit
from . import bn_scale, fpgm, l1, l2, random, taylor  # noqa: F401  (registration)
from .criterion import CriterionImportance


# Group importances whose paper name is also a weight criterion's are registered as group_<name>, so that
# ``secateurs methods`` lists every name once; the plain names keep meaning the group importance here (as before
# the rename), while any other criterion name is that criterion summed per unit.
ALIASES = {"taylor": "group_taylor", "random": "group_random"}


def build(name: str, options: dict[str, Any]) -> Importance:
    """The importance ``name``: a registered one (``taylor``/``random``: ``group_taylor``/``group_random``), else
    an engine criterion reduced per unit."""
    name = ALIASES.get(name, name)
    if name in registry.names("importance"):
        return registry.build("importance", name, options)
    if name in registry.names("criterion"):
        return CriterionImportance(name, **registry.validate(CriterionImportance, options, f"importance {name!r}"))
    raise UnknownNameError("importance", name, registry.names("importance") + registry.names("criterion"))


__all__ = ["Group", "Importance", "ImportanceContext", "CriterionImportance", "build", "per_unit"]
