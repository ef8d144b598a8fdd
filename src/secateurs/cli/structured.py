"""Structured-pruning commands: ``secateurs structured prune``."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .common import emit_json, err, handle_errors, out, parse_options

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.command("prune")
@handle_errors
def prune_cmd(
    model: str = typer.Option("resnet20", help="zoo model name (trained dense on the data set, cached)"),
    dataset: str = typer.Option("digits", help="data set to evaluate and fine-tune on"),
    ratio: float = typer.Option(0.5, "--sparsity", "--ratio",
                                help="fraction of each group's channels/neurons/heads removed, in [0, 1) (--ratio: "
                                     "its older name)"),
    importance: str = typer.Option("l2", "--method", "--importance",
                                   help="l1 | l2 | bn_scale | taylor | fpgm | random | any criterion (--importance: "
                                        "its older name)"),
    allocation: str = typer.Option("uniform", help="uniform | global"),
    round_to: Optional[int] = typer.Option(None, help="kept channel counts are multiples of this (e.g. 8)"),
    target_macs: Optional[float] = typer.Option(None, help="instead of --sparsity: prune until MACs <= this fraction"),
    ignore: list[str] = typer.Option([], help="module-name glob whose outputs keep their width (repeatable)"),
    finetune_epochs: int = typer.Option(0, help="epochs of fine-tuning after pruning"),
    finetune_lr: float = typer.Option(0.01, help="fine-tuning learning rate"),
    threads: int = typer.Option(1, help="CPU threads for the latency measurement"),
    seed: int = typer.Option(0),
    option: list[str] = typer.Option([], "--option", "-o", help="KEY=VALUE option of the importance, e.g. "
                                                                "reduction=mean (repeatable; `secateurs methods`)"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="save the pruned model (safetensors + structure JSON)"),
    overwrite: bool = typer.Option(False, help="replace an existing --out directory"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON document on stdout, nothing else"),
) -> None:
    """Prune channels physically, optionally fine-tune, and compare params, MACs, latency and accuracy."""
    from .. import structured
    from ..experiment import load_model
    from ..io import check_output_dir
    from ..zoo import calibration_batches, evaluate, fit, load_dataset

    if out_dir is not None:
        check_output_dir(out_dir, overwrite)
    data = load_dataset(dataset)
    dense = load_model(model, dataset, seed, progress=not as_json)
    train_loader, test_loader = data.loaders(batch_size=64, seed=seed)
    example = next(iter(test_loader))[0][:1]
    pruned = copy.deepcopy(dense)
    calib = calibration_batches(data, n_per_class=10, seed=seed, batch_size=50)
    report = structured.prune(pruned, example, sparsity=ratio, method=importance, allocation=allocation,
                              round_to=round_to, ignore=list(ignore) or None, data=calib, target_macs=target_macs,
                              seed=seed, **parse_options(option))
    rows = {"dense": evaluate(dense, test_loader), "pruned": evaluate(pruned, test_loader)}
    if finetune_epochs > 0:
        fit(pruned, train_loader, finetune_epochs, lr=finetune_lr, seed=seed, progress=not as_json)
        rows["finetuned"] = evaluate(pruned, test_loader)
    pruned.eval()
    lat = structured.latency([dense, pruned], example, rounds=50, threads=threads)
    doc = {"model": model, "dataset": dataset, "report": report.to_dict(),
           "latency_seconds": {"dense": lat[0], "pruned": lat[1], "batch_size": 1, "threads": threads},
           "speedup": lat[0] / lat[1], "accuracy": {k: v["accuracy"] for k, v in rows.items()},
           "loss": {k: v["loss"] for k, v in rows.items()}}
    if out_dir is not None:
        doc["saved"] = str(structured.save(pruned, out_dir, overwrite=overwrite, report=report))
    if as_json:
        emit_json(doc)
        return
    t = Table(title=f"{model} on {dataset}: structured {importance} / {allocation}, ratio {report.ratio:.3f}")
    for c in ("", "params", "MACs", "latency (ms)", "accuracy"):
        t.add_column(c, justify="right")
    t.add_row("dense", f"{report.params_before:,}", f"{report.macs_before:,}", f"{lat[0] * 1e3:.3f}",
              f"{rows['dense']['accuracy']:.4f}")
    t.add_row("pruned", f"{report.params_after:,}", f"{report.macs_after:,}", f"{lat[1] * 1e3:.3f}",
              f"{rows['pruned']['accuracy']:.4f}")
    if "finetuned" in rows:
        t.add_row(f"+{finetune_epochs} ep fine-tune", f"{report.params_after:,}", f"{report.macs_after:,}",
                  f"{lat[1] * 1e3:.3f}", f"{rows['finetuned']['accuracy']:.4f}")
    out.print(t)
    out.print(f"params x{report.param_ratio:.3f}, MACs x{report.mac_ratio:.3f}, measured speedup "
              f"{lat[0] / lat[1]:.2f}x (batch 1, {threads} thread(s))")
    if out_dir is not None:
        err.print(f"saved to {doc['saved']}")
