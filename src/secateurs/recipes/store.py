"""The runs directory: one folder per finished run, named by the recipe's key (a hash of the resolved recipe and
the library version), each holding ``run.json`` (recipe, result, version).

A run folder is published whole with :func:`secateurs.io.atomic_dir`, so a killed run leaves no run folder (only
a hidden temporary one, ignored), and a finished run is never recomputed.  ``runs.json`` marks a folder as a runs
directory.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import InvalidArgumentError
from ..io import atomic_dir, atomic_write_json

MARKER = "runs.json"
RUN_FILE = "run.json"
FORMAT = "secateurs-runs/1"


class RunsDirError(InvalidArgumentError):
    """A path that is not a secateurs runs directory (or holds no finished run where one is needed)."""


def open_runs_dir(path: str | Path, create: bool = False) -> Path:
    """``path`` as a runs directory: created (with its marker) when ``create``; else it must exist and carry the
    marker (RunsDirError otherwise)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise RunsDirError(f"{p} is a file, not a runs directory")
    marker = p / MARKER
    if marker.is_file():
        try:
            doc = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise RunsDirError(f"{marker} is unreadable ({e}); is {p} a secateurs runs directory?") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise RunsDirError(f"{marker} is not a secateurs runs marker (format {FORMAT!r} expected)")
        return p
    if not create:
        what = "does not exist" if not p.exists() else f"has no {MARKER}"
        raise RunsDirError(f"{p} is not a secateurs runs directory ({what}); write one with `secateurs run "
                           f"--runs-dir {p}` or `secateurs sweep ... --runs-dir {p}`")
    if p.exists() and any(not c.name.startswith(".") for c in p.iterdir()):
        raise RunsDirError(f"{p} exists, is not empty and is not a runs directory; choose another --runs-dir")
    p.mkdir(parents=True, exist_ok=True)
    atomic_write_json(marker, {"format": FORMAT, "created_by": __version__})
    return p


def run_path(runs_dir: Path, key: str) -> Path:
    return runs_dir / key


def finished(runs_dir: Path, key: str) -> dict[str, Any] | None:
    """The record of the finished run ``key`` in ``runs_dir``, or None."""
    f = run_path(runs_dir, key) / RUN_FILE
    if not f.is_file():
        return None
    return _read(f)


def write_run(runs_dir: Path, key: str, record: dict[str, Any]) -> Path:
    """Publish the run folder of ``key`` with its ``run.json`` atomically (a concurrent writer of the same key
    wrote the same recipe: the folder is replaced whole)."""
    with atomic_dir(run_path(runs_dir, key)) as tmp:
        atomic_write_json(tmp / RUN_FILE, record, indent=1, allow_nan=True)
    return run_path(runs_dir, key)


def read_runs(runs_dir: str | Path) -> list[dict[str, Any]]:
    """Every finished run of a runs directory, sorted by key (RunsDirError if it is not one or has none)."""
    p = open_runs_dir(runs_dir)
    out = [_read(c / RUN_FILE) for c in sorted(p.iterdir())
           if c.is_dir() and not c.name.startswith(".") and (c / RUN_FILE).is_file()]
    if not out:
        raise RunsDirError(f"{p} holds no finished run")
    return out


def _read(f: Path) -> dict[str, Any]:
    try:
        doc = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RunsDirError(f"{f} is unreadable: {e}") from None
    if not isinstance(doc, dict) or not {"recipe", "result", "key"} <= set(doc):
        raise RunsDirError(f"{f} is not a secateurs run record")
    return doc
