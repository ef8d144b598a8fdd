"""Streaming delta pruning of a fine-tuned checkpoint against its base (:func:`prune`), and the shared reading,
checking and writing of checkpoint pairs.

Both checkpoints are read tensor by tensor with ``safe_open``; each output shard is written with
:class:`secateurs.io.SafetensorsStream` (header first, then one tensor at a time), so the peak memory is about
two tensors of the model (the base and fine-tuned one being combined, plus float32 working copies of that
tensor) whatever the model's size.  The output directory mirrors the fine-tuned one (same shard names and index,
``config.json``, tokenizer and other files copied), so plain ``transformers`` loads it, and is published
atomically (:func:`secateurs.io.atomic_dir`): nothing that looks complete exists before the end.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import safe_open

from ..errors import CheckpointError, InvalidArgumentError
from ..io import SafetensorsStream, atomic_dir, atomic_file, atomic_write_json, check_output_dir
from ..registry import build
from .base import tensor_generator

INFO_FILE = "secateurs.json"


@dataclass
class TensorReport:
    name: str
    numel: int
    kept: int  # nonzero entries of the pruned delta
    scale: float  # rescaling applied to the kept deltas (1.0: none; the tensor's full delta when excluded)
    excluded: bool = False


@dataclass
class DeltaReport:
    """What :func:`prune` did: method, rate, per-tensor kept counts and scales, and the delta's overall density."""

    method: str
    sparsity: float
    rescale: bool
    seed: int
    options: dict[str, Any]
    base: str
    finetuned: str
    out: str
    tensors: list[TensorReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def delta_density(self) -> float:
        """Kept fraction of the delta entries over the pruned tensors (excluded and non-float ones left out)."""
        n = sum(t.numel for t in self.tensors if not t.excluded)
        return sum(t.kept for t in self.tensors if not t.excluded) / max(n, 1)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["delta_density"] = self.delta_density
        return d


class Checkpoint:
    """Names, shapes and dtypes of a safetensors model directory (single file or sharded), read from headers."""

    def __init__(self, model_dir: str | os.PathLike, what: str):
        from ..llm.stream import Shards

        self.dir = Path(model_dir)
        if not self.dir.is_dir():
            raise CheckpointError(f"{what} model directory {str(self.dir)!r} does not exist")
        if not (self.dir / "config.json").is_file():
            raise CheckpointError(f"{what} model directory {self.dir} has no config.json: not a save_pretrained "
                                  f"directory")
        self.shards = Shards(self.dir)

    def files(self) -> list[Path]:
        return sorted(set(self.shards.where.values()))

    def names_in(self, path: Path) -> list[str]:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())


def check_pair(base: Checkpoint, tuned: Checkpoint) -> None:
    """Refuse checkpoints whose tensor names or shapes differ (CheckpointError naming the first few), before
    anything is written."""
    a, b = base.shards.shapes, tuned.shards.shapes
    only_base, only_tuned = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if only_base or only_tuned:
        raise CheckpointError(f"base {base.dir} and fine-tuned {tuned.dir} hold different tensors: only in the base "
                              f"{only_base[:5]}{'...' if len(only_base) > 5 else ''}, only in the fine-tuned "
                              f"{only_tuned[:5]}{'...' if len(only_tuned) > 5 else ''}; a delta needs the same "
                              f"architecture (resized vocabularies are not supported)")
    bad = [(k, a[k][0], b[k][0]) for k in sorted(a) if a[k][0] != b[k][0]]
    if bad:
        raise CheckpointError("base and fine-tuned tensor shapes differ: " + ", ".join(
            f"{k} {s} vs {t}" for k, s, t in bad[:5]) + ("..." if len(bad) > 5 else "") +
            "; a delta needs the same architecture")


def check_sparsity(sparsity: float) -> float:
    try:
        p = float(sparsity)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"sparsity must be a number in [0, 1), got {sparsity!r}") from None
    if not 0.0 <= p < 1.0:
        raise InvalidArgumentError(f"sparsity must be in [0, 1) (the fraction of the delta dropped), got {p}")
    return p


class _Context:
    """What a method's ``prepare`` may use: the directories, the rate, the tensor names, a delta reader."""

    def __init__(self, base: Checkpoint, tuned: Checkpoint, sparsity: float):
        self.base_dir, self.finetuned_dir, self.sparsity = base.dir, tuned.dir, sparsity
        self.names = set(tuned.shards.shapes)
        self._base, self._tuned = base, tuned

    def read_delta(self, name: str) -> torch.Tensor:
        b = self._base.shards.read([name])[name]
        f = self._tuned.shards.read([name])[name]
        return f.float() - b.float()


