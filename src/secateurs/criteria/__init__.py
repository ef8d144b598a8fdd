"""Importance criteria, each registered by name (``secateurs.registry.get("criterion", name)``)."""
from . import gblm, grasp, magnitude, random, snip, sparsegpt, synflow, taylor, wanda  # noqa: F401  (registration)
from .base import Criterion, ScoreContext

__all__ = ["Criterion", "ScoreContext"]
