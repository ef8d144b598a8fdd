"""Inference export: fold BatchNorm into the layer before it, and the CPU inference path the benchmarks time.

A pruned CNN runs ``conv → BatchNorm → ReLU`` as three operators per layer.  In eval mode a BatchNorm is an affine
map per channel, ``y = γ (x − μ) / √(σ² + ε) + β``, so when it reads a convolution's (or a linear layer's) output
and nothing else reads that output, it can be folded into the layer's weights (Ioffe & Szegedy 2015, Alg. 2, the
inference transform; Jacob et al. 2018, "Quantization and training of neural networks for efficient
integer-arithmetic-only inference", section 3.2, eq. 8 gives the folded weights)::

    W' = W · γ / √(σ² + ε)          (per output channel)
    b' = (b − μ) · γ / √(σ² + ε) + β

which removes one operator (and one pass over the activations) per layer, a cost that does not shrink when
channels are pruned and so eats into the speed-up of a narrow model.  The arithmetic is
``torch.nn.utils.fusion.fuse_conv_bn_weights`` / ``fuse_linear_bn_weights``; what this module adds is finding the
pairs on any model, traceable or not, by running it once on example inputs (like :mod:`.trace`): a pair is folded
only when the BatchNorm's input *is* the layer's output tensor and no other operation reads that tensor.

The result is plain PyTorch (the BatchNorm becomes ``nn.Identity``), so it saves and reloads like any model.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_weights, fuse_linear_bn_weights
from torch.overrides import TorchFunctionMode

from ..errors import InvalidArgumentError
from .trace import _tensors, call

_PRODUCERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
              nn.Linear)
_BN = nn.modules.batchnorm._BatchNorm


@dataclass(frozen=True)
class FusedPair:
    """One folded pair: the layer that now carries the BatchNorm, and the BatchNorm (now ``nn.Identity``)."""

    layer: str
    batchnorm: str


class _Uses(TorchFunctionMode):
    """Counts, for every watched tensor, the torch operations that read it and return a tensor (metadata calls
    such as ``x.dim()`` or ``x.shape`` return no tensor and do not read values)."""

    def __init__(self) -> None:
        super().__init__()
        self.watched: dict[int, torch.Tensor] = {}  # id -> tensor (kept alive so ids stay unique)
        self.uses: dict[int, int] = {}

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.watched and _tensors(out):
            for t in _tensors(args) + _tensors(kwargs):
                if id(t) in self.watched and self.watched[id(t)] is t:
                    self.uses[id(t)] = self.uses.get(id(t), 0) + 1
        return out


def _set_child(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def fuse_bn(model: nn.Module, example_inputs: Any) -> list[FusedPair]:
    """Fold every eval-mode BatchNorm that reads only a convolution's or linear layer's output into that layer,
    in place; the BatchNorm becomes ``nn.Identity`` and outputs stay equal to the eval-mode model's (up to float
    rounding).  Returns the folded pairs.

    Folding (Jacob et al. 2018, eq. 8; the inference form of Ioffe & Szegedy 2015, Alg. 2):
    ``W' = W·γ/√(σ²+ε)``, ``b' = (b−μ)·γ/√(σ²+ε) + β`` per output channel.  A pair is folded when, on
    ``example_inputs``, the BatchNorm's input is the very tensor the layer returned, no other operation reads that
    tensor (nor is it a model output), each module runs once, and the normalised dimension is the layer's output
    channel (dim 1 of a batched convolution, the features of a 2-D linear output).  Skipped, with a warning naming
    them: layers whose weight is parametrized (e.g. a secateurs mask: call ``secateurs.finalize`` first) or shared,
    grouped transposed convolutions, BatchNorms without running statistics.

    The model must be in eval mode (``model.eval()``): the fold uses the running statistics, and the fused model no
    longer normalises by batch statistics, so it is for inference only.
    """
    if not isinstance(model, nn.Module):
        raise InvalidArgumentError(f"fuse_bn expects an nn.Module, got {type(model).__name__}")
    if model.training:
        raise InvalidArgumentError("fuse_bn folds the BatchNorm running statistics, which only eval mode uses: "
                                   "call model.eval() first")
    names = {id(m): n for n, m in model.named_modules(remove_duplicate=False)}
    calls: dict[str, int] = {}
    produced: dict[int, str] = {}  # id(output) -> producer name
    bn_input: dict[str, torch.Tensor] = {}
    rec = _Uses()

    def after_layer(mod: nn.Module, inp: Any, out: Any) -> None:
        n = names[id(mod)]
        calls[n] = calls.get(n, 0) + 1
        if isinstance(out, torch.Tensor):
            produced[id(out)] = n
            rec.watched[id(out)] = out

    def before_bn(mod: nn.Module, inp: Any) -> None:
        n = names[id(mod)]
        calls[n] = calls.get(n, 0) + 1
        if inp and isinstance(inp[0], torch.Tensor):
            bn_input[n] = inp[0]

    hooks = []
    for m in model.modules():
        if isinstance(m, _PRODUCERS):
            hooks.append(m.register_forward_hook(after_layer))
        elif isinstance(m, _BN):
            hooks.append(m.register_forward_pre_hook(before_bn))
    try:
        with torch.no_grad(), rec:
            outputs = call(model, example_inputs)
    except Exception as e:
        raise InvalidArgumentError(f"fuse_bn runs the model once on example_inputs, and that failed: "
                                   f"{type(e).__name__}: {e}") from e
    finally:
        for h in hooks:
            h.remove()
    out_ids = {id(t) for t in _tensors(outputs)}
    shared = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        shared[id(p)] = shared.get(id(p), 0) + 1

    pairs: list[tuple[str, str]] = []
    skipped: list[str] = []
    for bn_name, x in bn_input.items():
        layer_name = produced.get(id(x))
        if layer_name is None or rec.watched.get(id(x)) is not x:
            continue  # the BatchNorm does not read a layer's raw output
        if rec.uses.get(id(x), 0) != 1 or id(x) in out_ids or calls[layer_name] != 1 or calls[bn_name] != 1:
            continue  # something else reads the pre-BatchNorm values, or a module runs twice
        layer, bn = model.get_submodule(layer_name), model.get_submodule(bn_name)
        transposed = isinstance(layer, nn.modules.conv._ConvTransposeNd)
        if isinstance(layer, nn.Linear):
            if x.dim() != 2:
                continue  # a BatchNorm1d on (N, C, L) normalises dim 1, not the linear layer's features
        elif x.dim() != layer.weight.dim():
            continue  # an unbatched convolution: dim 1 is not the channel
        if parametrize.is_parametrized(layer) or shared.get(id(layer.weight), 0) > 1 or (
                layer.bias is not None and shared.get(id(layer.bias), 0) > 1):
            skipped.append(f"{layer_name} (parametrized or shared weight)")
            continue
        if transposed and layer.groups != 1:
            skipped.append(f"{layer_name} (grouped transposed convolution)")
            continue
        if bn.running_mean is None or bn.running_var is None:
            skipped.append(f"{bn_name} (no running statistics)")
            continue
        pairs.append((layer_name, bn_name))
    if skipped:
        warnings.warn("fuse_bn left these BatchNorms unfolded: " + ", ".join(skipped), stacklevel=2)

    with torch.no_grad():
        for layer_name, bn_name in pairs:
            layer, bn = model.get_submodule(layer_name), model.get_submodule(bn_name)
            # fold in float64, then round once to the layer's dtype: the fold adds no rounding error of its own
            d = [None if t is None else t.detach().double()
                 for t in (layer.weight, layer.bias, bn.running_mean, bn.running_var, bn.weight, bn.bias)]
            args = (d[0], d[1], d[2], d[3], bn.eps, d[4], d[5])
            if isinstance(layer, nn.Linear):
                w, b = fuse_linear_bn_weights(*args)
            else:
                w, b = fuse_conv_bn_weights(*args, transpose=isinstance(layer, nn.modules.conv._ConvTransposeNd))
            layer.weight = nn.Parameter(w.detach().to(layer.weight.dtype), requires_grad=layer.weight.requires_grad)
            layer.bias = nn.Parameter(b.detach().to(layer.weight.dtype), requires_grad=layer.weight.requires_grad)
            _set_child(model, bn_name, nn.Identity())
    return [FusedPair(a, b) for a, b in pairs]


def for_inference(model: nn.Module, example_inputs: Any, *, channels_last: bool = False,
                  freeze: bool = False) -> nn.Module:
    """The CPU inference form of ``model``, for a dense and a pruned model alike: eval mode, BatchNorm folded
    (:func:`fuse_bn`, in place), optionally ``channels_last`` weights (then feed ``channels_last`` inputs) and
    optionally a frozen TorchScript module (``torch.jit.trace`` on ``example_inputs`` → ``torch.jit.freeze`` →
    ``torch.jit.optimize_for_inference``, which fuses convolution + ReLU and prepacks oneDNN weights).

    ``freeze=True`` returns a ``torch.jit.ScriptModule`` specialised to the traced control flow (one
    path, no training); otherwise the (modified) ``model`` itself.  Which of the forms is fastest depends on the
    batch size and the widths: ``benchmarks/structured.py`` measures all of them (its ``deploy`` section).
    TorchScript is deprecated (torch 2.13 warns on trace, freeze and optimize_for_inference); the eager forms
    are the ones that will last.
    """
    model.eval()
    fuse_bn(model, example_inputs)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if not freeze:
        return model
    inputs = example_inputs
    if channels_last:
        inputs = _map(example_inputs, lambda t: t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t)
    with torch.no_grad():
        scripted = torch.jit.trace(model, inputs if isinstance(inputs, tuple) else (inputs,), strict=False)
        return torch.jit.optimize_for_inference(torch.jit.freeze(scripted))


def _map(x: Any, fn: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return fn(x)
    if isinstance(x, (list, tuple)):
        return type(x)(_map(v, fn) for v in x)
    return x
