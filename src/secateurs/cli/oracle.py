"""``secateurs oracle``: the oracle study of Feng et al. (2024), "Is Oracle Pruning the True Oracle?"."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import emit_json, err, handle_errors, out


def _floats(text: str) -> list[float]:
    from ..errors import InvalidArgumentError

    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InvalidArgumentError(f"--sparsities must be comma-separated numbers in (0, 1), got {text!r}") from None


@handle_errors
def oracle_cmd(
    model: str = typer.Option("lenet5", "--model", help="zoo model (trained dense, cached)"),
    dataset: str = typer.Option("digits", "--dataset", help="zoo data set"),
    sparsities: str = typer.Option("0.3,0.5,0.7", "--sparsities", help="comma-separated sparsities of the pruned "
                                   "models"),
    criterion: list[str] = typer.Option([], "--criterion", help="importance/criterion (repeatable; default: every "
                                        "structured importance + magnitude, snip, taylor)"),
    n_random: int = typer.Option(8, "--n-random", help="random structures per sparsity"),
    finetune_epochs: int = typer.Option(2, "--finetune-epochs", help="fine-tuning budget of every pruned model"),
    finetune_lr: float = typer.Option(0.01, "--finetune-lr", help="fine-tuning learning rate"),
    n_per_class: int = typer.Option(20, "--n-per-class", help="training examples per class the oracle is measured on"),
    seed: int = typer.Option(0, "--seed"),
    pretrain_epochs: Optional[int] = typer.Option(None, "--pretrain-epochs", help="dense training epochs (default: "
                                                  "the zoo recipe's)"),
    out_file: Optional[Path] = typer.Option(None, "--out", help="also write the JSON here (atomically)"),
    as_json: bool = typer.Option(False, "--json", help="print the whole result as JSON on stdout"),
) -> None:
    """The true loss change of removing each channel/neuron (the oracle), every criterion's rank correlation with
    it, and whether the loss right after pruning predicts accuracy after fine-tuning (Kendall tau, Spearman rho)."""
    from ..recipes.oracle import DEFAULT_CRITERIA, oracle_study

    doc = oracle_study(model, dataset, sparsities=_floats(sparsities), criteria=criterion or DEFAULT_CRITERIA,
                       n_random=n_random, finetune_epochs=finetune_epochs, finetune_lr=finetune_lr,
                       n_per_class=n_per_class, seed=seed, pretrain_epochs=pretrain_epochs, out=out_file,
                       progress=not as_json)
    if as_json:
        emit_json(doc)
        return
    out.print(f"oracle over {doc['oracle_summary']['units']} units of {model} on {dataset}")
    for c in doc["criteria"]:
        p = c["pooled"]
        out.print(f"  {c['criterion']:<14} vs oracle: spearman {p['spearman']:+.3f}  kendall {p['kendall']:+.3f}")
    for s, c in doc["correlations"]["per_sparsity"].items():
        k = c["pruned_train_loss_vs_finetuned_accuracy"]
        out.print(f"  sparsity {s}: pruned train loss vs fine-tuned accuracy, kendall {k['kendall']:+.3f} "
                  f"over {c['n_models']} models")
    if out_file is not None:
        err.print(f"wrote {out_file}")


def register(app: typer.Typer) -> None:
    app.command("oracle")(oracle_cmd)
