"""The sequential, block-by-block calibration pipeline of SparseGPT (Frantar & Alistarh 2023, opt.py
``opt_sequential``) and Wanda (Sun et al. 2023, lib/prune.py ``prune_wanda``), written once for every criterion,
allocation and solver, and for any model whose layers sit in a list of blocks (decoders, encoders, a ViT's blocks).

1. The inputs of block 0 are captured for every calibration batch by a forward pre-hook (``with_kwargs=True``)
   that records the hidden states *and every keyword argument the block is really called with* (rotary
   ``position_embeddings``, attention mask, ``position_ids``...) and then stops the forward with a private
   exception — nothing is re-derived per model family.
2. For each block: the statistics that were asked for are collected (:func:`secateurs.core.stats.collect`) while
   the block runs on the stored inputs; ``process`` prunes the block; the block runs again on the same inputs
   and its (pruned) outputs replace the inputs in place, to feed the next block.  Unlike the references, which
   keep two activation buffers (``inps``/``outs``), one buffer is enough: row j's input is dead once row j's
   output exists.
3. Only the current block (and the activations) live on ``device``; on CPU the block is run in float32.

Blocks may return a tensor, a tuple (hidden states first) or a ``ModelOutput``; each block's output must be the
next block's input (as in every transformer stack).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ModelStructureError, NonFiniteError
from .feed import Feed
from .finite import all_finite
from .progress import progress_bar
from .stats import collect
from .targets import Target

__all__ = ["BlockInputs", "capture_inputs", "run_block", "sequential"]


# ------------------------------------------------------------------------------------------------- capture
class _StopForward(Exception):
    """Raised by the capture hook to end the model's forward once block 0's inputs are recorded."""


@dataclass
class BlockInputs:
    """The current block's inputs per calibration batch, plus the extra positional and keyword arguments
    recorded from the real call of block 0 (shared across batches when equal)."""

    hidden: list[torch.Tensor]
    args: list[tuple]
    kwargs: list[dict[str, Any]]
    key: str | None  # None: hidden states are the first positional argument; else their keyword name


def _same(a: Any, b: Any) -> bool:
    if torch.is_tensor(a) or torch.is_tensor(b):
        return torch.is_tensor(a) and torch.is_tensor(b) and a.shape == b.shape and a.dtype == b.dtype \
            and a.device == b.device and torch.equal(a, b)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a is b or (type(a) is type(b) and isinstance(a, (int, float, bool, str)) and a == b)


def _to(obj: Any, device: torch.device, dtype: torch.dtype | None) -> Any:
    if torch.is_tensor(obj):
        if dtype is not None and obj.is_floating_point():
            return obj.to(device=device, dtype=dtype)
        return obj.to(device)
    if isinstance(obj, tuple):
        return tuple(_to(o, device, dtype) for o in obj)
    if isinstance(obj, list):
        return [_to(o, device, dtype) for o in obj]
    if isinstance(obj, dict):
        return {k: _to(v, device, dtype) for k, v in obj.items()}
    return obj


@contextmanager
def _outside_on(model: nn.Module, blocks_path: str, device: torch.device) -> Iterator[None]:
    """Temporarily move every parameter/buffer outside the blocks (embeddings, rotary, norms, head) to ``device``."""
    prefix = blocks_path + "."
    moved: list[tuple[Any, str, torch.device]] = []
    for mname, mod in model.named_modules():
        if mname == blocks_path or mname.startswith(prefix):
            continue
        for pname, p in list(mod._parameters.items()):
            if p is not None and p.device != device:
                moved.append((p, "param", p.device))
                p.data = p.data.to(device)
        for bname, b in list(mod._buffers.items()):
            if b is not None and b.device != device:
                moved.append((mod, bname, b.device))
                mod._buffers[bname] = b.to(device)
    try:
        yield
    finally:
        for obj, kind, dev in moved:
            if kind == "param":
                obj.data = obj.data.to(dev)
            else:
                obj._buffers[kind] = obj._buffers[kind].to(dev)


@torch.no_grad()
def capture_inputs(model: nn.Module, blocks_path: str, blocks: nn.ModuleList, feed: Feed, device: torch.device,
                   dtype: torch.dtype | None) -> BlockInputs:
    """Run the model on every calibration batch until block 0 and record its inputs (hidden states + kwargs)."""
    rec = BlockInputs([], [], [], None)

    def hook(_mod: nn.Module, args: tuple, kwargs: dict) -> None:
        kwargs = dict(kwargs)
        if args:
            hidden, rest = args[0], tuple(args[1:])
        elif "hidden_states" in kwargs:
            hidden, rest = kwargs.pop("hidden_states"), ()
            rec.key = "hidden_states"
        else:
            raise ModelStructureError("block 0 was called without a positional input or hidden_states=")
        rest, kwargs = _to(rest, device, dtype), _to(kwargs, device, dtype)
        if rec.args and _same(rest, rec.args[-1]):
            rest = rec.args[-1]
        if rec.kwargs and _same(kwargs, rec.kwargs[-1]):
            kwargs = rec.kwargs[-1]
        rec.hidden.append(hidden.detach().to(device=device, dtype=dtype or hidden.dtype))
        rec.args.append(rest)
        rec.kwargs.append(kwargs)
        raise _StopForward

    handle = blocks[0].register_forward_pre_hook(hook, with_kwargs=True)
    cfg = getattr(model, "config", None)
    use_cache = getattr(cfg, "use_cache", None)
    try:
        if use_cache is not None:
            cfg.use_cache = False
        with _outside_on(model, blocks_path, device):
            for batch in feed:
                try:
                    feed.forward(model, batch, device)
                except _StopForward:
                    continue
                raise ModelStructureError(f"the forward pass never reached the first block of {blocks_path!r}")
    finally:
        handle.remove()
        if use_cache is not None:
            cfg.use_cache = use_cache
    return rec


def run_block(block: nn.Module, inputs: BlockInputs, j: int) -> torch.Tensor:
    """Run ``block`` on calibration batch ``j`` exactly as the model called it; tensor or tuple output."""
    if inputs.key is None:
        out = block(inputs.hidden[j], *inputs.args[j], **inputs.kwargs[j])
    else:
        out = block(*inputs.args[j], **{inputs.key: inputs.hidden[j]}, **inputs.kwargs[j])
    if isinstance(out, (tuple, list)):
        out = out[0]
    elif not torch.is_tensor(out) and hasattr(out, "last_hidden_state"):
        out = out.last_hidden_state
    return out


def _check_finite(block_index: int, out: torch.Tensor) -> None:
    if not all_finite(out):
        raise NonFiniteError(f"block {block_index} produced NaN/Inf activations on the calibration data")


@torch.no_grad()
def sequential(model: nn.Module, blocks_path: str, blocks: nn.ModuleList, feed: Feed, *,
               targets: Sequence[Sequence[Target]], kinds: Sequence[str],
               process: Callable[[int, nn.Module, list[dict[str, Any]]], None], modifies: bool,
               device: torch.device, progress: bool, description: str, stream: Any = None) -> list[float]:
    """Walk the blocks in order; for each, collect ``kinds`` statistics of ``targets[i]`` (the targets inside
    block i) and call ``process(i, block, stats)`` with one dict of statistics per target.

    With ``modifies`` (pruning) the block is re-run on the same inputs after ``process`` to produce the pruned
    outputs for the next block, as SparseGPT/Wanda do; without it (a dense statistics pass such as OWL's
    outlier pass) the outputs of the statistics pass are used directly.  Returns the seconds spent per block.

    ``stream`` (checkpoints larger than memory, :mod:`secateurs.llm.stream`): ``stream.load(i, block, modifies)``
    gives block i its weights before it runs, ``stream.release(i, block, modifies)`` writes (when pruning) and
    frees them after; only one block is ever in memory.
    """
    work_dtype = torch.float32 if device.type == "cpu" else None
    inputs = capture_inputs(model, blocks_path, blocks, feed, device, work_dtype)
    seconds: list[float] = []
    with progress_bar(progress, len(blocks), description) as advance:
        for i, block in enumerate(blocks):
            t0 = time.perf_counter()
            if stream is not None:
                stream.load(i, block, modifies)
            first = next(iter(block.parameters()), None)
            home = (first.device, first.dtype) if first is not None else (device, None)
            block.to(device=device, dtype=work_dtype or home[1])
            try:
                with collect(targets[i], kinds, device) as stats:
                    for j in range(len(inputs.hidden)):
                        out = run_block(block, inputs, j)
                        if not modifies:  # dense pass: row j's input is dead once its output exists
                            _check_finite(i, out)
                            inputs.hidden[j] = out
                        del out
                process(i, block, stats)
                del stats
                if modifies:
                    for j in range(len(inputs.hidden)):
                        out = run_block(block, inputs, j)
                        _check_finite(i, out)
                        inputs.hidden[j] = out
                        del out
            finally:
                block.to(device=home[0], dtype=home[1])
            if stream is not None:
                stream.release(i, block, modifies)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            seconds.append(time.perf_counter() - t0)
            advance()
    return seconds
