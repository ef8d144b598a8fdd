"""``secateurs.llm.prune``: post-training pruning of a Hugging Face transformer, block by block.

Every argument is checked before any weight is touched (method, allocation and pattern names; sparsity range;
N:M divisibility of every layer; calibration size and vocabulary; finiteness of the weights).  Then, in the
order of the references (SparseGPT, Frantar & Alistarh 2023; Wanda, Sun et al. 2023): GBLM's gradients on the
dense model, the allocation's dense pass (OWL), and the sequential pruning pass of :mod:`.pipeline`.  Zeros are
baked into the weights; the returned :class:`PruneReport` lists every layer's sparsity and prints as a table.
"""
from __future__ import annotations

import inspect
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import InvalidArgumentError, NonFiniteError, PatternError
from ..patterns import NM, Unstructured, parse
from ..registry import get
from .blocks import find_blocks, find_linears, weight_2d
from .calibration import calibration_rows
from .owl import AllocationContext, LLMAllocation, base_target
from .pipeline import LLMMethod, Target, sequential

__all__ = ["prune", "PruneReport", "LayerReport", "resolve_device"]


@dataclass
class LayerReport:
    """One pruned layer: qualified name, (out, in) shape, target and measured sparsity."""

    name: str
    block: int
    shape: tuple[int, int]
    target: float
    sparsity: float
    pattern: str


@dataclass
class PruneReport:
    """What :func:`prune` did: per-layer and overall sparsity, settings, calibration, timings."""

    method: str
    pattern: str
    allocation: str
    sparsity: float
    layers: list[LayerReport]
    overall_sparsity: float
    model_sparsity: float
    blocks_path: str
    calibration: dict[str, Any] | None
    method_options: dict[str, Any] = field(default_factory=dict)
    allocation_options: dict[str, Any] = field(default_factory=dict)
    block_targets: list[float] = field(default_factory=list)
    block_seconds: list[float] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"
    skipped: list[str] = field(default_factory=list)  # layers never called on the calibration data (left dense)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (used for secateurs.json and ``--json``)."""
        d = asdict(self)
        d["layers"] = [{**asdict(l), "shape": list(l.shape)} for l in self.layers]
        return d

    def table(self) -> Any:
        """A rich Table: one row per layer, then the overall sparsity."""
        from rich.table import Table

        t = Table(title=f"{self.method} · {self.pattern} · {self.allocation} · target {self.sparsity:.2%}")
        for col in ("layer", "shape", "target", "sparsity"):
            t.add_column(col, justify="left" if col == "layer" else "right")
        for l in self.layers:
            t.add_row(l.name, f"{l.shape[0]}×{l.shape[1]}", f"{l.target:.2%}", f"{l.sparsity:.2%}")
        t.add_section()
        t.add_row("overall (block linears)", "", f"{self.sparsity:.2%}", f"{self.overall_sparsity:.2%}")
        t.add_row("whole model (all parameters)", "", "", f"{self.model_sparsity:.2%}")
        return t

    def __rich__(self) -> Any:
        return self.table()

    def __str__(self) -> str:
        from rich.console import Console

        console = Console(record=True, width=110, file=open("/dev/null", "w"))  # noqa: SIM115
        console.print(self.table())
        text = console.export_text()
        console.file.close()
        return text


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a torch.device; None means cuda when available, else cpu."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidArgumentError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidArgumentError("device='cuda' was asked for but no CUDA GPU is available; use device='cpu'")
    return dev


def _init_options(cls: type, kind: str, name: str, options: dict[str, Any]) -> Any:
    params = inspect.signature(cls.__init__).parameters
    accepted = [p for p in params if p != "self"] if cls.__init__ is not object.__init__ else []
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise InvalidArgumentError(
            f"{kind} {name!r} does not take option(s) {', '.join(map(repr, unknown))}; "
            f"it accepts: {', '.join(accepted) or 'none'}"
        )
    return cls(**options)


