"""The one finiteness check of secateurs (weights, scores, activations, losses).

``torch.isfinite(x.sum())`` alone is wrong for half precision: the sum of millions of finite fp16 values
overflows 65504 and reads as Inf although every value is finite (this made every realistic fp16 LLM fail).  A
finite sum proves every term finite (NaN and Inf propagate), so one read-only reduction settles the common case
and the elementwise test runs only when the sum is not finite.
"""
from __future__ import annotations

import torch

from ..errors import NonFiniteError


def all_finite(x: torch.Tensor) -> bool:
    """True if no entry of ``x`` is NaN or ±Inf (integer and bool tensors are always finite)."""
    if not (x.is_floating_point() or x.is_complex()):
        return True
    return bool(torch.isfinite(x.sum(dtype=torch.float32) if x.is_floating_point() else x.sum())) \
        or bool(torch.isfinite(x).all())


def check_finite(x: torch.Tensor, what: str) -> None:
    """Raise :class:`NonFiniteError` naming ``what`` (e.g. "scores of layer 'fc1'") if ``x`` has NaN/Inf."""
    if not all_finite(x):
        raise NonFiniteError(f"{what} contain NaN or Inf")
