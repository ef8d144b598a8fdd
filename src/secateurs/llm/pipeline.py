"""The sequential, block-by-block calibration pipeline of SparseGPT (Frantar & Alistarh 2023, opt.py
``opt_sequential``) and Wanda (Sun et al. 2023, lib/prune.py ``prune_wanda``), written once for every method.

1. The inputs of block 0 are captured for all calibration rows by a forward pre-hook (``with_kwargs=True``) that
   records the hidden states *and every keyword argument the block is really called with* (rotary
   ``position_embeddings``, attention mask, ``position_ids``...) and then stops the forward with a private
   exception — nothing is re-derived per model family.
2. For each block: forward pre-hooks on its linear layers accumulate the statistics the method needs
   (:class:`ScalerRow`, :class:`Hessian`) while the dense block runs on the stored inputs; the method prunes
   each layer; the block runs again on the same inputs and its (pruned) outputs replace the inputs in place,
   to feed the next block.  Unlike the references, which keep two activation buffers (``inps``/``outs``),
   one buffer is enough because row j's input is dead once row j's output exists.
3. Only the current block (and the activations) live on ``device``; on CPU the block is run in float32.

Decoder layers of transformers 5.x return a tensor rather than a tuple; both are accepted.
"""
from __future__ import annotations

import math
import sys
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ModelStructureError, NonFiniteError
from ..patterns import nm_keep_mask
from .blocks import find_linears, is_transposed

__all__ = [
    "Target", "ScalerRow", "Hessian", "LLMMethod", "prune_lowest_per_row", "prune_lowest_in_group",
    "prune_nm", "capture_inputs", "sequential", "BlockInputs",
]


# --------------------------------------------------------------------------------------------- targets & masks
@dataclass(frozen=True)
class Target:
    """What one layer must become: ``sparsity`` (unstructured) or keep ``n`` of every ``m`` inputs (N:M)."""

    sparsity: float
    n: int | None = None
    m: int | None = None

    @property
    def is_nm(self) -> bool:
        """True for an N:M target."""
        return self.m is not None

    def describe(self) -> str:
        """``"N:M"`` or the sparsity, for reports."""
        return f"{self.n}:{self.m}" if self.is_nm else f"{self.sparsity:.4f}"


def prune_lowest_per_row(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Prune mask (True = remove) of the ``int(cols * sparsity)`` lowest scores of every row.

    Wanda's comparison group (Sun et al. 2023, Sec. 3; lib/prune.py ``prune_wanda``: stable ascending sort along
    the row, the first ``int(W.shape[1]*sparsity_ratio)`` indices are pruned)."""
    k = int(scores.shape[1] * sparsity)
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if k > 0:
        idx = torch.sort(scores, dim=-1, stable=True).indices[:, :k]
        mask.scatter_(1, idx, True)
    return mask


def prune_lowest_in_group(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Prune mask of exactly ``int(numel * sparsity)`` lowest scores of the whole tensor (one comparison group).

    The references use ``score <= sorted[int(numel*s)]``, which removes one weight more than ``int(numel*s)``
    (more on ties); secateurs removes exactly ``int(numel*s)`` so that reported sparsities are exact."""
    k = int(scores.numel() * sparsity)
    mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    if k > 0:
        mask[torch.sort(scores.reshape(-1), stable=True).indices[:k]] = True
    return mask.reshape(scores.shape)


