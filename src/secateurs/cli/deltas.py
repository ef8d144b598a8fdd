"""``secateurs deltas``: prune (and merge) the fine-tuning deltas of local Hugging Face checkpoints.

``secateurs deltas prune --base DIR --finetuned DIR --method dare|darex|magnitude --sparsity 0.9 --out DIR
[--no-rescale] [--seed N] [--exclude REGEX] [--option KEY=VALUE] [--overwrite] [--json]`` and ``secateurs deltas
merge --base DIR --finetuned DIR --finetuned DIR ... --out DIR [--no-sign-election] [--weight W ...] [--json]``.
Errors print one line on stderr and exit 2; nothing is written before the inputs are checked.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import emit_json, err, handle_errors, out, parse_options

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Delta pruning: sparsify the difference between a fine-tuned model and its base (DARE).")


@app.command("prune")
@handle_errors
def prune_cmd(
    base: Path = typer.Option(..., "--base", help="base model directory (safetensors)"),
    finetuned: Path = typer.Option(..., "--finetuned", help="fine-tuned model directory (same architecture)"),
    out_dir: Path = typer.Option(..., "--out", help="output directory (loads with plain transformers)"),
    method: str = typer.Option("dare", help="dare | darex | magnitude (secateurs methods)"),
    sparsity: float = typer.Option(0.9, help="fraction of the delta dropped"),
    rescale: bool = typer.Option(True, "--rescale/--no-rescale", help="rescale the kept deltas (DARE: 1/(1-p))"),
    seed: int = typer.Option(0, help="seed of the random drop (per tensor: seed + hash of its name)"),
    exclude: Optional[str] = typer.Option(None, help="regex: tensors that keep their whole fine-tuned value"),
    option: list[str] = typer.Option([], "--option", "-o", help="KEY=VALUE option of the method (darex: q=0.2, "
                                                                "calibration=FILE, eta=...)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output directory"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON document on stdout, nothing else"),
) -> None:
    """Prune the delta of --finetuned against --base, tensor by tensor, and write base + pruned delta."""
    from ..deltas import prune

    report = prune(base, finetuned, out_dir, method=method, sparsity=sparsity, rescale=rescale, seed=seed,
                   exclude=exclude, overwrite=overwrite, **parse_options(option))
    if as_json:
        emit_json({"out": str(out_dir), "method": method, "sparsity": sparsity, "delta_density":
                   report.delta_density, "seconds": report.seconds, "report": report.to_dict()})
        return
    scales = sorted({round(t.scale, 4) for t in report.tensors if not t.excluded})
    out.print(f"{method} at {sparsity:g}: kept {report.delta_density:.4f} of the delta over "
              f"{sum(not t.excluded for t in report.tensors)} tensors (scale {', '.join(map(str, scales[:4]))}"
              f"{'...' if len(scales) > 4 else ''}) in {report.seconds:.1f} s")
    err.print(f"saved {out_dir}")


@app.command("merge")
@handle_errors
def merge_cmd(
    base: Path = typer.Option(..., "--base", help="base model directory (safetensors)"),
    finetuned: list[Path] = typer.Option(..., "--finetuned", help="fine-tuned model directory (repeat: 2 or more)"),
    out_dir: Path = typer.Option(..., "--out", help="output directory"),
    method: str = typer.Option("dare", help="how each delta is pruned first: dare | darex | magnitude"),
    sparsity: float = typer.Option(0.9, help="fraction of each delta dropped"),
    rescale: bool = typer.Option(True, "--rescale/--no-rescale", help="rescale the kept deltas"),
    sign_election: bool = typer.Option(True, "--sign-election/--no-sign-election",
                                       help="TIES sign election + disjoint mean (off: weighted sum)"),
    weight: list[float] = typer.Option([], "--weight", help="weight of each model, in --finetuned order"),
    scale: float = typer.Option(1.0, help="λ: scale of the merged delta"),
    seed: int = typer.Option(0, help="seed of the random drops"),
    option: list[str] = typer.Option([], "--option", "-o", help="KEY=VALUE option of the method"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output directory"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON document on stdout, nothing else"),
) -> None:
    """Merge several fine-tuned models' pruned deltas into one (DARE + TIES sign election by default)."""
    from ..deltas import merge

    summary = merge(base, finetuned, out_dir, method=method, sparsity=sparsity, rescale=rescale, seed=seed,
                    weights=weight or None, sign_election=sign_election, scale=scale, overwrite=overwrite,
                    **parse_options(option))
    if as_json:
        emit_json({"out": str(out_dir), **summary})
        return
    out.print(f"merged {len(finetuned)} deltas ({method} at {sparsity:g}, sign election {sign_election}) in "
              f"{summary['seconds']:.1f} s")
    err.print(f"saved {out_dir}")
