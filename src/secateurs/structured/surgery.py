"""Physical surgery: slice the parameters of every member of every pruned group, then fix module attributes.

A parameter is replaced once (tied weights stay tied: every module that held the old Parameter gets the new one)
and each module's size attributes are re-read from its new weights (``in_features``, ``out_channels``, ``groups``
of a depthwise convolution, ``num_features``, ``normalized_shape``...).  :class:`Undo` restores every touched
module exactly, so a failure after surgery leaves the model as it was.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .graph import Space


def _fix_linear(m: nn.Linear) -> None:
    m.out_features, m.in_features = m.weight.shape


def _fix_conv(m: nn.modules.conv._ConvNd) -> None:
    w = m.weight
    if m.transposed:
        m.in_channels, m.out_channels = w.shape[0], w.shape[1] * m.groups
        return
    if m.groups > 1 and m.groups == m.in_channels and w.shape[1] == 1 and m.out_channels == m.in_channels:
        m.in_channels = m.out_channels = m.groups = w.shape[0]  # depthwise stays depthwise
    else:
        m.out_channels, m.in_channels = w.shape[0], w.shape[1] * m.groups


def _fix_norm(m: nn.Module) -> None:
    t = m.weight if getattr(m, "weight", None) is not None else m.running_mean
    m.num_features = t.shape[0]


def _fix_group_norm(m: nn.GroupNorm) -> None:
    if m.num_groups == m.num_channels:  # one channel per group stays so
        m.num_groups = m.weight.shape[0]
    m.num_channels = m.weight.shape[0]


def _fix_layer_norm(m: nn.LayerNorm) -> None:
    if m.weight is not None:
        m.normalized_shape = tuple(m.weight.shape)


def _fix_embedding(m: nn.Embedding) -> None:
    m.num_embeddings, m.embedding_dim = m.weight.shape


def _fix_prelu(m: nn.PReLU) -> None:
    m.num_parameters = m.weight.numel()


def _fix_hf_conv1d(m: nn.Module) -> None:
    m.nx, m.nf = m.weight.shape


def _fixer(m: nn.Module):
    if isinstance(m, nn.Linear):
        return _fix_linear
    if isinstance(m, nn.modules.conv._ConvNd):
        return _fix_conv
    if isinstance(m, (nn.modules.batchnorm._NormBase,)):
        return _fix_norm
    if isinstance(m, nn.LayerNorm):
        return _fix_layer_norm
    if isinstance(m, nn.GroupNorm) and m.weight is not None:
        return _fix_group_norm
    if isinstance(m, (nn.Embedding, nn.EmbeddingBag)):
        return _fix_embedding
    if isinstance(m, nn.PReLU):
        return _fix_prelu
    if type(m).__name__ == "Conv1D" and hasattr(m, "nf"):
        return _fix_hf_conv1d
    return None


class Undo:
    """Snapshot of the modules surgery touches: parameters, buffers and plain attributes."""

    def __init__(self, modules: Iterable[nn.Module]):
        self.saved = [(m, dict(m._parameters), dict(m._buffers),
                       {k: v for k, v in vars(m).items() if not k.startswith("_")}) for m in modules]

    def __call__(self) -> None:
        for m, params, buffers, attrs in self.saved:
            m._parameters.clear()
            m._parameters.update(params)
            m._buffers.clear()
            m._buffers.update(buffers)
            for k in [k for k in vars(m) if not k.startswith("_")]:
                if k not in attrs:
                    delattr(m, k)
            m.__dict__.update(attrs)


def keep_masks(removals: dict[Space, torch.Tensor]) -> dict[int, tuple[torch.Tensor, dict[int, torch.Tensor]]]:
    """Per parameter (by id): the tensor and, per dimension, a boolean mask of the elements that stay."""
    out: dict[int, tuple[torch.Tensor, dict[int, torch.Tensor]]] = {}
    for space, drop in removals.items():
        if drop.numel() == 0:
            continue
        for mem in space.members:
            p, masks = out.setdefault(id(mem.param), (mem.param, {}))
            mask = masks.setdefault(mem.dim, torch.ones(p.shape[mem.dim], dtype=torch.bool))
            idx = (mem.offset + drop[:, None] * mem.inner + torch.arange(mem.inner)[None, :]).reshape(-1)
            mask[idx] = False
    return out


def apply(model: nn.Module, removals: dict[Space, torch.Tensor]) -> tuple[Undo, list[nn.Module]]:
    """Slice every member of every space in ``removals`` (space -> channel indices to drop); returns the undo and
    the modules whose tensors changed."""
    masks = keep_masks(removals)
    touched = [m for m in model.modules()
               if any(id(t) in masks for t in list(m._parameters.values()) + list(m._buffers.values())
                      if t is not None)]
    undo = Undo(touched)
    new: dict[int, torch.Tensor] = {}
    for pid, (p, dims) in masks.items():
        with torch.no_grad():
            t = p.detach()
            for d, mask in sorted(dims.items()):
                t = t.index_select(d, mask.nonzero().squeeze(1).to(t.device))
            t = t.clone()
        new[pid] = nn.Parameter(t, requires_grad=p.requires_grad) if isinstance(p, nn.Parameter) else t
    for m in touched:
        for k, v in list(m._parameters.items()):
            if v is not None and id(v) in new:
                m._parameters[k] = new[id(v)]
        for k, v in list(m._buffers.items()):
            if v is not None and id(v) in new:
                m._buffers[k] = new[id(v)]
        fix = _fixer(m)
        if fix is not None:
            fix(m)
    return undo, touched