def write_like(tuned: Checkpoint, out: Path, combine: Callable[[str, torch.Tensor], torch.Tensor],
               metadata: dict[str, str] | None = None) -> None:
    """Write into ``out`` every shard of ``tuned`` under its own name, each tensor ``combine(name, fine-tuned
    tensor)`` (same dtype and shape), streamed; copy the index and every other file of the fine-tuned directory."""
    for path in tuned.files():
        names = tuned.names_in(path)
        with safe_open(str(path), framework="pt") as f:
            specs = {}
            for k in names:
                sl = f.get_slice(k)
                specs[k] = (_dtype(sl.get_dtype()), list(sl.get_shape()))
            with atomic_file(out / path.name) as tmp:
                w = SafetensorsStream(tmp, specs, metadata={"format": "pt", **(metadata or {})})
                try:
                    for k in names:
                        w.write(k, combine(k, f.get_tensor(k)))
                finally:
                    w.close()
    for f in tuned.dir.iterdir():
        if f.is_file() and f.suffix not in (".safetensors", ".bin", ".pt", ".pth") and f.name != INFO_FILE:
            shutil.copyfile(f, out / f.name)


def _dtype(code: str) -> torch.dtype:
    from ..llm.stream import _DTYPES

    if code not in _DTYPES:
        raise CheckpointError(f"unsupported safetensors dtype {code}")
    return _DTYPES[code]


def prune(base_dir: str | os.PathLike, finetuned_dir: str | os.PathLike, out_dir: str | os.PathLike,
          method: str = "dare", sparsity: float = 0.9, rescale: bool = True, seed: int = 0, *,
          exclude: str | None = None, overwrite: bool = False, **options: Any) -> DeltaReport:
    """Prune the fine-tuning delta ``θ_ft − θ_base`` of ``finetuned_dir`` and write ``θ_base + Δ̂`` to ``out_dir``.

    ``method``: ``"dare"`` (Yu et al. 2024: drop a random fraction ``sparsity`` of the delta, rescale the rest by
    ``1/(1 − sparsity)``), ``"darex"`` (DAREx-q, Deng et al. 2025: rescale by ``1/q``; options ``q=`` or
    ``calibration=``), ``"magnitude"`` (keep the largest ``|Δ|``, unscaled) — any method registered under the
    kind ``"delta"``, with its ``options``.  ``rescale=False`` keeps the kept deltas unscaled.  ``exclude``: a
    regular expression; matching tensors keep their whole fine-tuned value (e.g. ``"embed|lm_head|norm"``).
    Non-float tensors are copied from the fine-tuned model.  Deterministic: each tensor's drop uses a generator
    seeded from ``seed`` + a hash of its name.

    Streams tensor by tensor (peak memory ≈ two tensors; see the module docstring); the output directory
    mirrors the fine-tuned one plus ``secateurs.json`` (method, rate, per-tensor kept counts and scales).
    Raises, before anything is written: CheckpointError when a directory is missing or the two checkpoints'
    tensor names or shapes differ, InvalidArgumentError for a bad rate or option, UnknownNameError for an
    unknown method, OutputExistsError when ``out_dir`` exists and not ``overwrite``.
    """
    t0 = time.perf_counter()
    p = check_sparsity(sparsity)
    algo = build("delta", method, options)
    pattern = None
    if exclude:
        try:
            pattern = re.compile(exclude)
        except re.error as e:
            raise InvalidArgumentError(f"exclude is not a valid regular expression ({exclude!r}): {e}") from e
    base, tuned = Checkpoint(base_dir, "base"), Checkpoint(finetuned_dir, "fine-tuned")
    check_pair(base, tuned)
    out = check_output_dir(out_dir, overwrite).absolute()
    algo.prepare(_Context(base, tuned, p))
    report = DeltaReport(method, p, bool(rescale), int(seed), {k: v for k, v in options.items()
                                                               if isinstance(v, (int, float, str, bool, type(None)))},
                         str(base.dir.absolute()), str(tuned.dir.absolute()), str(out))

    def combine(name: str, ft: torch.Tensor) -> torch.Tensor:
        if not ft.is_floating_point():
            return ft
        if pattern is not None and pattern.search(name):
            report.tensors.append(TensorReport(name, ft.numel(), ft.numel(), 1.0, excluded=True))
            return ft
        b = base.shards.read([name])[name]
        # a copy: a float32 tensor from safe_open is a private memory map of the file, and writing into it would
        # turn its pages into anonymous copies that stay resident until the file is closed (a whole shard's worth)
        delta = ft.to(torch.float32, copy=True)
        delta -= b.float()
        pruned, scale = algo.sparsify(name, delta, p, bool(rescale), tensor_generator(int(seed), name))
        report.tensors.append(TensorReport(name, ft.numel(), int(torch.count_nonzero(pruned)), float(scale)))
        pruned += b.float()
        return pruned.to(ft.dtype)

    with atomic_dir(out, overwrite) as tmp:
        write_like(tuned, tmp, combine, metadata={"secateurs": "deltas"})
        report.seconds = round(time.perf_counter() - t0, 3)
        from ..llm.output import library_versions

        atomic_write_json(tmp / INFO_FILE, {"format": "secateurs.deltas/1", "delta": report.to_dict(),
                                            "versions": library_versions()}, indent=2, default=str)
    return report
