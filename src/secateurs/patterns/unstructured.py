"""Unstructured pattern: every weight is its own group."""
from __future__ import annotations

from .base import Pattern


class Unstructured(Pattern):
    """Any subset of single weights may be removed."""

    name = "unstructured"
