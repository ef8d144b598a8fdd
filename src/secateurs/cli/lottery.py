"""``secateurs lottery``: iterative magnitude pruning with rewinding, the ticket against its two controls."""
from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from ..schedules.lottery import REWIND_MODES, run_lottery
from .common import emit_json, handle_errors, out


def _acc(x: float | None) -> str:
    return "—" if x is None else f"{x:.4f}"


@handle_errors
def lottery_cmd(
    model: str = typer.Option("lenet300", help="zoo model name"),
    dataset: str = typer.Option("digits", help="zoo data set"),
    rounds: int = typer.Option(10, help="levels of pruning after the dense run (level 0)"),
    prune_rate: float = typer.Option(0.2, help="fraction of the remaining weights pruned per level, in (0, 1)"),
    output_rate: Optional[float] = typer.Option(None, help="layer-wise only: rate of the output layer (paper's "
                                                           "LeNet: 0.1; 0 keeps it dense)"),
    allocation: str = typer.Option("uniform", help="uniform: each layer prunes its rate (layer-wise); global: one "
                                                   "magnitude threshold over all layers"),
    ignore: list[str] = typer.Option([], help="module-name glob never pruned (repeatable)"),
    rewind: str = typer.Option("weights", help=f"{' | '.join(REWIND_MODES)}: rewind the surviving weights to "
                                               "--rewind-step, or keep them and rewind only the learning rate"),
    rewind_step: int = typer.Option(0, help="optimizer step rewound to; later levels train from it (0 = init)"),
    epochs: Optional[int] = typer.Option(None, help="epochs per training run (default: the model's recipe)"),
    controls: bool = typer.Option(True, help="also train the re-initialised and random-mask controls"),
    seed: int = typer.Option(0),
    as_json: bool = typer.Option(False, "--json", help="print a JSON document on stdout, nothing else"),
) -> None:
    """Find lottery tickets: train, prune by magnitude, rewind, repeat; compare with random re-init and random masks."""
    import torch

    torch.set_num_threads(1)  # the zoo models are tiny: one thread is as fast and reproducible across machines
    result = run_lottery(model, dataset, rounds=rounds, prune_rate=prune_rate, rewind_step=rewind_step,
                         rewind=rewind, epochs=epochs, seed=seed, allocation=allocation, output_rate=output_rate,
                         ignore=list(ignore) or None, controls=controls, progress=not as_json)
    doc = result.to_dict()
    if as_json:
        emit_json(doc)
        return
    s = result.settings
    where = "initialisation" if s["rewind"] == "weights" and s["rewind_step"] == 0 else \
        f"step {s['rewind_step']} ({'weights' if s['rewind'] == 'weights' else 'learning rate only'})"
    t = Table(title=f"lottery tickets: {s['model']} on {s['dataset']}, {s['allocation']} pruning "
                    f"{s['prune_rate']:.0%}/level, rewound to {where}, {s['epochs']} epochs/run, seed {s['seed']}")
    for c in ("round", "density", "ticket", "random re-init", "random mask"):
        t.add_column(c, justify="right")
    for r in result.rounds:
        t.add_row(str(r.round), f"{r.density:.4f}", _acc(r.ticket_accuracy), _acc(r.reinit_accuracy),
                  _acc(r.random_mask_accuracy))
    out.print(t)


def register(app: typer.Typer) -> None:
    app.command("lottery")(lottery_cmd)
