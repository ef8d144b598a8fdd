"""Writing a pruned model: a plain ``save_pretrained`` directory (safetensors, zeros baked in) plus the tokenizer
and a ``secateurs.json`` describing the run, written atomically — or, with ``format="bitmask"``, a compressed
sparse checkpoint that :func:`load_pruned` decompresses.

Bitmask format (``secateurs.json`` ``"weights": {"format": "bitmask", ...}``; loading reads tensors and JSON only,
never code): each tensor is stored in the smallest of three layouts, named in ``weights.tensors[name].layout``:

* ``dense`` — ``name`` as it is;
* ``bitmask`` — ``name.__bitmask__``: one bit per element, row-major, MSB first (:func:`secateurs.io.pack_bits`),
  set where the element's bit pattern is not all zeros (so ``-0.0`` is kept: reloading is bit-exact), and
  ``name.__values__``: the set elements in row-major order (1-D, the tensor's dtype);
* ``2:4`` — for tensors with at most 2 nonzeros in every group of 4 consecutive elements of a row (chosen over
  ``bitmask`` unless that is over 1% smaller, i.e. when the tensor was pruned 2:4):
  ``name.__values__`` (2 values per group, 1-D) and ``name.__indices__``: their positions in the group (0-3, in
  increasing order), 2 bits each, packed 4 per byte (:func:`pack_bits` with ``bits=2``).

A 50%-sparse fp16/bf16 tensor takes 0.5625x its dense bytes (half the values + 1/16 for the mask or the indices),
a 70%-sparse one 0.3625x.  Files ``bitmask-00000.safetensors``... (about ``max_shard_bytes`` each) sit beside
``config.json``; ``weights.tensors[name]`` gives each tensor's file, shape, dtype and nonzero count.

The directory is assembled in a temporary sibling (same filesystem) and renamed into place only when complete,
so an interrupted run never leaves a half-written model at ``out_dir``; with ``overwrite`` the previous
directory is moved aside first and deleted only after the new one is in place.
"""
from __future__ import annotations

import copy
import json
import os
import platform
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, InvalidArgumentError
from ..io import (SAFETENSORS_DTYPES, atomic_dir, atomic_write_json, check_output_dir, pack_bits,
                  save_safetensors_atomic, unpack_bits)

__all__ = ["save_pruned", "load_pruned", "read_weights", "write_bitmask", "check_output_dir",
           "library_versions", "FORMATS"]

INFO_FILE = "secateurs.json"
FORMATS = ("dense", "bitmask")
BITMASK, VALUES, INDICES = ".__bitmask__", ".__values__", ".__indices__"
_DTYPE_NAMES = {str(d).removeprefix("torch."): d for d in SAFETENSORS_DTYPES}
_INT_VIEW = {2: torch.int16, 4: torch.int32, 8: torch.int64, 1: torch.uint8}
_CHUNK = 1 << 22  # elements decompressed at a time (keeps the index arrays in cache-sized pieces)


