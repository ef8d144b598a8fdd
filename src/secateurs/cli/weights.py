"""Weight-pruning commands: ``prune`` and ``methods`` (``demo`` lives in :mod:`secateurs.cli.demo`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from ..experiment import Experiment, load_model, run
from ..io import atomic_dir, atomic_write_json, check_output, save
from .common import emit_json, err, handle_errors, methods_table, out, parse_options



@handle_errors
def prune_cmd(
    model: str = typer.Option("lenet300", help="zoo model name, or the path of a model saved by secateurs"),
    dataset: str = typer.Option("digits", help="data set to evaluate (and fine-tune) on"),
    method: str = typer.Option("magnitude", help="criterion (see `secateurs methods`)"),
    allocation: Optional[str] = typer.Option(None, help="global | uniform | er | erk | owl (default: the method's)"),
    scope: Optional[str] = typer.Option(None, help="row | layer | global (default: the method's)"),
    solver: Optional[str] = typer.Option(None, help="sparsegpt: OBS update of the kept weights after the mask"),
    pattern: str = typer.Option("unstructured", help='"unstructured", N:M such as "2:4", blocks such as "4x4"'),
    sparsity: Optional[float] = typer.Option(None, help="fraction of weights set to zero (implied by N:M)"),
    min_keep: Optional[int] = typer.Option(None, help="keep at least this many weights in every layer"),
    ignore: list[str] = typer.Option([], help="module-name glob to leave alone (repeatable)"),
    dense: list[str] = typer.Option([], help="module-name glob to keep dense but count (repeatable)"),
    finetune_epochs: int = typer.Option(0, help="epochs of fine-tuning after pruning"),
    finetune_lr: float = typer.Option(0.01, help="fine-tuning learning rate"),
    seed: int = typer.Option(0),
    option: list[str] = typer.Option([], "--option", "-o", help="KEY=VALUE option of the criterion, allocation or "
                                                                "solver (repeatable; `secateurs methods` lists them)"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="folder to write model.safetensors and result.json "
                                           "to, or a .safetensors file (the result beside it as <name>.json)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --out"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON document on stdout, nothing else"),
) -> None:
    """Prune a model (training or loading it dense first), optionally fine-tune, and compare before/after."""
    if sparsity is None and ":" not in pattern:
        sparsity = 0.9
    outputs = _outputs(out_dir, overwrite)  # refused before anything is trained or pruned
    exp = Experiment(model, dataset, method, allocation, pattern, sparsity, min_keep, seed, finetune_epochs,
                     finetune_lr, list(ignore) or None, list(dense) or None, scope, solver, parse_options(option))
    base = load_model(model, dataset, seed, progress=not as_json)
    outcome, pruned = run(exp, base, progress=not as_json)
    doc = outcome.to_dict()
    if outputs is not None:
        meta = {"method": method, "allocation": allocation, "pattern": pattern, "sparsity": outcome.sparsity}
        _write(outputs, pruned, meta, doc, overwrite)
    if as_json:
        emit_json(doc)
        return
    t = Table(title=f"{model} on {dataset}: {method} / {allocation} / {pattern}")
    for c in ("", "sparsity", "accuracy", "loss"):
        t.add_column(c, justify="right")
    t.add_row("dense", "0.0000", f"{outcome.dense['accuracy']:.4f}", f"{outcome.dense['loss']:.4f}")
    t.add_row("pruned", f"{outcome.sparsity:.4f}", f"{outcome.pruned['accuracy']:.4f}", f"{outcome.pruned['loss']:.4f}")
    if outcome.finetuned:
        f = outcome.finetuned
        t.add_row(f"+{finetune_epochs} ep fine-tune", f"{outcome.sparsity:.4f}", f"{f['accuracy']:.4f}", f"{f['loss']:.4f}")
    out.print(t)
    if out_dir is not None:
        err.print(f"saved to {doc['saved']}")


def _outputs(out: Optional[Path], overwrite: bool) -> Optional[tuple[Path, Path, Optional[Path]]]:
    """``(weights file, result file, folder or None)`` of ``--out``, each refused if it exists (OutputExistsError)
    unless ``overwrite``: the overwrite policy of every command (:func:`secateurs.io.check_output`)."""
    if out is None:
        return None
    if out.suffix == ".safetensors":
        result = out.with_suffix(".json")
        check_output(out, overwrite, directory=False)
        check_output(result, overwrite, directory=False)
        return out, result, None
    check_output(out, overwrite, directory=True)
    return out / "model.safetensors", out / "result.json", out


def _write(outputs: tuple[Path, Path, Optional[Path]], model: Any, meta: dict, doc: dict, overwrite: bool) -> None:
    """Save the pruned model and the result document, atomically (a folder is replaced as a whole)."""
    weights, result, folder = outputs
    doc["saved"] = str(weights)
    if folder is None:
        save(model, weights, meta)
        atomic_write_json(result, doc, indent=2)
        return
    with atomic_dir(folder, overwrite) as tmp:
        save(model, tmp / weights.name, meta)
        atomic_write_json(tmp / result.name, doc, indent=2)


@handle_errors
def methods_cmd(as_json: bool = typer.Option(False, "--json", help="print a JSON document on stdout")) -> None:
    """List the registered criteria, scopes, allocations, patterns, solvers, executors, structured importances,
    allocations, layer scores and compensations, structured LLM methods, training-time schedules, data
    scorers/selectors and delta methods, with their options (type, default, help; --json: one document)."""
    kinds = {"criteria": "criterion", "scopes": "scope", "allocations": "allocation", "patterns": "pattern",
             "solvers": "solver", "executors": "executor", "importances": "importance",
             "structured_allocations": "structured_allocation", "layer_scores": "layer_score",
             "compensations": "compensation", "llm_structured": "llm_structured", "schedules": "schedule",
             "scorers": "scorer", "selectors": "selector", "deltas": "delta"}
    methods_table(kinds, as_json)


def register(app: typer.Typer) -> None:
    app.command("prune")(prune_cmd)
    app.command("methods")(methods_cmd)
