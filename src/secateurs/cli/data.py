"""Data-pruning commands: ``secateurs data score | select | train | methods``.

``score`` writes one difficulty score per training example (with the labels) to a JSON file, ``select`` turns a
scores file into the indices to keep at a pruning rate, ``train`` trains a model on them and reports test
accuracy.  Every file is written atomically; ``--json`` prints one JSON document on stdout and nothing else.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from ..errors import InvalidArgumentError
from .common import emit_json, err, handle_errors, methods_table, out, parse_options

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Score training examples, select a coreset at a pruning rate, train on it.")


def _check_out(path: Path, overwrite: bool) -> None:
    from ..io import check_output

    check_output(path, overwrite, directory=False)


@app.command("score")
@handle_errors
def score_cmd(
    dataset: str = typer.Option("digits", help="zoo data set whose training split is scored"),
    method: str = typer.Option("el2n", help="random | el2n | grand | forgetting | aum | entropy | ..."),
    model: str = typer.Option("lenet5", help="zoo model trained to compute the score"),
    seeds: Optional[int] = typer.Option(None, help="runs to average (default: the method's: 10 for el2n/grand, "
                                                   "1 otherwise)"),
    seed: int = typer.Option(0, help="first seed; runs use seed, seed+1, ..."),
    epochs: Optional[int] = typer.Option(None, help="epochs trained before scoring (default: the method's)"),
    option: list[str] = typer.Option([], "--option", "-o", help="extra scorer option KEY=VALUE (repeatable)"),
    out_path: Path = typer.Option(..., "--out", help="scores file to write (JSON)"),
    overwrite: bool = typer.Option(False, help="replace an existing --out file"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON document on stdout, nothing else"),
) -> None:
    """Score every training example of a data set (one difficulty score each, aligned with its order)."""
    import numpy as np

    from .. import data as D
    from ..registry import accepted_options, get

    _check_out(out_path, overwrite)
    params = accepted_options(get("scorer", method), "scorer")
    opts = parse_options(option)
    # the common flags go to the scorers that take them (random takes only a seed)
    given = {"model": model, "seeds": seeds, "seed": seed, "epochs": epochs, "progress": not as_json}
    for key, value in given.items():
        if key in params and value is not None and key not in opts:
            opts[key] = value
    scores = D.score(method, dataset, **opts)
    labels = D.labels_of(dataset)
    scores.meta["dataset"] = dataset
    scores.save(out_path, labels)
    arr = np.asarray(scores)
    summary = {"method": method, "dataset": dataset, "n": int(len(scores)), "harder": scores.harder,
               "out": str(out_path), "min": float(arr.min()), "mean": float(arr.mean()), "max": float(arr.max()),
               "meta": scores.meta}
    if as_json:
        emit_json(summary)
        return
    err.print(f"{method} scores of {len(scores)} {dataset} training examples ({scores.harder} = harder): "
              f"min {summary['min']:.4g}, mean {summary['mean']:.4g}, max {summary['max']:.4g}", highlight=False)
    typer.echo(str(out_path))


@app.command("select")
@handle_errors
def select_cmd(
    scores_path: Path = typer.Option(..., "--scores", help="scores file written by `secateurs data score`"),
    rate: float = typer.Option(0.9, "--sparsity", "--rate", help="fraction of the examples pruned, in [0, 1) "
                                                                 "(--rate: its older name)"),
    strategy: str = typer.Option("ccs", help="hard | easy | random | ccs"),
    seed: int = typer.Option(0),
    class_balanced: bool = typer.Option(False, help="per-class quotas proportional to class sizes"),
    allow_empty_classes: bool = typer.Option(False, help="do not force one example of every class"),
    beta: Optional[float] = typer.Option(None, help="ccs: hard-cutoff rate (default: by rate, 0.3 at 90%)"),
    strata: Optional[int] = typer.Option(None, help="ccs: number of equal-width score strata (default 50)"),
    cutoff_scores: Optional[Path] = typer.Option(None, help="ccs: scores file that decides the hard cutoff "
                                                            "(e.g. AUM, as the CCS code does)"),
    out_path: Path = typer.Option(..., "--out", help="keep file to write (JSON)"),
    overwrite: bool = typer.Option(False, help="replace an existing --out file"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON document on stdout, nothing else"),
) -> None:
    """Choose the examples to keep at a pruning rate from a scores file."""
    import warnings

    import numpy as np

    from .. import data as D

    _check_out(out_path, overwrite)
    scores, labels = D.load_scores(scores_path)
    opts: dict[str, Any] = {}
    if beta is not None:
        opts["beta"] = beta
    if strata is not None:
        opts["strata"] = strata
    if cutoff_scores is not None:
        cut, _ = D.load_scores(cutoff_scores)
        opts["cutoff_scores"] = cut
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept = D.select(scores, sparsity=rate, method=strategy, labels=labels, seed=seed, class_balanced=class_balanced,
                        keep_every_class=not allow_empty_classes, **opts)
    notes = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    for note in notes:
        err.print(f"[yellow]warning:[/] {note}", highlight=False)
    info = {"rate": rate, "strategy": strategy, "seed": seed, "class_balanced": class_balanced,
            "scores": str(scores_path), "method": scores.meta.get("method"), "dataset": scores.meta.get("dataset"),
            **{k: v for k, v in opts.items() if k != "cutoff_scores"}}
    if cutoff_scores is not None:
        info["cutoff_scores"] = str(cutoff_scores)
    D.save_keep(out_path, kept, len(scores), **info)
    doc = {**info, "n": int(len(scores)), "kept": int(len(kept)), "out": str(out_path), "warnings": notes}
    if labels is not None:
        classes, counts = np.unique(labels[kept], return_counts=True)
        doc["per_class"] = {int(c): int(k) for c, k in zip(classes, counts)}
    if as_json:
        emit_json(doc)
        return
    err.print(f"{strategy}: kept {len(kept)} of {len(scores)} examples (pruned {1 - len(kept) / len(scores):.1%})",
              highlight=False)
    typer.echo(str(out_path))


@app.command("train")
@handle_errors
def train_cmd(
    dataset: str = typer.Option("digits", help="zoo data set (training split subset, full test split)"),
    keep_path: Optional[Path] = typer.Option(None, "--keep", help="keep file from `secateurs data select` "
                                                                  "(default: the full training set)"),
    model: str = typer.Option("lenet5", help="zoo model trained from scratch on the subset"),
    epochs: Optional[int] = typer.Option(None, help="epochs (default: as many as give the full-data recipe's "
                                                    "number of optimizer steps)"),
    seed: int = typer.Option(0),
    lr: Optional[float] = typer.Option(None, help="learning rate (default: the model's recipe)"),
    distill: bool = typer.Option(False, help="distill from a teacher trained on the full data (Hinton et al.)"),
    teacher: Optional[str] = typer.Option(None, help="zoo teacher model (default: --model), cached"),
    soft_weight: float = typer.Option(0.5, help="weight of the distillation term, in [0, 1]"),
    temperature: float = typer.Option(1.0, help="distillation temperature"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON document on stdout, nothing else"),
) -> None:
    """Train a model on the kept examples and report its test accuracy."""
    from .. import data as D
    from ..zoo import load_dataset

    keep = None
    info: dict[str, Any] = {}
    if keep_path is not None:
        keep, n, info = D.load_keep(keep_path)
        n_train = len(load_dataset(dataset).train)
        if n != n_train:
            raise InvalidArgumentError(f"{keep_path} was selected from {n} examples but {dataset}'s training split "
                                       f"has {n_train}: scores and keep file must come from the same data set")
    result = D.train_subset(dataset, keep, model=model, epochs=epochs, seed=seed, lr=lr, distill=distill,
                            teacher=teacher, soft_weight=soft_weight, temperature=temperature, progress=not as_json)
    doc = {"dataset": dataset, "keep": str(keep_path) if keep_path else None,
           **{k: info[k] for k in ("rate", "strategy", "method") if k in info}, **result}
    if as_json:
        emit_json(doc)
        return
    t = Table(title=f"{model} on {doc['kept']} of {doc['n_train']} {dataset} training examples"
                    + (" (distilled)" if distill else ""))
    for c in ("kept", "epochs", "steps", "test accuracy", "test loss", "seconds"):
        t.add_column(c, justify="right")
    t.add_row(f"{doc['fraction_kept']:.1%}", str(doc["epochs"]), str(doc["steps"]), f"{doc['accuracy']:.4f}",
              f"{doc['loss']:.4f}", f"{doc['train_seconds']:.1f}")
    out.print(t)
    if distill:
        out.print(f"teacher {doc['teacher']} (full data): test accuracy {doc['teacher_accuracy']:.4f}")


@app.command("methods")
@handle_errors
def methods_cmd(as_json: bool = typer.Option(False, "--json", help="print a JSON document on stdout")) -> None:
    """List the registered scorers and selectors."""
    methods_table({"scorers": "scorer", "selectors": "selector"}, as_json)