def _split_options(alloc_cls: type, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Route ``owl_*`` and other allocation options to the allocation, the rest to the method."""
    alloc_params = set(inspect.signature(alloc_cls.__init__).parameters) - {"self", "args", "kwargs"}
    a = {k: v for k, v in options.items() if k in alloc_params or k.startswith("owl_")}
    return a, {k: v for k, v in options.items() if k not in a}


def _check_sparsity(sparsity: float | None, pattern: Any) -> tuple[float, int | None, int | None]:
    if isinstance(pattern, NM):
        implied = 1 - pattern.n / pattern.m
        if sparsity is not None and abs(float(sparsity) - implied) > 1e-9:
            raise InvalidArgumentError(
                f"pattern {pattern.name} implies sparsity {implied:g}, but sparsity={sparsity!r} was given; "
                f"pass sparsity=None (or {implied:g})"
            )
        return implied, pattern.n, pattern.m
    if sparsity is None:
        raise InvalidArgumentError("sparsity is required for unstructured pruning (None is only for N:M patterns)")
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 <= sparsity < 1:
        raise InvalidArgumentError(f"sparsity must be a number in [0, 1), got {sparsity!r}")
    return float(sparsity), None, None


def prune(model: nn.Module, calibration: Any = None, method: str = "wanda", sparsity: float | None = 0.5,
          pattern: str = "unstructured", allocation: str = "uniform", nsamples: int = 128, seqlen: int | None = None,
          device: str | torch.device | None = None, seed: int = 0, tokenizer: Any = None, progress: bool = True,
          *, blocks: str | None = None, batch_size: int = 1, **method_options: Any) -> PruneReport:
    """Prune a transformer's block linear layers post-training and return a :class:`PruneReport`.

    Methods (registry kind ``llm_method``): ``magnitude``; ``wanda`` (Sun et al. 2023, eq. 1); ``sparsegpt``
    (Frantar & Alistarh 2023, Alg. 1; options ``percdamp=0.01``, ``blocksize=128``); ``gblm`` (Das et al. 2023;
    options ``scale=100``, ``loss_fn``).  Allocations (``llm_allocation``): ``uniform``; ``owl`` (Yin et al.
    2023; options ``owl_lambda=0.08``, ``owl_m=5``).  Patterns: ``"unstructured"`` or ``"N:M"`` (then
    ``sparsity`` must be None or 1−N/M).

    ``calibration``: a 2-D (rows, seqlen) LongTensor of token ids used exactly as given, in order; or a 1-D id
    tensor, a text, a list of texts (with ``tokenizer``) or a path to a text file, from which ``nsamples``
    windows of ``seqlen`` tokens (default: the model's positions, at most 2048) are drawn with ``seed``.
    ``blocks`` names the ModuleList of blocks when discovery fails (e.g. ``"model.layers"``); ``batch_size``
    calibration rows run through a block at a time (1, as the references: on 2 CPU cores batching 8 rows of 256
    tokens was no faster and raised the peak memory by a third, benchmarks/results/llm_reference.json).  Only the current block lives on ``device`` (default cuda
    when available, else cpu; float32 on cpu).  Raises a :class:`~secateurs.errors.PruningError` subclass before
    any weight is touched when an argument is bad.
    """
    t0 = time.perf_counter()
    if not isinstance(model, nn.Module):
        raise InvalidArgumentError(f"model must be a torch nn.Module (a transformers model), "
                                   f"got {type(model).__name__}")
    method_cls = get("llm_method", method)
    alloc_cls = get("llm_allocation", allocation)
    pat = parse(pattern)
    if not isinstance(pat, (Unstructured, NM)):
        raise PatternError(f"LLM post-training pruning supports 'unstructured' and N:M patterns, not {pat.name!r}")
    target_sparsity, n, m = _check_sparsity(sparsity, pat)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
    alloc_opts, meth_opts = _split_options(alloc_cls, method_options)
    meth: LLMMethod = _init_options(method_cls, "method", method, meth_opts)
    alloc: LLMAllocation = _init_options(alloc_cls, "allocation", allocation, alloc_opts)
    alloc.check(target_sparsity, n, m)
    meth.check(model)
    meth.check_target(base_target(target_sparsity, n, m))
    dev = resolve_device(device)

    blocks_path, block_list = find_blocks(model, blocks)
    layers = [(i, name, layer) for i, blk in enumerate(block_list) for name, layer in find_linears(blk).items()]
    for i, name, layer in layers:
        w = weight_2d(layer)
        pat.validate(f"{blocks_path}.{i}.{name}", tuple(w.shape))
        if not torch.isfinite(w).all():
            raise NonFiniteError(f"{blocks_path}.{i}.{name} holds NaN/Inf weights; the checkpoint is corrupt")

    needs_data = meth.needs_data or alloc.needs_data or meth.needs_gradients
    rows, calib = (None, None)
    if needs_data or calibration is not None:
        rows, calib = calibration_rows(calibration, model, nsamples=nsamples, seqlen=seqlen, seed=seed,
                                       tokenizer=tokenizer)
    # ---- nothing has been touched up to here ----
    was_training = model.training
    model.eval()
    try:
        if meth.needs_gradients:
            meth.prepare(model, block_list, rows, progress)
        ctx = AllocationContext(model, blocks_path, block_list, rows, target_sparsity, n, m, dev, batch_size,
                                progress)
        targets = alloc.allocate(ctx)
        for t in set(targets):
            meth.check_target(t)
        skipped: list[str] = []
        seconds = _run(meth, model, blocks_path, block_list, rows, targets, dev, batch_size, progress, method,
                       skipped)
    finally:
        model.train(was_training)

    reports = []
    zeros = total = 0
    for i, name, layer in layers:
        if f"{blocks_path}.{i}.{name}" in skipped:
            continue
        w = weight_2d(layer)
        z = int((w == 0).sum())
        zeros, total = zeros + z, total + w.numel()
        reports.append(LayerReport(f"{blocks_path}.{i}.{name}", i, tuple(w.shape), targets[i].sparsity,
                                   z / w.numel(), targets[i].describe() if targets[i].is_nm else "unstructured"))
    all_params = sum(p.numel() for p in model.parameters())
    all_zeros = sum(int((p == 0).sum()) for p in model.parameters())
    return PruneReport(
        method=method, pattern=pat.name, allocation=allocation, sparsity=target_sparsity, layers=reports,
        overall_sparsity=zeros / max(total, 1), model_sparsity=all_zeros / max(all_params, 1),
        blocks_path=blocks_path, calibration=calib, method_options=meth.options(),
        allocation_options=alloc.options(), block_targets=[t.sparsity for t in targets], block_seconds=seconds,
        seconds=time.perf_counter() - t0, device=str(dev), skipped=skipped,
    )


def _run(meth: LLMMethod, model: nn.Module, blocks_path: str, block_list: nn.ModuleList, rows: torch.Tensor | None,
         targets: list[Target], dev: torch.device, batch_size: int, progress: bool, method: str,
         skipped: list[str]) -> list[float]:
    def process(i: int, block: nn.Module, stats: dict[str, dict[str, Any]]) -> None:
        for name, layer in find_linears(block).items():
            if meth.stats and name not in stats:  # never called on the calibration data: leave it alone
                skipped.append(f"{blocks_path}.{i}.{name}")
                continue
            w = weight_2d(layer).float().clone()
            new = meth.prune_layer(i, name, w, stats.get(name, {}), targets[i])
            stats.pop(name, None)  # free this layer's Hessian / statistics before the next one
            weight_2d(layer).copy_(new.to(layer.weight.dtype))

    if rows is None or not meth.stats:  # data-free method (magnitude, uniform): no forward pass at all
        seconds = []
        for i, block in enumerate(block_list):
            t = time.perf_counter()
            with torch.no_grad():
                process(i, block, {})
            seconds.append(time.perf_counter() - t)
        return seconds
    return sequential(model, blocks_path, block_list, rows, kinds=meth.stats, process=process, modifies=True,
                      device=dev, batch_size=batch_size, progress=progress, description=f"{method} pruning")
