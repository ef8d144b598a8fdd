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
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from .core.masks import masked_targets, set_mask
from .core.targets import Target
from .errors import CheckpointError, OutputExistsError

MASK_SUFFIX = ".__mask__"
_BITS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` via a temporary file in the same directory and :func:`os.replace`.

    A reader sees the old file or the new one, never a partial one; parent directories are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def save_safetensors_atomic(path: str | os.PathLike, tensors: dict[str, torch.Tensor],
                            metadata: dict[str, str] | None = None) -> Path:
    """Write ``tensors`` as a safetensors file via a temporary file in the same directory and :func:`os.replace`
    (readable like any other file: mkstemp's 0600 is widened to 0644)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """Bool tensor -> uint8 tensor of ceil(n/8) bytes (MSB first)."""
    flat = mask.reshape(-1).to(torch.uint8).cpu()
    pad = (-flat.numel()) % 8
    flat = torch.cat([flat, flat.new_zeros(pad)]).reshape(-1, 8)
    return (flat * _BITS).sum(1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, shape: list[int]) -> torch.Tensor:
    n = 1
    for s in shape:
        n *= s
    bits = (packed.reshape(-1, 1) & _BITS).ne(0).reshape(-1)
    return bits[:n].reshape(shape)


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
    from . import __version__

    meta = {"version": __version__, "masks": {k: list(m.shape) for k, m in masks.items()}}
    if getattr(model, "zoo_name", None):
        meta["arch"] = {"name": model.zoo_name, "config": getattr(model, "zoo_config", {})}
    meta.update(metadata or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"secateurs": json.dumps(meta)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


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
def atomic_dir(out: Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary directory beside ``out``; on success it replaces ``out`` (an existing one is moved away
    first and deleted after; refused with OutputExistsError if not ``overwrite``), on failure it is removed and
    ``out`` is untouched."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        if out.exists() and not overwrite:
            raise OutputExistsError(f"{out} appeared while it was being written; pass overwrite=True to replace it")
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_output_dir(out_dir: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Refuse an existing ``out_dir`` unless ``overwrite`` (OutputExistsError); call it before pruning starts."""
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"output directory {str(out)!r} already exists; pass overwrite=True (--overwrite) "
                                f"to replace it or choose another path")
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"output path {str(out)!r} exists and is not a directory")
    return out
