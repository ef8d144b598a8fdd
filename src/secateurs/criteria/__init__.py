"""Importance criteria, each registered by name (``secateurs.registry.get("criterion", name)``)."""
from . import alps, dsnot, gblm, grasp, magnitude, random, ria, snip, sparsegpt, synflow, taylor, wanda  # noqa: F401  (registration)
from .base import Criterion, ScoreContext

__all__ = ["Criterion", "ScoreContext"]
