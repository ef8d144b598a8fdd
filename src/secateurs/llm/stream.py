"""Prune a checkpoint larger than memory: one decoder block at a time, from safetensors shards to safetensors shards.

:func:`prune_checkpoint` builds the model on the ``meta`` device (no memory), reads only the tensors outside the
blocks (embeddings, final norm, head) and then, inside the engine's block-by-block pipeline, reads each block's
tensors from the shards just before the block runs, prunes it, writes it to its own output shard in the
checkpoint's dtype and frees it.  Peak memory is one block (and its float32 working copy on CPU) + the embeddings
and head + the calibration activations, whatever the number of blocks.

Output: a ``save_pretrained``-style directory (one shard per block + one for the rest, ``model.safetensors.index
.json``, ``config.json``, the tokenizer and other files of the source, ``secateurs.json``) that plain
``transformers`` loads.  It is built in ``.<out>.partial`` beside the output and renamed when complete, so nothing
that looks complete exists before the end.  ``resume=True`` continues an interrupted run from its first unwritten
block, reading the blocks already written back (the same result as an uninterrupted run); the run's arguments are
fingerprinted and a resume with different ones is refused.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn

from ..core.blocks import find_blocks
from ..core.finite import all_finite
from ..errors import CheckpointError, InvalidArgumentError, NonFiniteError, OutputExistsError
from ..io import atomic_dir, atomic_write_json, check_output_dir, replace_dir, save_safetensors_atomic
from .output import INFO_FILE, config_and_class, library_versions, read_info, write_bitmask

STATE_FILE = "secateurs-stream-state.json"
INDEX_FILE = "model.safetensors.index.json"


class Shards:
    """Where each tensor of a safetensors checkpoint lives (single file or sharded with an index)."""

    def __init__(self, model_dir: Path):
        self.dir = model_dir
        index = model_dir / INDEX_FILE
        if index.is_file():
            try:
                self.where = {k: model_dir / v for k, v in json.loads(index.read_text())["weight_map"].items()}
            except (ValueError, KeyError) as e:
                raise CheckpointError(f"{index} is not a safetensors index: {e}") from e
        elif (model_dir / "model.safetensors").is_file():
            with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
                self.where = {k: model_dir / "model.safetensors" for k in f.keys()}
        else:
            raise CheckpointError(f"{model_dir} holds no model.safetensors or {INDEX_FILE}; streaming needs "
                                  f"safetensors weights")
        missing = sorted({str(p.name) for p in self.where.values() if not p.is_file()})
        if missing:
            raise CheckpointError(f"shard(s) {missing} named by the index of {model_dir} are missing")
        self.shapes: dict[str, tuple[list[int], str]] = {}
        for path in sorted(set(self.where.values())):
            try:
                with safe_open(str(path), "pt") as f:
                    for k in f.keys():
                        sl = f.get_slice(k)
                        self.shapes[k] = (list(sl.get_shape()), sl.get_dtype())
            except Exception as e:  # noqa: BLE001 - a truncated or corrupt shard
                raise CheckpointError(f"cannot read shard {path}: {e}") from e

    def read(self, names: list[str]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        by_file: dict[Path, list[str]] = {}
        for n in names:
            by_file.setdefault(self.where[n], []).append(n)
        for path, keys in by_file.items():
            with safe_open(str(path), "pt") as f:
                for k in keys:
                    out[k] = f.get_tensor(k)
        return out


def _expected(model: nn.Module) -> dict[str, torch.Tensor]:
    """Tensors the checkpoint must hold: the persistent state, tied weights once."""
    seen: dict[int, str] = {}
    out = {}
    for k, v in model.state_dict(keep_vars=True).items():
        if id(v) in seen:
            continue
        seen[id(v)] = k
        out[k] = v
    return out


class BlockStream:
    """The engine's block reader/writer (see :func:`secateurs.core.sequential.sequential`)."""

    def __init__(self, shards: Shards, prefix: str, work: Path, done: int, fingerprint: dict):
        self.shards, self.prefix, self.work, self.n_done, self.fingerprint = shards, prefix, work, done, fingerprint
        self.nonzero = 0
        self.numel = 0

    def shard(self, i: int) -> Path:
        return self.work / f"block-{i:05d}.safetensors"

    def done(self, i: int) -> bool:
        return i < self.n_done

    def load(self, i: int, block: nn.Module, modifies: bool) -> None:
        """Give ``block`` its weights: the pruned ones of an interrupted run, else the source's (the dense
        statistics pass of OWL always reads the source)."""
        names = [f"{self.prefix}{i}.{k}" for k in block.state_dict()]
        if modifies and self.done(i):
            with safe_open(str(self.shard(i)), "pt") as f:
                state = {k: f.get_tensor(k) for k in names}
        else:
            state = self.shards.read(names)
        for k, v in state.items():
            if v.is_floating_point() and not all_finite(v):
                raise NonFiniteError(f"{k} in the checkpoint holds NaN or Inf; nothing was written")
        block.load_state_dict({k[len(f"{self.prefix}{i}."):]: v for k, v in state.items()}, strict=True,
                              assign=True)
        if any(b.is_meta for b in block.buffers()):
            raise CheckpointError(f"block {i} has buffers that are not in the checkpoint (computed at "
                                  f"construction); streaming supports models whose blocks hold only saved tensors")

    def release(self, i: int, block: nn.Module, modifies: bool) -> None:
        """Write a pruned block to its shard (in the checkpoint's dtype), record progress, free the block."""
        if modifies and not self.done(i):
            self._write(i, block)
        if modifies:
            tensors = block.state_dict().values()
            self.nonzero += sum(int(torch.count_nonzero(v)) for v in tensors)
            self.numel += sum(v.numel() for v in tensors)
            del tensors
        block.to_empty(device="meta")
        release_heap()

    def _write(self, i: int, block: nn.Module) -> None:
        """Block i's shard, in the checkpoint's dtypes, atomically; then the progress file (resume point)."""
        state = {f"{self.prefix}{i}.{k}": v.detach().to(_dtype(self.shards, f"{self.prefix}{i}.{k}")).contiguous()
                 for k, v in block.state_dict().items()}
        save_safetensors_atomic(self.shard(i), state, metadata={"format": "pt"})
        self.n_done = i + 1
        _write_json(self.work / STATE_FILE, {"fingerprint": self.fingerprint, "done": self.n_done})


