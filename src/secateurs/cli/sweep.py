"""``secateurs sweep``: a grid of recipes (and the built-in controls) on Ray or in a loop, resumable."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import emit_json, err, handle_errors, out


@handle_errors
def sweep_cmd(
    recipe: Optional[Path] = typer.Argument(None, help="base recipe YAML file (omitted: the defaults)"),
    grid: list[str] = typer.Option([], "--grid", help="FIELD=V1,V2,... (repeatable; dotted for nested fields)"),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="seeds per cell: the recipe's seed, +1, ..."),
    controls: bool = typer.Option(False, "--controls", help="add the built-in controls: dense, scratch "
                                  "(re-init, same budget), random mask at the same layer densities, global "
                                  "magnitude with min-keep"),
    control: list[str] = typer.Option([], "--control", help="only these controls (repeatable; implies --controls)"),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="runs directory (finished cells are not redone)"),
    backend: str = typer.Option("ray", help="ray (embedded local Ray, or --address) | local (a plain loop)"),
    address: Optional[str] = typer.Option(None, "--address", help="address of an existing Ray cluster"),
    num_cpus: int = typer.Option(2, "--num-cpus", help="CPUs of the embedded local Ray (one cell per CPU)"),
    set_: list[str] = typer.Option([], "--set", help="FIELD=VALUE change to the base recipe (repeatable)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list the cells (validated), run nothing"),
    as_json: bool = typer.Option(False, "--json", help="print the sweep's rows as JSON on stdout"),
) -> None:
    """Run every combination of the --grid values x --seeds of a recipe (progress on stderr); a killed sweep
    started again re-runs only the unfinished cells.  ``secateurs sweep r.yaml --grid method=magnitude,snip,random
    --grid sparsity=0.5,0.9 --seeds 3 --controls``."""
    from ..recipes.recipe import CONTROLS
    from ..recipes.sweep import cells, parse_grid, sweep
    from .run import recipe_from

    base = recipe_from(recipe, [], set_)
    g = parse_grid(grid)
    wanted = tuple(control) if control else (CONTROLS if controls else ())
    if dry_run:
        todo = cells(base, g, seeds, wanted)
        emit_json([{"key": r.key(), "label": r.label(), "recipe": r.resolved()} for r in todo]) if as_json else \
            [out.print(f"{r.key()}  {r.label()}") for r in todo]
        return
    res = sweep(base, g, runs_dir, seeds=seeds, controls=wanted, backend=backend, address=address,
                num_cpus=num_cpus, log=err.file)
    if as_json:
        emit_json(res.to_dict())
    if res.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep_cmd)
