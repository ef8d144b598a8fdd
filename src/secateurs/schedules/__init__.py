"""Sparsity during training: a schedule decides when and how much, the engine decides what.

Call ``pruner.step()`` after every optimizer step.  See :mod:`secateurs.schedules.base`.
"""
from __future__ import annotations

from . import gmp, granet, iss, oneshot, pdp, rigl, set  # noqa: F401  (registration)
from .base import Schedule, reset_optimizer_state
from .gmp import GradualMagnitude
from .granet import GraNet
from .iss import IterativeSoftShrinkage
from .lottery import LotteryTicket, run_lottery
from .oneshot import OneShot
from .pdp import PDP
from .rigl import RigL
from .set import SET
from .train import methods, train_sparse

__all__ = ["Schedule", "GradualMagnitude", "OneShot", "SET", "RigL", "GraNet", "IterativeSoftShrinkage", "PDP",
           "LotteryTicket", "run_lottery", "reset_optimizer_state", "train_sparse", "methods"]
