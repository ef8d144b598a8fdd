"""Sparsity during training: a schedule decides when and how much, the engine decides what.

Call ``pruner.step()`` after every optimizer step.  See :mod:`secateurs.schedules.base`.
"""
from __future__ import annotations

from . import gmp, oneshot  # noqa: F401  (registration)
from .base import Schedule, reset_optimizer_state
from .gmp import GradualMagnitude
from .oneshot import OneShot
from .train import methods, train_sparse

__all__ = ["Schedule", "GradualMagnitude", "OneShot", "reset_optimizer_state", "train_sparse", "methods"]
