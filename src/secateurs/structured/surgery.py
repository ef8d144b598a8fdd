"""Physical surgery: slice the parameters of every member of every pruned group, then fix module attributes.

A parameter is replaced once (tied weights stay tied: every module that held the old Parameter gets the new one)
and each module's size attributes are re-read from its new weights (``in_features``, ``out_channels``, ``groups``
of a depthwise convolution, ``num_features``, ``normalized_shape``...) by the *surgery handler* of its type.
Handlers live in the one registry (kind ``surgery``, keyed by the module type's qualified name) and are looked up
along the type's MRO, so a subclass of ``nn.Linear`` uses Linear's; a user layer gets its own with
:func:`register_surgery`.  :class:`Undo` restores every touched module exactly, so a failure after surgery leaves
the model as it was.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from .. import registry
from ..errors import InvalidArgumentError
from .graph import Space

# handler(module, kept): called after the module's sliced tensors were put in place; ``kept`` maps each of its
# parameter/buffer names that changed to {dimension: indices kept (a LongTensor)}
Handler = Callable[[nn.Module, dict[str, dict[int, torch.Tensor]]], None]


def _key(module_type: type) -> str:
    return f"{module_type.__module__}.{module_type.__qualname__}"


def register_surgery(module_type: type | str, handler: Handler | None = None) -> Handler | Callable[[Handler], Handler]:
    """Register ``handler(module, kept)`` as the surgery of ``module_type`` (a class, or its qualified name
    ``"package.module.Class"`` for a class that cannot be imported here), directly or as a decorator::

        @secateurs.structured.register_surgery(MyLayer)
        def _(m, kept):
            m.width = m.weight.shape[0]          # re-read the sizes the forward uses
            m.table = m.table[kept["weight"][0]]  # slice a plain tensor attribute the same way

    The handler runs after the module's parameters and buffers were sliced (``kept``: name -> {dim: kept
    indices}); it updates what the dependency graph cannot see: size attributes, plain tensors, caches.
    Subclasses of ``module_type`` use it too unless they have their own."""
    if not (isinstance(module_type, str) or isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise InvalidArgumentError(f"register_surgery needs an nn.Module subclass (or its qualified name), got "
                                   f"{module_type!r}")
    key = module_type if isinstance(module_type, str) else _key(module_type)

    def deco(fn: Handler) -> Handler:
        if not callable(fn):
            raise InvalidArgumentError(f"a surgery handler must be callable handler(module, kept), got {fn!r}")
        registry.register("surgery", key)(fn)
        return fn
    return deco(handler) if handler is not None else deco


def surgery_for(module: nn.Module) -> Handler | None:
    """The surgery handler of ``module``'s type (the first along its MRO), or None."""
    table = registry._REGISTRY.get("surgery", {})
    for t in type(module).__mro__:
        fn = table.get(_key(t))
        if fn is not None:
            return fn
    return None


@register_surgery(nn.Linear)
def _fix_linear(m: nn.Linear, kept: dict | None = None) -> None:
    m.out_features, m.in_features = m.weight.shape


@register_surgery(nn.modules.conv._ConvNd)
def _fix_conv(m: nn.modules.conv._ConvNd, kept: dict | None = None) -> None:
    w = m.weight
    if m.transposed:
        m.in_channels, m.out_channels = w.shape[0], w.shape[1] * m.groups
        return
    if m.groups > 1 and m.groups == m.in_channels and w.shape[1] == 1 and m.out_channels == m.in_channels:
        m.in_channels = m.out_channels = m.groups = w.shape[0]  # depthwise stays depthwise
    else:
        m.out_channels, m.in_channels = w.shape[0], w.shape[1] * m.groups


@register_surgery(nn.modules.batchnorm._NormBase)
def _fix_norm(m: nn.Module, kept: dict | None = None) -> None:
    t = m.weight if getattr(m, "weight", None) is not None else m.running_mean
    m.num_features = t.shape[0]


@register_surgery(nn.GroupNorm)
def _fix_group_norm(m: nn.GroupNorm, kept: dict | None = None) -> None:
    if m.weight is None:
        return
    if m.num_groups == m.num_channels:  # one channel per group stays so
        m.num_groups = m.weight.shape[0]
    m.num_channels = m.weight.shape[0]


@register_surgery(nn.LayerNorm)
def _fix_layer_norm(m: nn.LayerNorm, kept: dict | None = None) -> None:
    if m.weight is not None:
        m.normalized_shape = tuple(m.weight.shape)


@register_surgery(nn.Embedding)
def _fix_embedding(m: nn.Embedding, kept: dict | None = None) -> None:
    m.num_embeddings, m.embedding_dim = m.weight.shape


register_surgery(nn.EmbeddingBag, _fix_embedding)


@register_surgery(nn.PReLU)
def _fix_prelu(m: nn.PReLU, kept: dict | None = None) -> None:
    m.num_parameters = m.weight.numel()


@register_surgery("transformers.pytorch_utils.Conv1D")
def _fix_hf_conv1d(m: nn.Module, kept: dict | None = None) -> None:
    m.nx, m.nf = m.weight.shape


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
    params_of = {id(m): {**m._parameters, **m._buffers} for m in touched}  # the tensors before the cut
    new: dict[int, torch.Tensor] = {}
    for pid, (p, dims) in masks.items():
        with torch.no_grad():
            t = p.detach()
            for d, mask in sorted(dims.items()):
                t = t.index_select(d, mask.nonzero().squeeze(1).to(t.device))
            t = t.clone()
        new[pid] = nn.Parameter(t, requires_grad=p.requires_grad) if isinstance(p, nn.Parameter) else t
    try:
        _replace(touched, new, masks, params_of)
    except Exception:  # a surgery handler failed: nothing of the cut stays
        undo()
        raise
    return undo, touched


def _replace(touched: list[nn.Module], new: dict[int, torch.Tensor], masks: dict, params_of: dict) -> None:
    for m in touched:
        for k, v in list(m._parameters.items()):
            if v is not None and id(v) in new:
                m._parameters[k] = new[id(v)]
        for k, v in list(m._buffers.items()):
            if v is not None and id(v) in new:
                m._buffers[k] = new[id(v)]
        handler = surgery_for(m)
        if handler is not None:
            kept = {k: {d: mask.nonzero().squeeze(1) for d, mask in masks[id(v)][1].items()}
                    for k, v in list(params_of[id(m)].items()) if v is not None and id(v) in masks}
            handler(m, kept)
