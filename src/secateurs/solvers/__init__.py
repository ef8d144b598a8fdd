"""Solvers that update the kept weights after (or while) a mask is chosen, registered by name (kind "solver")."""
from . import alps, dsnot, sparsegpt  # noqa: F401  (registration)
from .base import Solver

__all__ = ["Solver"]
