"""``secateurs train``: train a zoo model sparse with a training-time method (GMP, DST, ISS-P, PDP, PaI, ...)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .common import emit_json, handle_errors, out


@handle_errors
def train_cmd(
    model: str = typer.Option("lenet300", help="zoo model name, trained from scratch"),
    dataset: str = typer.Option("digits", help="data set to train and test on"),
    method: str = typer.Option("gmp", help="gmp | rigl | set | granet | iss | pdp | oneshot | snip | grasp | "
                                           "synflow | random-erk (`secateurs methods` lists them)"),
    sparsity: float = typer.Option(0.9, help="final fraction of weights that are zero, in [0, 1)"),
    epochs: Optional[int] = typer.Option(None, help="training epochs (default: the zoo recipe's)"),
    lr: Optional[float] = typer.Option(None, help="peak learning rate (default: the zoo recipe's)"),
    allocation: Optional[str] = typer.Option(None, help="layer-wise budget for methods that take one "
                                                         "(global | uniform | er | erk)"),
    seed: int = typer.Option(0),
    out_path: Optional[Path] = typer.Option(None, "--out", help="also write the JSON result to this file"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON document on stdout, nothing else"),
) -> None:
    """Train sparse from scratch and report accuracy, sparsity and the per-epoch history."""
    from ..io import atomic_write_json
    from ..schedules import train_sparse

    options = {"allocation": allocation} if allocation else {}
    doc = train_sparse(model, dataset, method, sparsity, epochs=epochs, seed=seed, lr=lr, progress=not as_json,
                       **options)
    if out_path is not None:
        atomic_write_json(out_path, doc, indent=2, default=str)
    if as_json:
        emit_json(doc)
        return
    t = Table(title=f"{model} on {dataset}: {method} to {sparsity:.0%} sparsity")
    for c in ("epoch", "sparsity", "test accuracy", "test loss"):
        t.add_column(c, justify="right")
    for h in doc["history"]:
        t.add_row(str(h["epoch"]), f"{h['sparsity']:.4f}", f"{h['test_accuracy']:.4f}", f"{h['test_loss']:.4f}")
    out.print(t)
    out.print(f"final: accuracy {doc['accuracy']:.4f}, sparsity {doc['sparsity']:.4f}, {doc['seconds']:.1f} s")


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
