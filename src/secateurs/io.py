"""Save and load pruned models as safetensors, with masks bit-packed and pruning metadata.

File layout: every tensor of the model's plain ``state_dict`` (effective, masked weights under their usual
names), plus ``<name>.__mask__`` per masked weight as ``uint8`` bit-packed (8 weights per byte, row-major), and a
``secateurs`` metadata entry (JSON): library version, mask shapes, the zoo architecture when known, and whatever
the caller adds (method, sparsity, pattern...).  Loading never unpickles anything.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from .core.masks import masked_targets, set_mask
from .core.targets import Target
from .errors import CheckpointError, OutputExistsError

MASK_SUFFIX = ".__mask__"


# ------------------------------------------------------------------------------------------ the one writer
# Every file and folder secateurs writes goes through atomic_file / atomic_dir: a reader sees the old output or the
# new one, never a partial one, and outputs get the modes of any file the user creates (0o666 / 0o777 less the
# process umask: 0644 / 0755 under the usual 022), not tempfile's private 0600 / 0700.

def _reserve(parent: Path, prefix: str, directory: bool) -> Path:
    """Create a new, empty temporary file or folder in ``parent`` named ``prefix<random>.tmp``.

    Created with ``os.open(..., 0o666)`` / ``os.mkdir(..., 0o777)`` (``O_EXCL``), so the kernel applies the umask
    as for any normal output (tempfile's mkstemp / mkdtemp make them private)."""
    for _ in range(100):
        tmp = parent / f"{prefix}{secrets.token_hex(4)}.tmp"
        try:
            if directory:
                os.mkdir(tmp, 0o777)
            else:
                os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary {'folder' if directory else 'file'} in {parent}")


def _umask() -> int:
    """The process umask (read from ``/proc/self/status`` where there is one, which changes nothing)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    old = os.umask(0o022)
    os.umask(old)
    return old


def normal_mode(directory: bool = False) -> int:
    """The mode of a file (``0o666``) or folder (``0o777``) created normally, less the process umask: 0644 / 0755
    under the usual umask 022."""
    return (0o777 if directory else 0o666) & ~_umask()


def _finish_file(tmp: Path, fsync: bool) -> None:
    """Give ``tmp`` a normal file's mode (the writer may have re-created it, or made it private) and flush it."""
    os.chmod(tmp, normal_mode())
    if fsync:
        with contextlib.suppress(OSError):
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path in the directory of ``path`` to write the output to (by any writer); on success it
    gets the mode of a normal file (``0o666 & ~umask``), is fsynced and :func:`os.replace`s ``path``; on failure it
    is removed and ``path`` is untouched.  Parent directories are created.  The primitive under every file output
    of secateurs (:func:`atomic_write_text`, :func:`save_safetensors_atomic`, :func:`save`, the streamed shards)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _reserve(path.parent, f".{path.name}.", directory=False)
    try:
        yield tmp
        _finish_file(tmp, fsync)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_file`); parent directories are created."""
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def atomic_write_json(path: str | os.PathLike, doc: Any, *, indent: int | None = 1, default: Any = None,
                      allow_nan: bool = True) -> Path:
    """Write ``doc`` as JSON (plus a final newline) to ``path`` atomically (:func:`atomic_write_text`)."""
    return atomic_write_text(path, json.dumps(doc, indent=indent, default=default, allow_nan=allow_nan) + "\n")


def save_safetensors_atomic(path: str | os.PathLike, tensors: dict[str, torch.Tensor],
                            metadata: dict[str, str] | None = None) -> Path:
    """Write ``tensors`` as a safetensors file atomically (:func:`atomic_file`)."""
    path = Path(path)
    with atomic_file(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def pack_bits(values: torch.Tensor, bits: int = 1) -> torch.Tensor:
    """Pack ``values`` (a bool tensor for ``bits=1``, else small unsigned integers ``< 2**bits``; ``bits`` in 1, 2,
    4) in flat row-major order into a uint8 tensor of ``ceil(n * bits / 8)`` bytes, first value in the most
    significant bits (``bits=1``: :func:`numpy.packbits`, 8 weights per byte, MSB first)."""
    if bits not in (1, 2, 4):
        raise ValueError(f"bits must be 1, 2 or 4, got {bits}")
    flat = values.detach().reshape(-1).cpu()
    if bits == 1:
        return torch.from_numpy(np.packbits(flat.to(torch.bool).numpy()))
    per = 8 // bits
    flat = flat.to(torch.uint8)
    pad = (-flat.numel()) % per
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    groups = flat.reshape(-1, per)
    out = groups[:, 0] << (8 - bits)
    for j in range(1, per):
        out |= groups[:, j] << (8 - bits * (j + 1))
    return out


def unpack_bits(packed: torch.Tensor, shape: list[int] | tuple[int, ...], bits: int = 1) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: a bool tensor of ``shape`` for ``bits=1``, else uint8 values."""
    if bits not in (1, 2, 4):
        raise ValueError(f"bits must be 1, 2 or 4, got {bits}")
    n = 1
    for s in shape:
        n *= int(s)
    raw = packed.reshape(-1).cpu()
    if bits == 1:
        return torch.from_numpy(np.unpackbits(raw.numpy(), count=n).view(np.bool_)).reshape(shape)
    per = 8 // bits
    shifts = torch.tensor([8 - bits * (j + 1) for j in range(per)], dtype=torch.uint8)
    vals = (raw.reshape(-1, 1) >> shifts) & (2 ** bits - 1)
    return vals.reshape(-1)[:n].reshape(shape)


SAFETENSORS_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                      torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
                      torch.uint8: "U8", torch.bool: "BOOL"}


class SafetensorsStream:
    """Write a safetensors file one tensor at a time, in the declared order, holding one tensor in memory.

    ``specs`` maps each name, in writing order, to its ``(dtype, shape)``; the header (with every offset) is
    written first, then :meth:`write` appends each tensor's bytes (safetensors format: 8-byte little-endian header
    length, JSON header padded with spaces to a multiple of 8, then the raw little-endian data).  Used inside
    :func:`atomic_file`; :meth:`close` checks that every declared tensor was written."""

    def __init__(self, path: str | os.PathLike, specs: dict[str, tuple[torch.dtype, list[int]]],
                 metadata: dict[str, str] | None = None):
        header: dict[str, Any] = {}
        if metadata:
            header["__metadata__"] = dict(metadata)
        offset = 0
        self._order: list[tuple[str, torch.dtype, list[int], int]] = []
        for name, (dtype, shape) in specs.items():
            shape = [int(s) for s in shape]
            n = 1
            for s in shape:
                n *= s
            size = n * torch.empty((), dtype=dtype).element_size()
            header[name] = {"dtype": SAFETENSORS_DTYPES[dtype], "shape": shape, "data_offsets": [offset, offset + size]}
            self._order.append((name, dtype, shape, size))
            offset += size
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * ((-len(raw)) % 8)
        self._f = open(path, "wb")
        self._f.write(len(raw).to_bytes(8, "little") + raw)
        self._next = 0

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """Append ``tensor`` (the next declared one: same name, dtype and shape)."""
        want, dtype, shape, size = self._order[self._next]
        if name != want or tensor.dtype != dtype or list(tensor.shape) != shape:
            raise ValueError(f"expected {want} {dtype} {shape}, got {name} {tensor.dtype} {list(tensor.shape)}")
        if size:
            self._f.write(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)
        self._next += 1

    def close(self) -> None:
        self._f.close()
        if self._next != len(self._order):
            raise ValueError(f"{len(self._order) - self._next} declared tensors were not written")


def _plain_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """State dict under the names the unpruned model uses, and the masks by weight name."""
    masks = {t.key: t for t in masked_targets(model)}
    out = {}
    for k, v in model.state_dict().items():
        if ".parametrizations." not in k:
            out[k] = v
    for key, t in masks.items():
        out[key] = t.weight.detach()
    return out, {k: t.module.parametrizations[t.param][0].mask for k, t in masks.items()}


def save(model: nn.Module, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write ``model`` (weights, bit-packed masks, metadata) to a safetensors file, atomically."""
    path = Path(path)
    state, masks = _plain_state(model)
    tensors = {k: v.contiguous().cpu() for k, v in state.items()}
    for k, m in masks.items():
        tensors[k + MASK_SUFFIX] = pack_bits(m)
    from ._version import __version__

    meta = {"version": __version__, "masks": {k: list(m.shape) for k, m in masks.items()}}
    if getattr(model, "zoo_name", None):
        meta["arch"] = {"name": model.zoo_name, "config": getattr(model, "zoo_config", {})}
    meta.update(metadata or {})
    return save_safetensors_atomic(path, tensors, metadata={"secateurs": json.dumps(meta)})


def read_metadata(path: str | os.PathLike) -> dict:
    """The ``secateurs`` metadata of a saved file (CheckpointError if it is not a readable secateurs file)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("secateurs")
    except (OSError, SafetensorError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from e
    if raw is None:
        raise CheckpointError(f"{path} has no secateurs metadata; save it with secateurs.save")
    return json.loads(raw)


def load(path: str | os.PathLike, model: nn.Module) -> nn.Module:
    """Restore weights and masks saved by :func:`save` into ``model`` (same architecture, pruned or not).

    Everything is checked (keys, shapes, mask sizes) before the model is touched.
    """
    if not Path(path).is_file():
        raise CheckpointError(f"no such file: {path}")
    meta = read_metadata(path)
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from e
    masks = {k[: -len(MASK_SUFFIX)]: v for k, v in tensors.items() if k.endswith(MASK_SUFFIX)}
    state = {k: v for k, v in tensors.items() if not k.endswith(MASK_SUFFIX)}
    current, _ = _plain_state(model)
    missing, unexpected = set(current) - set(state), set(state) - set(current)
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match the model: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    for k, v in state.items():
        if tuple(v.shape) != tuple(current[k].shape):
            raise CheckpointError(f"{path}: {k} has shape {tuple(v.shape)}, the model has {tuple(current[k].shape)}")
    shapes = meta.get("masks", {})
    for k, packed in masks.items():
        if k not in state or list(state[k].shape) != shapes.get(k) or packed.numel() != -(-state[k].numel() // 8):
            raise CheckpointError(f"{path}: mask for {k} is corrupt or does not match its weight")
    modules = dict(model.named_modules())
    with torch.no_grad():
        by_key = {t.key: t for t in masked_targets(model)}
        for k, v in state.items():
            if k in by_key:
                by_key[k].leaf.copy_(v)
            else:
                mod_name, _, attr = k.rpartition(".")
                getattr(modules[mod_name], attr).copy_(v)  # parameters and buffers alike
        for k, packed in masks.items():
            mod_name, _, param = k.rpartition(".")
            set_mask(Target(mod_name, modules[mod_name], param), unpack_bits(packed, shapes[k]))
        for k, t in by_key.items():  # masks the model had but the file does not: the file wins
            if k not in masks:
                from .core.masks import clear_mask

                clear_mask(t)
    return model


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary directory beside ``out`` to write the output folder in (by any writers); on success it
    replaces ``out`` with normal modes throughout (:func:`replace_dir`; refused with OutputExistsError if ``out``
    exists and not ``overwrite``), on failure it is removed and ``out`` is untouched."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _reserve(out.parent, f".{out.name}.", directory=True)
    try:
        yield tmp
        replace_dir(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(src: str | os.PathLike, out: str | os.PathLike, overwrite: bool = True) -> Path:
    """Publish the complete folder ``src`` as ``out`` (same filesystem): every folder and file in it gets a normal
    mode (:func:`normal_mode`; ``save_pretrained`` writes private 0600 weights, ``mkdtemp`` 0700 folders), then it
    is renamed.  An existing ``out`` is refused with OutputExistsError unless ``overwrite``; else it is moved aside
    first and deleted only once ``src`` is in its place, so ``out`` is always either the old output or the new
    one."""
    src, out = Path(src), Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} appeared while it was being written; pass overwrite=True to replace it")
    dir_mode = normal_mode(directory=True)
    for folder, _, files in os.walk(src):
        os.chmod(folder, dir_mode)
        for name in files:
            f = os.path.join(folder, name)
            if not os.path.islink(f):  # executables keep their x bits
                os.chmod(f, dir_mode if os.stat(f).st_mode & 0o111 else dir_mode & 0o666)
    if out.exists() or out.is_symlink():
        old = _reserve(out.parent, f".{out.name}.old-", directory=True)
        os.replace(out, old / out.name)
        os.replace(src, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, out)
    return out


def check_output(path: str | os.PathLike[str], overwrite: bool = False, *, directory: bool = True) -> Path:
    """Refuse an existing output ``path`` unless ``overwrite`` (OutputExistsError), and one of the wrong kind (a
    file where a ``directory`` is written, or a folder where a file is); call it before any work starts.  The one
    overwrite policy of every command and every ``save``-like function that takes ``overwrite``."""
    out = Path(path)
    what = "output directory" if directory else "output file"
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{what} {str(out)!r} already exists; pass overwrite=True (--overwrite) "
                                f"to replace it or choose another path")
    if out.exists() and out.is_dir() != directory:
        raise OutputExistsError(f"output path {str(out)!r} exists and is {'not ' if directory else ''}a directory")
    return out


def check_output_dir(out_dir: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Refuse an existing ``out_dir`` unless ``overwrite`` (OutputExistsError); call it before pruning starts
    (:func:`check_output` for a folder)."""
    return check_output(out_dir, overwrite, directory=True)
