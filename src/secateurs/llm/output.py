"""Writing a pruned model: a plain ``save_pretrained`` directory (safetensors, zeros baked in) plus the tokenizer
and a ``secateurs.json`` describing the run, written atomically.

The directory is assembled in a temporary sibling (same filesystem) and renamed into place only when complete,
so an interrupted run never leaves a half-written model at ``out_dir``; with ``overwrite`` the previous
directory is moved aside first and deleted only after the new one is in place.
"""
from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from torch import nn

from ..io import atomic_dir, atomic_write_json, check_output_dir

__all__ = ["save_pruned", "check_output_dir", "library_versions"]

INFO_FILE = "secateurs.json"


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
                perplexities: dict[str, float] | None = None, overwrite: bool = False) -> Path:
    """Save a pruned model so that plain ``transformers`` loads it, with ``secateurs.json``, atomically.

    ``report`` is the :class:`~secateurs.llm.prune.PruneReport` of :func:`secateurs.llm.prune` (or a dict);
    ``perplexities`` (e.g. ``{"dense": 31.2, "pruned": 35.0}``) are recorded with it.  Weights are written as
    safetensors.  Raises OutputExistsError when ``out_dir`` exists and ``overwrite`` is False.
    """
    out = check_output_dir(out_dir, overwrite).absolute()
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        info = {
            "format": "secateurs.llm/1",
            "prune": report.to_dict() if hasattr(report, "to_dict") else dict(report or {}),
            "perplexities": dict(perplexities or {}),
            "versions": library_versions(),
        }
        atomic_write_json(tmp / INFO_FILE, info, indent=2, default=str)
    return out