def prune_nm(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Prune mask that keeps the ``n`` highest of every ``m`` consecutive input columns of each row."""
    return ~nm_keep_mask(scores, n, m)


# ------------------------------------------------------------------------------------------------ statistics
class ScalerRow:
    """Running mean over calibration sequences of ``||X_j||²`` per input column j (Wanda's ``scaler_row``).

    Matches lib/layerwrapper.py ``WrappedGPT.add_batch``: ``scaler *= n/(n+b); scaler += ||x_j||²/(n+b)``
    where b is the number of sequences in the batch, so ``sqrt(scaler_row)`` is ``||X_j||₂/sqrt(nsamples)``."""

    def __init__(self, cols: int, device: torch.device):
        self.value = torch.zeros(cols, device=device, dtype=torch.float32)
        self.nsamples = 0

    def add(self, x: torch.Tensor, nseq: int) -> None:
        """Fold in the inputs of ``nseq`` sequences (any leading shape, last dim = input columns)."""
        x = x.reshape(-1, x.shape[-1]).float()
        self.value *= self.nsamples / (self.nsamples + nseq)
        self.nsamples += nseq
        self.value += (x * x).sum(dim=0) / self.nsamples


class Hessian:
    """Running ``H = (2/n) Σ x xᵀ`` in float32 (SparseGPT, Frantar & Alistarh 2023, sparsegpt.py ``add_batch``)."""

    def __init__(self, cols: int, device: torch.device):
        self.value = torch.zeros(cols, cols, device=device, dtype=torch.float32)
        self.nsamples = 0

    def add(self, x: torch.Tensor, nseq: int) -> None:
        """Fold in the inputs of ``nseq`` sequences (any leading shape, last dim = input columns)."""
        x = x.reshape(-1, x.shape[-1]).float()
        self.value *= self.nsamples / (self.nsamples + nseq)
        self.nsamples += nseq
        x = math.sqrt(2 / self.nsamples) * x
        self.value.addmm_(x.t(), x)


STATS: dict[str, type] = {"scaler_row": ScalerRow, "hessian": Hessian}


class LLMMethod:
    """A post-training pruning method: which statistics it needs and how it prunes one (out, in) matrix.

    Subclasses set ``stats`` (names in :data:`STATS`), ``needs_gradients``/``needs_data`` and implement
    :meth:`prune_layer`; options are keyword arguments of ``__init__`` (validated there)."""

    stats: tuple[str, ...] = ()
    needs_gradients = False
    needs_data = True

    def options(self) -> dict[str, Any]:
        """The method's options, for the report and secateurs.json."""
        return {}

    def check(self, model: nn.Module) -> None:
        """Raise before anything is touched if the method cannot run on ``model``."""

    def check_target(self, target: Target) -> None:
        """Raise if the method cannot reach ``target`` (e.g. an N:M group size it cannot handle)."""

    def prepare(self, model: nn.Module, blocks: nn.ModuleList, rows: torch.Tensor, progress: Any) -> None:
        """Work on the dense model before the sequential pass (GBLM's gradients)."""

    def prune_layer(self, block: int, name: str, weight: torch.Tensor, stats: dict[str, Any],
                    target: Target) -> torch.Tensor:
        """Return the pruned float32 (out, in) weight (zeros baked in); ``weight`` may be modified."""
        raise NotImplementedError


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


def batches(rows: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Consecutive chunks of ``batch_size`` calibration rows, in order."""
    return [rows[i:i + batch_size] for i in range(0, rows.shape[0], batch_size)]


@torch.no_grad()
def capture_inputs(model: nn.Module, blocks_path: str, blocks: nn.ModuleList, rows: torch.Tensor,
                   batch_size: int, device: torch.device, dtype: torch.dtype | None) -> BlockInputs:
    """Run the model on the calibration rows until block 0 and record its inputs (hidden states + kwargs)."""
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
            for batch in batches(rows, batch_size):
                try:
                    model(input_ids=batch.to(device))
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


@contextmanager
def _collect(block: nn.Module, kinds: Sequence[str], device: torch.device) -> Iterator[dict[str, dict[str, Any]]]:
    """Forward pre-hooks on every linear of ``block`` that feed the inputs into the requested statistics.

    Layers called on the very same input tensor (q/k/v, gate/up) share one set of statistics: they are
    identical by construction, and computing a Hessian once instead of three times is most of SparseGPT's
    statistics cost.  The sharing is decided on the first batch and checked on every later one."""
    layers = find_linears(block)
    stats: dict[str, dict[str, Any]] = {}
    source: dict[str, str] = {}  # layer -> the layer whose statistics it shares
    seen: dict[str, Any] = {}  # layer -> weakref of its last input
    last: list[Any] = [None, None]  # (name, weakref) of the previous hook call
    handles = []
    for name, layer in layers.items():
        cols = layer.weight.shape[0] if is_transposed(layer) else layer.weight.shape[1]

        def hook(_mod: nn.Module, args: tuple, kwargs: dict, _name: str = name, _cols: int = cols) -> None:
            x = args[0] if args else kwargs["input"]
            prev_name, prev_ref = last
            last[0], last[1] = _name, weakref.ref(x)
            seen[_name] = last[1]
            if _name not in stats:  # first call: share with the previous layer if it saw this very tensor
                if prev_ref is not None and prev_ref() is x and prev_name in stats:
                    source[_name] = source.get(prev_name, prev_name)
                    stats[_name] = stats[prev_name]
                    return
                stats[_name] = {kind: STATS[kind](_cols, device) for kind in kinds}
            elif _name in source:
                if seen[source[_name]]() is not x:
                    raise ModelStructureError(f"{_name} and {source[_name]} shared an input on the first "
                                              f"calibration batch but not later; use batch_size=1")
                return
            nseq = x.shape[0] if x.dim() == 3 else 1
            for collector in stats[_name].values():
                collector.add(x.detach(), nseq)

        handles.append(layer.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        yield stats
    finally:
        for h in handles:
            h.remove()


@contextmanager
def _progress(enabled: bool, total: int, description: str) -> Iterator[Callable[[], None]]:
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)


def _check_finite(block_index: int, out: torch.Tensor) -> None:
    if not torch.isfinite(out.sum()):  # one reduction: NaN/Inf anywhere makes the sum non-finite
        raise NonFiniteError(f"block {block_index} produced NaN/Inf activations on the calibration data")


@torch.no_grad()
def sequential(model: nn.Module, blocks_path: str, blocks: nn.ModuleList, rows: torch.Tensor, *,
               kinds: Sequence[str], process: Callable[[int, nn.Module, dict[str, dict[str, Any]]], None],
               modifies: bool, device: torch.device, batch_size: int, progress: bool, description: str) -> list[float]:
    """Walk the blocks in order; for each, collect ``kinds`` statistics and call ``process(i, block, stats)``.

    With ``modifies`` (pruning) the block is re-run on the same inputs after ``process`` to produce the pruned
    outputs for the next block, as SparseGPT/Wanda do; without it (a dense statistics pass such as OWL's
    outlier pass) the outputs of the statistics pass are used directly.  Returns the seconds spent per block.
    """
    work_dtype = torch.float32 if device.type == "cpu" else None
    inputs = capture_inputs(model, blocks_path, blocks, rows, batch_size, device, work_dtype)
    seconds: list[float] = []
    with _progress(progress, len(blocks), description) as advance:
        for i, block in enumerate(blocks):
            t0 = time.perf_counter()
            first = next(iter(block.parameters()), None)
            home = (first.device, first.dtype) if first is not None else (device, None)
            block.to(device=device, dtype=work_dtype or home[1])
            try:
                with _collect(block, kinds, device) as stats:
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
            if device.type == "cuda":
                torch.cuda.empty_cache()
            seconds.append(time.perf_counter() - t0)
            advance()
    return seconds


def progress_bar(enabled: bool, total: int, description: str) -> Any:
    """Progress bar context manager on stderr (a no-op when disabled); yields an ``advance()`` callable."""
    return _progress(enabled and sys.stderr is not None, total, description)
