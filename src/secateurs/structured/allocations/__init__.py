"""Structured allocations (registry kind ``structured_allocation``), one file each: how many units (channels,
neurons, heads) each dependency group loses.  ``uniform``: every group the same fraction; ``global``: one ranking
across the groups of a kind, with a ``normalizer`` (mean, max, standardize, lamp) that makes their scores
comparable."""
from __future__ import annotations

from . import global_, uniform  # noqa: F401  (registration)
from .base import StructuredAllocation, build

__all__ = ["StructuredAllocation", "build"]
