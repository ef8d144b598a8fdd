"""Save and reload structurally pruned models without pickle: safetensors weights plus a JSON structure file.

The structure file (``secateurs_structure.json``) holds every module's size attributes and every tensor's shape.
To reload, build the *unpruned* architecture (the zoo model, your own class, or a Hugging Face config), then
:func:`load` shrinks each module to the recorded widths and loads the weights strictly.  Hugging Face models are
written with ``save_pretrained``; when the pruned widths are uniform the config already describes them and plain
``from_pretrained`` works too (:mod:`.hf`); :func:`load_pretrained` works in every case.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_model
from torch import nn

from ..errors import CheckpointError
from ..io import atomic_dir, atomic_file, atomic_write_json, check_output_dir
from .prune import widths_of

STRUCTURE_FILE = "secateurs_structure.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "secateurs.structured/1"


def save(model: nn.Module, out_dir: str | os.PathLike[str], *, overwrite: bool = False,
         report: Any = None) -> Path:
    """Write ``model`` to ``out_dir`` (atomically): weights as safetensors (``save_pretrained`` for a Hugging Face
    model) and the structure file; ``report`` (a StructuredReport) is recorded with it."""
    out = check_output_dir(out_dir, overwrite).absolute()
    with atomic_dir(out) as tmp:
        if hasattr(model, "save_pretrained"):
            model.save_pretrained(tmp, safe_serialization=True)
        else:
            with atomic_file(tmp / WEIGHTS_FILE) as f:
                save_model(model, str(f))
        doc = {"format": FORMAT, "architecture": type(model).__name__, "widths": widths_of(model),
               "shapes": {k: list(v.shape) for k, v in model.state_dict().items()},
               "report": report.to_dict() if hasattr(report, "to_dict") else report}
        atomic_write_json(tmp / STRUCTURE_FILE, doc, default=str)
    return out


def _read(path: Path) -> dict:
    f = path / STRUCTURE_FILE
    if not f.is_file():
        raise CheckpointError(f"{str(path)!r} has no {STRUCTURE_FILE}; it was not written by "
                              f"secateurs.structured.save")
    try:
        doc = json.loads(f.read_text())
    except ValueError as e:
        raise CheckpointError(f"{f} is not valid JSON: {e}") from e
    if doc.get("format") != FORMAT:
        raise CheckpointError(f"{f} has format {doc.get('format')!r}, expected {FORMAT!r}")
    return doc


def _state(path: Path) -> dict[str, torch.Tensor]:
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"no .safetensors weights in {str(path)!r}")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    return state


def shrink(model: nn.Module, doc: dict) -> None:
    """Give every module of ``model`` the recorded widths and tensors of the recorded shapes (uninitialised);
    tied parameters stay tied."""
    modules = dict(model.named_modules())
    if type(model).__name__ != doc.get("architecture"):
        raise CheckpointError(f"the checkpoint is a {doc.get('architecture')}, the model a {type(model).__name__}")
    for name, attrs in doc["widths"].items():
        m = modules.get(name)
        if m is None:
            raise CheckpointError(f"module {name!r} of the checkpoint is not in the model")
        for a, v in attrs.items():
            setattr(m, a, tuple(v) if isinstance(v, list) else v)
    new: dict[int, torch.Tensor] = {}
    for mname, m in modules.items():
        for table in (m._parameters, m._buffers):
            for k, t in list(table.items()):
                if t is None:
                    continue
                full = f"{mname}.{k}" if mname else k
                shape = doc["shapes"].get(full)
                if shape is None or list(t.shape) == shape:
                    continue
                if id(t) not in new:
                    e = torch.empty(shape, dtype=t.dtype, device=t.device)
                    new[id(t)] = nn.Parameter(e, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else e
                table[k] = new[id(t)]


def load(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load a model saved by :func:`save` into ``model``, a freshly built *unpruned* instance of the same
    architecture: its modules are shrunk to the saved widths, then the weights are loaded (strictly)."""
    path = Path(path)
    doc = _read(path)
    state = _state(path)
    shrink(model, doc)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(doc["shapes"]) - set(state)  # tied weights are stored once
    if unexpected or set(missing) - tied:
        raise CheckpointError(f"the weights in {str(path)!r} do not match the model: missing "
                              f"{sorted(set(missing) - tied)[:5]}, unexpected {sorted(unexpected)[:5]}")
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    return model.eval()


def load_pretrained(path: str | os.PathLike[str], **kwargs: Any) -> nn.Module:
    """Rebuild a pruned Hugging Face model from its directory: the config's architecture, shrunk to the saved
    widths, with the saved weights (works whether or not the stock config can express per-layer widths)."""
    import transformers

    path = Path(path)
    doc = _read(path)
    config = transformers.AutoConfig.from_pretrained(path, **kwargs)
    cls = getattr(transformers, doc["architecture"], None)
    if cls is None:
        raise CheckpointError(f"transformers has no class {doc['architecture']!r}")
    return load(cls(config), path)
