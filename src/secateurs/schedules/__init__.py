"""Sparsity during training: a schedule decides when and how much, the engine decides what.

Call ``pruner.step()`` after every optimizer step.  See :mod:`secateurs.schedules.base`.
"""
from __future__ import annotations

from .base import Schedule, reset_optimizer_state

__all__ = ["Schedule", "reset_optimizer_state"]
