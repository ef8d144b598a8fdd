"""One exception hierarchy, rooted at :class:`PruningError`.

Every error is raised before any weight is touched, so a model is left exactly as it was when a call fails.
Errors caused by a bad argument also subclass :class:`ValueError`.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class PruningError(Exception):
    """Base class of every error secateurs raises on purpose."""


class InvalidArgumentError(PruningError, ValueError):
    """An argument is out of range or malformed (sparsity, N:M, min_keep, ...)."""


class UnknownNameError(InvalidArgumentError, KeyError):
    """A method, allocation, pattern or model name that is not registered."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(known)
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        super().__init__(f"unknown {kind} {name!r}.{hint} Known: {', '.join(known)}.")
        self.kind, self.name, self.known = kind, name, known

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]


class PatternError(InvalidArgumentError):
    """A pattern that cannot be applied to a layer (N >= M, width not divisible by M, ...)."""


class NoTargetsError(InvalidArgumentError):
    """The target/ignore selection matched no prunable weight."""


class MissingDataError(InvalidArgumentError):
    """A data-dependent criterion was called without calibration data."""


class NonFiniteError(PruningError, ValueError):
    """NaN or Inf found in weights or importance scores."""


class UnreachableTargetError(InvalidArgumentError):
    """min_keep / dense layers leave too few weights to reach the requested sparsity."""


class CheckpointError(PruningError, ValueError):
    """A saved file that is missing, corrupt, or does not match the model."""


class ModelStructureError(PruningError, ValueError):
    """A model whose structure secateurs cannot find its way around (e.g. no repeated blocks)."""


class OutputExistsError(PruningError, FileExistsError):
    """The output path exists and overwriting was not requested."""
