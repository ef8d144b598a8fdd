"""Importance criteria, each registered by name (``secateurs.registry.get("criterion", name)``)."""
from . import grasp, magnitude, random, snip, synflow, taylor  # noqa: F401  (registration)
from .base import Criterion, ScoreContext

__all__ = ["Criterion", "ScoreContext"]
