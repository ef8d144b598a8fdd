"""Masks as ``torch.nn.utils.parametrize`` parametrizations.

The effective weight is ``original * mask`` every time it is read, so training after pruning keeps pruned
weights exactly zero with any optimizer: their gradient is zero, and the original entries are zeroed when a mask
is applied, so weight decay and Adam's moments keep them at zero too.  Masks are bool buffers (1 byte per weight,
bit-packed on disk).  :func:`finalize` bakes the zeros in and removes the machinery.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import InvalidArgumentError
from .targets import Target


class Mask(nn.Module):
    """Parametrization ``W -> W * mask`` with a boolean keep mask."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))
        # when a tensor: backward adds dL/dW of the *effective* weight here, pruned entries included (RigL's
        # "dense gradient"); the gradient of the original is masked, so it cannot give those entries
        self.dense_grad: torch.Tensor | None = None
        # training-time schedules set this: keep a copy of the mask in the weight's dtype (one more weight-sized
        # tensor; a step of a small model is ~40% cheaper).  Off by default, so pruned LLMs hold 1 byte per weight.
        self.float_cache = False
        self._float: torch.Tensor | None = None
        self._float_of: torch.Tensor | None = None
        self._float_version = -1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.float_cache:  # training: skip the bool -> float conversion of every multiply (forward and backward)
            f = self._float
            if f is None or f.dtype != x.dtype or f.device != x.device or self._float_of is not self.mask \
                    or self._float_version != self.mask._version:  # rebuilt whenever the mask changes
                f = self._float = self.mask.to(x.dtype)
                self._float_of, self._float_version = self.mask, self.mask._version
            out = x * f
        else:
            out = x * self.mask
        if self.dense_grad is not None and out.requires_grad:
            out.register_hook(self._accumulate)
        return out

    def _accumulate(self, g: torch.Tensor) -> None:
        self.dense_grad.add_(g.detach().to(self.dense_grad.dtype))

    def extra_repr(self) -> str:
        return f"density={self.mask.float().mean().item():.4f}"


def get_mask_module(module: nn.Module, param: str = "weight") -> Mask | None:
    if not parametrize.is_parametrized(module, param):
        return None
    for p in getattr(module.parametrizations, param):
        if isinstance(p, Mask):
            return p
    return None


def get_mask(t: Target) -> torch.Tensor | None:
    """The target's keep mask, or None if it has none."""
    m = get_mask_module(t.module, t.param)
    return None if m is None else m.mask


def set_mask(t: Target, keep: torch.Tensor, zero: bool = True) -> None:
    """Attach (or replace) the keep mask of a target; ``zero`` also zeroes the pruned original entries."""
    keep = keep.to(device=t.leaf.device, dtype=torch.bool).reshape(t.shape)
    m = get_mask_module(t.module, t.param)
    if m is None:
        parametrize.register_parametrization(t.module, t.param, Mask(keep), unsafe=True)
    elif keep.data_ptr() != m.mask.data_ptr():  # re-applying the attached mask itself needs no copy
        m.mask.copy_(keep)
    if zero:
        with torch.no_grad():  # where: one pass (mul_ by a bool mask first converts it to floats); pruned -> +0.0
            torch.where(keep, t.leaf, t.leaf.new_zeros(()), out=t.leaf)


def capture_dense_grads(targets: list[Target], enabled: bool = True) -> None:
    """Start (zeroed) or stop accumulating each masked target's dense gradient into ``Mask.dense_grad``.

    Costs one hook per weight read while enabled; :func:`dense_grad` reads the result.
    """
    for t in targets:
        m = get_mask_module(t.module, t.param)
        if m is None:
            raise InvalidArgumentError(f"layer {t.key!r} has no mask to capture a dense gradient for")
        m.dense_grad = torch.zeros(t.shape, dtype=torch.float32, device=t.leaf.device) if enabled else None


def dense_grad(t: Target) -> torch.Tensor | None:
    """The dense gradient accumulated since :func:`capture_dense_grads`, or None when not capturing."""
    m = get_mask_module(t.module, t.param)
    return None if m is None else m.dense_grad


def clear_mask(t: Target) -> None:
    """Remove a mask without baking it (the original weight comes back)."""
    m = get_mask_module(t.module, t.param)
    if m is None:
        return
    plist = getattr(t.module.parametrizations, t.param)
    if len(plist) == 1:
        parametrize.remove_parametrizations(t.module, t.param, leave_parametrized=False)
    else:  # keep other parametrizations the user registered
        del plist[[i for i, p in enumerate(plist) if p is m][0]]


def masked_targets(model: nn.Module) -> list[Target]:
    """Every weight of the model that carries a secateurs mask."""
    out = []
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module):
            for param in list(module.parametrizations.keys()):
                if get_mask_module(module, param) is not None:
                    out.append(Target(name, module, param))
    return out


def finalize(model: nn.Module) -> nn.Module:
    """Bake the zeros into the weights and remove every mask; returns the (same) plain model.

    Outputs are unchanged: the effective weight ``original * mask`` becomes the plain parameter.
    """
    for t in masked_targets(model):
        plist = getattr(t.module.parametrizations, t.param)
        if len(plist) == 1:
            parametrize.remove_parametrizations(t.module, t.param, leave_parametrized=True)
        else:
            m = get_mask_module(t.module, t.param)
            with torch.no_grad():
                plist.original.mul_(m.mask)
            clear_mask(t)
    return model


def sparsity(model: nn.Module, targets=None, ignore=None) -> float:
    """Fraction of zeros among the targeted weights.

    Default targets: the masked weights if the model has masks (whatever ``targets`` it was pruned with), else
    every Linear/Conv weight; zeros count whether they come from a mask or not (e.g. after :func:`finalize`).
    """
    from .targets import resolve_targets

    masked = masked_targets(model) if targets is None and ignore is None else []
    return zero_fraction(masked or resolve_targets(model, targets, ignore))


def zero_fraction(targets: list[Target]) -> float:
    """Fraction of zeros among the effective weights of ``targets``."""
    zeros = sum(int(torch.count_nonzero(t.weight == 0)) for t in targets)  # count_nonzero: bool sum is slow
    return zeros / max(1, sum(t.numel for t in targets))