def release_heap() -> None:
    """Give the heap pages freed by the block just written back to the operating system (glibc ``malloc_trim``).

    Every block allocates and frees the same few hundred MB (its float32 working copy, scores, sort indices,
    activations), but glibc raises its mmap threshold to the size of the largest freed chunk (up to 32 MiB), so
    after the first block these tensors live in the heap, where the long-lived small objects allocated in between
    fragment it: the freed space can stay resident and the heap grow with every block (the free heap of a
    hidden-1024 Llama went from 57 to 104 MiB over 48 blocks, while the memory in use stayed at 142 MiB).
    Trimming after each block returns that space to the operating system, keeping the resident heap, hence the
    peak, independent of depth (benchmarks/llm_stream.py measures it with and without).  A no-op where the C
    library is not glibc."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # musl, macOS, Windows
        return None


_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
           "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8, "BOOL": torch.bool}


def _dtype(shards: Shards, name: str) -> torch.dtype:
    return _DTYPES.get(shards.shapes[name][1], torch.float32)


def _write_json(path: Path, doc: dict) -> None:
    atomic_write_json(path, doc, default=str)


def _fingerprint(shards: Shards, rows: torch.Tensor | None, args: dict) -> dict:
    h = hashlib.sha256()
    for k in sorted(shards.shapes):
        h.update(f"{k}{shards.shapes[k]}".encode())
    for p in sorted(set(shards.where.values())):
        h.update(f"{p.name}{p.stat().st_size}".encode())
    if rows is not None:
        h.update(rows.numpy().tobytes())
    return {"checkpoint": h.hexdigest()[:16], "args": json.loads(json.dumps(args, default=str))}


def prune_checkpoint(model_dir: str | os.PathLike, out_dir: str | os.PathLike, calibration: Any = None,
                     method: str = "wanda", sparsity: float | None = 0.5, pattern: str = "unstructured",
                     allocation: str = "uniform", nsamples: int = 128, seqlen: int | None = None,
                     device: str | torch.device | None = None, seed: int = 0, tokenizer: Any = None,
                     progress: bool = True, *, blocks: str | None = None, batch_size: int = 1,
                     scope: str | None = None, solver: str | None = None, resume: bool = False,
                     overwrite: bool = False, **options: Any):
    """Prune the checkpoint in ``model_dir`` block by block, streaming, into ``out_dir``; returns the report.

    Takes the keyword arguments of :func:`secateurs.llm.prune` (``calibration`` text, file or token rows;
    ``method``, ``sparsity``, ``pattern``, ``allocation`` — uniform, er or erk; ``global`` and ``owl`` need every
    layer's scores at once and are refused — ``scope``, ``solver``, options...), plus ``resume`` (continue an interrupted run
    with the same arguments) and ``overwrite`` (replace an existing ``out_dir``).
    """
    from .prune import check_arguments, prune
    from .text import load_local_tokenizer

    check_arguments(method, allocation, sparsity, pattern, batch_size)
    src, out = Path(model_dir), Path(out_dir).absolute()
    if not (src / "config.json").is_file():
        raise CheckpointError(f"{src} has no config.json: not a save_pretrained directory")
    check_output_dir(out, overwrite)
    work = out.parent / f".{out.name}.partial"
    if work.exists() and not resume:
        raise OutputExistsError(f"an interrupted run left {work}; pass resume=True (--resume) to continue it, or "
                                f"delete it to start over")
    shards = Shards(src)
    config, cls = config_and_class(src)
    with torch.device("meta"):
        model = cls(config)
    model.eval()
    expected = _expected(model)
    for k, v in expected.items():
        if k not in shards.shapes:
            raise CheckpointError(f"tensor {k!r} is in no shard of {src}")
        if list(v.shape) != shards.shapes[k][0]:
            raise CheckpointError(f"tensor {k!r} has shape {shards.shapes[k][0]} in the checkpoint but "
                                  f"{list(v.shape)} in the config's model")
    blocks_path, block_list = find_blocks(model, blocks)
    prefix = blocks_path + "."
    # everything outside the blocks, read now and kept (embeddings, norms, head); computed buffers rebuilt
    outside = [k for k in expected if not k.startswith(prefix)]
    state = shards.read(outside)
    for k, v in state.items():
        if v.is_floating_point() and not all_finite(v):
            raise NonFiniteError(f"{k} in the checkpoint holds NaN or Inf; nothing was written")
    model.load_state_dict({**state}, strict=False, assign=True)
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    _rebuild_computed_buffers(model, blocks_path, config)
    if tokenizer is None and calibration is not None and not torch.is_tensor(calibration):
        tokenizer = load_local_tokenizer(src)
    from .calibration import calibration_rows

    rows = None
    if calibration is not None:
        rows, _ = calibration_rows(calibration, model, nsamples=nsamples, seqlen=seqlen, seed=seed,
                                   tokenizer=tokenizer)
    args = {"method": method, "sparsity": sparsity, "pattern": pattern, "allocation": allocation, "seed": seed,
            "blocks": blocks_path, "batch_size": batch_size, "scope": scope, "solver": solver, "options": options}
    fingerprint = _fingerprint(shards, rows, args)
    done = 0
    if work.exists():
        st_file = work / STATE_FILE
        try:
            st = json.loads(st_file.read_text())
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{work} has no readable {STATE_FILE}; delete it to start over") from e
        if st.get("fingerprint") != fingerprint:
            raise InvalidArgumentError(f"the interrupted run in {work} used other arguments or another checkpoint "
                                       f"({st.get('fingerprint')}); resume with the same ones, or delete it")
        done = int(st.get("done", 0))
    else:
        work.mkdir(parents=True)
        _write_json(work / STATE_FILE, {"fingerprint": fingerprint, "done": 0})
    stream = BlockStream(shards, prefix, work, done, fingerprint)
    report = prune(model, rows, method=method, sparsity=sparsity, pattern=pattern, allocation=allocation,
                   nsamples=nsamples, seqlen=seqlen, device=device, seed=seed, tokenizer=tokenizer,
                   progress=progress, blocks=blocks_path, batch_size=batch_size, scope=scope, solver=solver,
                   stream=stream, **options)
    # the rest of the model, the index, config, tokenizer and other files of the source
    rest = {k: v.detach().to(_dtype(shards, k)).contiguous() for k, v in model.state_dict().items()
            if not k.startswith(prefix) and k in expected and not v.is_meta}
    save_safetensors_atomic(work / "rest.safetensors", rest, metadata={"format": "pt"})
    weight_map = {k: "rest.safetensors" for k in rest}
    for i in range(len(block_list)):
        with safe_open(str(stream.shard(i)), "pt") as f:
            weight_map.update({k: stream.shard(i).name for k in f.keys()})
    total = sum(os.path.getsize(work / f) for f in set(weight_map.values()))
    _write_json(work / INDEX_FILE, {"metadata": {"total_size": total}, "weight_map": weight_map})
    config.save_pretrained(work)
    for f in src.iterdir():
        if f.is_file() and f.suffix not in (".safetensors", ".bin") and f.name not in (INDEX_FILE, "config.json",
                                                                                      INFO_FILE):
            shutil.copyfile(f, work / f.name)  # the output's own mode, not the source's
    nz = stream.nonzero + sum(int(torch.count_nonzero(v)) for v in rest.values())
    n = stream.numel + sum(v.numel() for v in rest.values())
    report.model_sparsity = 1 - nz / max(n, 1)
    info = {"format": "secateurs.llm/1", "prune": report.to_dict(), "streamed": True,
            "source": str(src.absolute()), "versions": library_versions()}
    _write_json(work / INFO_FILE, info)
    (work / STATE_FILE).unlink()
    replace_dir(work, out, overwrite)
    return report


def _rebuild_computed_buffers(model: nn.Module, blocks_path: str, config: Any) -> None:
    """Buffers computed at construction (rotary inverse frequencies) are not in checkpoints: rebuild each module
    outside the blocks that still has one on ``meta`` from the config, on the CPU."""
    prefix = blocks_path + "."
    for name, m in list(model.named_modules()):
        if not name or name == blocks_path or name.startswith(prefix):
            continue
        if any(b.is_meta for b in m.buffers(recurse=False)) and not any(p.is_meta for p in m.parameters(False)):
            try:
                new = type(m)(config=config)
            except Exception as e:  # noqa: BLE001
                raise CheckpointError(f"cannot rebuild {name} ({type(m).__name__}) outside the meta device: {e}") \
                    from e
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, new)
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers())
            if t.is_meta and not n.startswith(prefix)]
    if left:
        raise CheckpointError(f"tensors {left[:5]} are neither in the checkpoint nor computable")


def compress_checkpoint(model_dir: str | os.PathLike, out_dir: str | os.PathLike, *, overwrite: bool = False,
                        info: dict[str, Any] | None = None) -> Path:
    """Rewrite a dense ``save_pretrained`` directory (safetensors) as a bitmask checkpoint, one source shard at a
    time (memory: one shard), atomically; every other file (config, tokenizer, ``secateurs.json`` — to which the
    ``weights`` entry is added, or ``info`` in its place) is copied."""
    src = Path(model_dir)
    out = check_output_dir(out_dir, overwrite).absolute()
    shards = Shards(src)
    doc = dict(read_info(src) if info is None else info)
    with atomic_dir(out) as tmp:
        parts: list[dict[str, Any]] = []
        for i, path in enumerate(sorted(set(shards.where.values()))):
            with safe_open(str(path), framework="pt") as f:
                parts.append(write_bitmask(((k, f.get_tensor(k)) for k in f.keys()), tmp, prefix=f"bitmask-{i:05d}"))
        weights = {"format": "bitmask", "version": 1, "files": [f for p in parts for f in p["files"]],
                   "dense_bytes": sum(p["dense_bytes"] for p in parts),
                   "stored_bytes": sum(p["stored_bytes"] for p in parts),
                   "tensors": {k: v for p in parts for k, v in p["tensors"].items()}}
        for f in src.iterdir():
            if f.is_file() and f.suffix not in (".safetensors", ".bin") and f.name not in (INDEX_FILE, INFO_FILE):
                shutil.copyfile(f, tmp / f.name)
        doc.setdefault("format", "secateurs.llm/1")
        doc["weights"] = weights
        atomic_write_json(tmp / INFO_FILE, doc, indent=2, default=str)
    return out
