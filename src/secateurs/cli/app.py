"""Entry point of the ``secateurs`` console script: mounts one typer app per command group."""
from __future__ import annotations

import typer

from . import data, deltas, demo, llm, lottery, structured, train, weights, zoo
from . import oracle as oracle_cli, report as report_cli, run as run_cli, sweep as sweep_cli

app = typer.Typer(no_args_is_help=True, add_completion=False, help="secateurs: prune neural networks and their data.")
weights.register(app)
demo.register(app)
train.register(app)
lottery.register(app)
run_cli.register(app)
sweep_cli.register(app)
report_cli.register(app)
oracle_cli.register(app)
app.add_typer(llm.app, name="llm", help="Post-training pruning and evaluation of Hugging Face language models.")
app.add_typer(structured.app, name="structured", help="Physically remove channels, neurons, heads and blocks.")
app.add_typer(zoo.app, name="zoo", help="Build the models and data sets that ship with secateurs.")
app.add_typer(data.app, name="data", help="Data pruning: score training examples, select a coreset, train on it.")
app.add_typer(deltas.app, name="deltas", help="Delta pruning: sparsify a fine-tuned model's difference from its base "
                                             "(DARE, DAREx-q, magnitude; TIES merging).")


def main() -> None:
    app()