def library_versions() -> dict[str, str]:
    """Versions of secateurs, torch and transformers (recorded in secateurs.json and benchmark results)."""
    out = {}
    for pkg in ("secateurs", "torch", "transformers", "tokenizers", "safetensors"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    out["python"] = platform.python_version()
    return out


def save_pruned(model: nn.Module, tokenizer: Any, out_dir: str | os.PathLike[str], report: Any,
                perplexities: dict[str, float] | None = None, overwrite: bool = False, *, format: str = "dense",
                max_shard_bytes: int = 2 << 30) -> Path:
    """Save a pruned model with ``secateurs.json``, atomically.

    ``format="dense"``: a directory plain ``transformers`` loads (zeros baked in); ``format="bitmask"``: the
    compressed sparse checkpoint of the module docstring (``config.json`` and tokenizer as usual, weights as
    bitmask/2:4/dense tensors), loaded with :func:`load_pruned`.  ``report`` is the
    :class:`~secateurs.llm.prune.PruneReport` of :func:`secateurs.llm.prune` (or a dict); ``perplexities`` (e.g.
    ``{"dense": 31.2, "pruned": 35.0}``) are recorded with it.  Raises OutputExistsError when ``out_dir`` exists
    and ``overwrite`` is False, InvalidArgumentError for an unknown ``format``.
    """
    _check_format(format)
    out = check_output_dir(out_dir, overwrite).absolute()
    with atomic_dir(out) as tmp:
        weights = None
        if format == "bitmask":
            config = copy.deepcopy(model.config)
            config.architectures = [type(model).__name__]  # as save_pretrained records it
            config.dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
            config.save_pretrained(tmp)
            if getattr(model, "generation_config", None) is not None and model.can_generate():
                model.generation_config.save_pretrained(tmp)
            weights = write_bitmask(_model_tensors(model), tmp, max_shard_bytes)
        else:
            model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        info = {
            "format": "secateurs.llm/1",
            "prune": report.to_dict() if hasattr(report, "to_dict") else dict(report or {}),
            "perplexities": dict(perplexities or {}),
            "versions": library_versions(),
        }
        if weights is not None:
            info["weights"] = weights
        structure = _structure(model)
        if structure is not None:  # widths the config cannot express: load_pruned rebuilds them
            info["structure"] = structure
        atomic_write_json(tmp / INFO_FILE, info, indent=2, default=str)
    return out


def _check_format(format: str) -> None:
    if format not in FORMATS:
        raise InvalidArgumentError(f"unknown checkpoint format {format!r}; expected one of {', '.join(FORMATS)}")


def _model_tensors(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """The model's persistent state under its plain names (masks of unfinalized targets applied), tied weights once
    (the first name, as ``save_pretrained`` keeps the input embedding)."""
    from ..io import _plain_state

    state, _ = _plain_state(model)
    seen: set[tuple] = set()
    for k, v in state.items():
        key = (v.data_ptr(), v.dtype, tuple(v.shape), v.stride()) if v.numel() else None
        if key is not None and key in seen:
            continue
        if key is not None:
            seen.add(key)
        yield k, v.detach()


# ------------------------------------------------------------------------------------------ bitmask format

def compress_tensor(name: str, t: torch.Tensor) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(entry, stored tensors)`` of ``t`` in its smallest layout (``dense``, ``bitmask`` or ``2:4``; see the
    module docstring).  Nonzero means a nonzero bit pattern, so decompression is bit-exact."""
    t = t.detach().cpu().contiguous()
    entry: dict[str, Any] = {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
    n, es = t.numel(), t.element_size()
    if not t.is_floating_point() or t.dim() == 0 or n < 64 or t.dtype not in SAFETENSORS_DTYPES:
        return {**entry, "layout": "dense"}, {name: t}
    bits = t.reshape(-1).view(_INT_VIEW[es]).numpy()
    nz = bits != 0
    nnz = int(np.count_nonzero(nz))
    entry["nnz"] = nnz
    dense_bytes, mask_bytes = n * es, nnz * es + (n + 7) // 8
    nm_ok = t.shape[-1] % 4 == 0 and int(nz.reshape(-1, 4).sum(1, dtype=np.int8).max()) <= 2
    nm_bytes = n // 2 * es + n // 8 if nm_ok else dense_bytes + 1
    if min(mask_bytes, nm_bytes) >= dense_bytes:
        return {**entry, "layout": "dense"}, {name: t}
    if nm_bytes <= mask_bytes * 1.01:  # a 2:4 tensor stays 2:4 when a few kept weights happen to be zero
        present = torch.from_numpy(nz.reshape(-1, 4).astype(np.int8))
        # the two positions of each group: its nonzeros first, then zeros, each in increasing position
        idx = torch.argsort(present, dim=1, descending=True, stable=True)[:, :2].sort(dim=1).values
        values = t.reshape(-1, 4).gather(1, idx).reshape(-1)
        return {**entry, "layout": "2:4"}, {name + VALUES: values, name + INDICES: pack_bits(idx, bits=2)}
    values = torch.from_numpy(bits[nz]).view(t.dtype)
    return {**entry, "layout": "bitmask"}, {name + BITMASK: pack_bits(torch.from_numpy(nz)), name + VALUES: values}


def decompress_tensor(name: str, entry: dict[str, Any], stored: Any) -> torch.Tensor:
    """The dense tensor of ``entry`` from its stored parts (``stored[key]`` or ``stored.get_tensor(key)``).
    Raises CheckpointError when a part is missing or its size does not match the entry."""
    get = stored.get_tensor if hasattr(stored, "get_tensor") else stored.__getitem__
    try:
        layout, shape, dtype = entry["layout"], [int(s) for s in entry["shape"]], _DTYPE_NAMES[entry["dtype"]]
        if layout == "dense":
            return get(name)
        n = 1
        for s in shape:
            n *= s
        values = get(name + VALUES)
        if values.dtype != dtype:
            raise CheckpointError(f"{name}: values are {values.dtype}, the layout says {dtype}")
        if layout == "2:4":
            if shape[-1] % 4 or values.numel() != n // 2:
                raise CheckpointError(f"{name}: {values.numel()} values for a 2:4 tensor of shape {shape}")
            idx = unpack_bits(get(name + INDICES), [n // 4, 2], bits=2).long()
            if idx.numel() != n // 2:
                raise CheckpointError(f"{name}: the 2:4 indices do not match shape {shape}")
            out = torch.zeros(n // 4, 4, dtype=dtype)
            out.scatter_(1, idx, values.reshape(-1, 2))
            return out.reshape(shape)
        if layout == "bitmask":
            return _from_bitmask(name, get(name + BITMASK), values, shape, n)
    except KeyError as e:
        raise CheckpointError(f"{name}: part {e} of its {entry.get('layout')!r} layout is missing") from e
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{name}: malformed layout entry {entry}: {e}") from e
    raise CheckpointError(f"{name}: unknown layout {layout!r} (a newer secateurs wrote this checkpoint?)")


def _from_bitmask(name: str, packed: torch.Tensor, values: torch.Tensor, shape: list[int], n: int) -> torch.Tensor:
    """Scatter ``values`` to the set bits of ``packed``: per chunk, the running count of set bits indexes the
    values (0 for an unset bit, which picks the prepended zero) — a gather, no data-dependent branches."""
    raw = packed.reshape(-1).numpy()
    if raw.size != (n + 7) // 8:
        raise CheckpointError(f"{name}: bitmask of {raw.size} bytes for {n} elements")
    ints = values.reshape(-1).view(_INT_VIEW[values.element_size()]).numpy()
    ext = np.concatenate([np.zeros(1, ints.dtype), ints])
    out = np.empty(n, ints.dtype)
    itype = np.int32 if ints.size < 2 ** 31 - 1 else np.int64
    done = 0
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        b = np.unpackbits(raw[start // 8:(stop + 7) // 8], count=stop - start)
        pos = np.cumsum(b, dtype=itype)
        if done + (int(pos[-1]) if pos.size else 0) > ints.size:
            raise CheckpointError(f"{name}: the bitmask sets more bits than there are values ({ints.size})")
        pos += done
        pos *= b
        done = int(pos.max(initial=done))
        np.take(ext, pos, out=out[start:stop])
    if done != ints.size:
        raise CheckpointError(f"{name}: the bitmask sets {done} bits for {ints.size} values")
    return torch.from_numpy(out).view(values.dtype).reshape(shape)


def write_bitmask(tensors: Iterable[tuple[str, torch.Tensor]], out_dir: Path, max_shard_bytes: int = 2 << 30,
                  prefix: str = "bitmask") -> dict[str, Any]:
    """Compress ``tensors`` (name, tensor) into ``<prefix>-NNNNN.safetensors`` shards of about
    ``max_shard_bytes`` in ``out_dir`` (each written with :func:`save_safetensors_atomic`); returns the
    ``weights`` entry of ``secateurs.json``.  Holds one shard's compressed tensors at a time."""
    layout: dict[str, Any] = {}
    files: list[str] = []
    pending: dict[str, torch.Tensor] = {}
    size = dense = 0

    def flush() -> None:
        nonlocal pending, size
        if pending:
            fname = f"{prefix}-{len(files):05d}.safetensors"
            save_safetensors_atomic(out_dir / fname, pending, metadata={"format": "secateurs.bitmask"})
            files.append(fname)
            pending, size = {}, 0

    stored_total = 0
    for name, t in tensors:
        if any(name.endswith(s) for s in (BITMASK, VALUES, INDICES)):
            raise InvalidArgumentError(f"tensor name {name!r} ends with a reserved suffix of the bitmask format")
        entry, parts = compress_tensor(name, t)
        nbytes = sum(v.numel() * v.element_size() for v in parts.values())
        if pending and size + nbytes > max_shard_bytes:
            flush()
        entry["file"] = f"{prefix}-{len(files):05d}.safetensors"
        layout[name] = entry
        pending.update(parts)
        size += nbytes
        stored_total += nbytes
        dense += t.numel() * t.element_size()
    flush()
    return {"format": "bitmask", "version": 1, "files": files, "dense_bytes": dense, "stored_bytes": stored_total,
            "tensors": layout}


def read_info(model_dir: str | os.PathLike) -> dict[str, Any]:
    """``secateurs.json`` of a saved directory ({} when there is none: a plain ``save_pretrained`` directory)."""
    f = Path(model_dir) / INFO_FILE
    if not f.is_file():
        return {}
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except ValueError as e:
        raise CheckpointError(f"{f} is not valid JSON: {e}") from e


def read_weights(model_dir: str | os.PathLike, info: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """The dense state dict of a bitmask checkpoint (every tensor decompressed, bit-exact).  CheckpointError for
    a directory whose ``secateurs.json`` describes no bitmask weights, or missing/corrupt parts."""
    from safetensors import safe_open

    model_dir = Path(model_dir)
    info = read_info(model_dir) if info is None else info
    weights = info.get("weights") or {}
    if weights.get("format") != "bitmask" or not isinstance(weights.get("tensors"), dict):
        raise CheckpointError(f"{model_dir / INFO_FILE} describes no bitmask weights")
    by_file: dict[str, list[str]] = {}
    for name, entry in weights["tensors"].items():
        by_file.setdefault(str(entry.get("file")), []).append(name)
    out: dict[str, torch.Tensor] = {}
    for fname, names in by_file.items():
        path = model_dir / fname
        if Path(fname).name != fname or not path.is_file():
            raise CheckpointError(f"{model_dir}: weights file {fname!r} named in {INFO_FILE} is missing")
        try:
            with safe_open(str(path), framework="pt") as f:
                parts, available = {}, set(f.keys())
                for name in names:  # memory-mapped reads, in this thread
                    keys = [k for k in (name, name + BITMASK, name + VALUES, name + INDICES) if k in available]
                    parts[name] = (weights["tensors"][name], {k: f.get_tensor(k) for k in keys})
        except Exception as e:  # noqa: BLE001 - a truncated or corrupt shard
            raise CheckpointError(f"cannot read {path}: {e}") from e
        # decompression in threads: numpy's unpackbits / cumsum / take release the GIL
        with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
            jobs = {name: pool.submit(decompress_tensor, name, entry, stored) for name, (entry, stored) in parts.items()}
            for name, job in jobs.items():
                out[name] = job.result()
    return out


def config_and_class(model_dir: Path) -> tuple[Any, type]:
    """The ``config.json`` of ``model_dir`` and the transformers class its ``architectures`` names (no code is
    loaded from the directory); CheckpointError when either is missing."""
    import transformers
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"cannot read {Path(model_dir) / 'config.json'}: {e}") from e
    arch = (getattr(config, "architectures", None) or [None])[0]
    cls = getattr(transformers, arch, None) if isinstance(arch, str) else None
    if cls is None or not hasattr(cls, "from_pretrained"):
        raise CheckpointError(f"config.json of {model_dir} names no transformers architecture ({arch!r})")
    return config, cls


def load_pruned(model_dir: str | os.PathLike, *, dtype: torch.dtype | None = None) -> nn.Module:
    """Load a directory written by :func:`save_pruned` (or ``secateurs llm prune``) as a transformers model.

    A bitmask checkpoint is decompressed to dense tensors (bit-exact; tensors and JSON are read, never code) and
    handed to the architecture's ``from_pretrained`` with the directory's ``config.json``; a dense one is loaded
    by ``from_pretrained`` itself.  ``dtype`` converts after loading (default: the stored dtypes).  Raises
    CheckpointError for a missing directory, config or weights.
    """
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise CheckpointError(f"{model_dir} has no config.json: not a saved model directory")
    info = read_info(model_dir)
    config, cls = config_and_class(model_dir)
    if info.get("structure"):  # per-layer widths (structured pruning): rebuilt from the record, then loaded
        bitmask = (info.get("weights") or {}).get("format", "dense") == "bitmask"
        from ..structured.io import _state

        state = read_weights(model_dir, info) if bitmask else _state(model_dir)
        model = _rebuild(cls, config, info["structure"], state)
    elif (info.get("weights") or {}).get("format", "dense") == "bitmask":
        state = read_weights(model_dir, info)
        model = cls.from_pretrained(None, config=config, state_dict=state, dtype="auto")
    else:
        model = cls.from_pretrained(model_dir, local_files_only=True, dtype="auto")
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


# ------------------------------------------------------------------------------------------ per-layer widths
def _structure(model: nn.Module) -> dict[str, Any] | None:
    """The width record of a structurally pruned model whose config cannot describe it, else None."""
    from .structured.base import stock_loadable, structure_record

    if getattr(model, "config", None) is None or stock_loadable(model):
        return None
    return structure_record(model)


def _rebuild(cls: type, config: Any, structure: dict[str, Any], state: dict[str, torch.Tensor]) -> nn.Module:
    """The stock model of ``config`` given the recorded widths (:func:`secateurs.llm.structured.apply_structure`),
    then ``state`` loaded into it; CheckpointError when a tensor is missing (other than a tied one), unexpected
    or of another shape."""
    from .structured.base import apply_structure

    dtype = next((t.dtype for t in state.values() if t.is_floating_point()), torch.float32)
    model = cls._from_config(config, dtype=dtype)
    apply_structure(model, structure)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    bad = [k for k, v in state.items() if k in shapes and shapes[k] != tuple(v.shape)]
    unexpected = [k for k in state if k not in shapes]
    if bad or unexpected:
        raise CheckpointError(f"the weights do not match the recorded widths (wrong shape: {bad[:5]}, unexpected: "
                              f"{unexpected[:5]})")
    missing = model.load_state_dict(state, strict=False).missing_keys
    params = dict(model.named_parameters(remove_duplicate=False))
    loaded = {id(params[k]) for k in state if k in params}
    tied = {k for k in missing if k in params and id(params[k]) in loaded}  # lm_head tied to the embeddings
    if set(missing) - tied:
        raise CheckpointError(f"the weights lack tensors {sorted(set(missing) - tied)[:5]}")
    return model
