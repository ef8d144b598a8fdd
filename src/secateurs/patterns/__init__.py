"""Patterns: which shapes of weights may be removed together.

A pattern is written as a string: ``"unstructured"``, ``"2:4"`` (N:M) or ``"4x4"`` / ``"1x4"`` (blocks).
Every pattern works on the 2-D view ``W.reshape(out, -1)`` of a weight, so a Conv weight is grouped along
input-channel x kernel. :func:`parse` turns the string into a :class:`~secateurs.patterns.base.Pattern`.
"""
from __future__ import annotations

import re

from ..errors import PatternError
from ..registry import get, register
from .base import Pattern
from .block import Block
from .nm import NM, nm_keep_mask
from .unstructured import Unstructured

__all__ = ["Pattern", "Unstructured", "NM", "Block", "parse", "nm_keep_mask"]

_NM = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")
_BLOCK = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse(spec: "str | Pattern") -> Pattern:
    """Parse ``"unstructured"``, ``"N:M"`` or ``"RxC"`` into a Pattern; anything else raises PatternError."""
    if isinstance(spec, Pattern):
        return spec
    if not isinstance(spec, str):
        raise PatternError(f"pattern must be a string such as 'unstructured', '2:4' or '4x4', got {spec!r}")
    if m := _NM.match(spec):
        return NM(int(m[1]), int(m[2]))
    if m := _BLOCK.match(spec):
        return Block(int(m[1]), int(m[2]))
    return get("pattern", spec.strip())()


# Registered so that `secateurs methods` lists the three pattern families with their syntax.
@register("pattern", "unstructured")
def _unstructured() -> Pattern:
    """Single weights (any subset may be removed)."""
    return Unstructured()


@register("pattern", "N:M")
def _nm() -> Pattern:  # pragma: no cover - documentation entry; N:M is parsed from "2:4" etc.
    """N:M semi-structured: keep N of every M consecutive input weights, e.g. "2:4" (Mishra et al. 2021)."""
    raise PatternError("write N:M patterns with numbers, e.g. '2:4' or '4:8'")


@register("pattern", "RxC")
def _block() -> Pattern:  # pragma: no cover - documentation entry; blocks are parsed from "4x4" etc.
    """Blocks of R rows x C input columns, e.g. "4x4" or "1x4"; a block's score is the sum of its scores."""
    raise PatternError("write block patterns with numbers, e.g. '4x4' or '1x4'")
