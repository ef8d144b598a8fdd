"""``secateurs run``: one recipe, from a YAML file and/or flags named after its fields."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from .common import emit_json, err, handle_errors, out


def recipe_from(path: Optional[Path], flags: list[str], sets: list[str]) -> Any:
    """The recipe of a file (or the defaults) changed by ``--FIELD VALUE`` flags (dotted paths for nested
    fields: ``--finetune.epochs 1``; ``--options.percdamp 0.05``) and ``--set FIELD=VALUE``; values are read as
    YAML scalars, every field path is checked with a did-you-mean."""
    from ..recipes import Recipe, RecipeError
    from ..recipes.sweep import parse_grid

    base = Recipe.from_yaml(path) if path is not None else Recipe()
    items = list(sets)
    i = 0
    while i < len(flags):
        arg = flags[i]
        if not arg.startswith("--"):
            raise RecipeError("", f"unexpected argument {arg!r}; recipe fields are given as --FIELD VALUE")
        key, sep, value = arg[2:].partition("=")
        if not sep:
            if i + 1 >= len(flags):
                raise RecipeError(key, f"--{key} needs a value")
            value, i = flags[i + 1], i + 1
        items.append(f"{key.replace('-', '_')}={value}")
        i += 1
    changes = {}
    for item in items:  # one value each: the grid parser reads it (field check, YAML scalars)
        key, _, value = item.partition("=")
        vals = parse_grid([f"{key}={value}"]) if "," not in value else {key.strip(): [_list(value)]}
        changes.update({k: v[0] for k, v in vals.items()})
    return base.with_changes(changes) if changes else base


def _list(value: str) -> Any:
    import yaml

    return [yaml.safe_load(v) for v in value.split(",")]


@handle_errors
def run_cmd(
    ctx: typer.Context,
    recipe: Optional[Path] = typer.Argument(None, help="recipe YAML file (omitted: the defaults)"),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="runs directory (a finished run is not redone)"),
    set_: list[str] = typer.Option([], "--set", help="FIELD=VALUE (dotted for nested fields; repeatable)"),
    show: bool = typer.Option(False, "--show", help="print the resolved recipe and its key, run nothing"),
    as_json: bool = typer.Option(False, "--json", help="print the result row as JSON on stdout"),
) -> None:
    """Run one recipe: ``secateurs run recipe.yaml --method snip --sparsity 0.9 --finetune.epochs 1``.

    Every recipe field is a flag (``--family``, ``--model``, ``--data``, ``--method``, ``--sparsity``,
    ``--allocation``, ``--pattern``, ``--schedule``, ``--finetune.epochs``, ``--options.NAME``, ``--seed``,
    ``--control``...); ``--show`` prints the resolved recipe.  The result is ``RUNS_DIR/<key>/run.json``."""
    from ..recipes.run import run_recipe

    flags = list(ctx.args)
    if recipe is not None and str(recipe).startswith("--"):  # no file: the first flag landed in RECIPE
        flags, recipe = [str(recipe)] + flags, None
    r = recipe_from(recipe, flags, set_)
    if show:
        emit_json({"key": r.key(), "recipe": r.resolved()})
        return
    row = run_recipe(r, runs_dir, progress=not as_json)
    if as_json:
        emit_json(row)
        return
    what = "read back (finished before)" if row.get("cached") else f"{row.get('seconds', 0):.1f}s"
    out.print(f"{r.label()}: accuracy={row.get('accuracy')} sparsity={row.get('sparsity')}")
    err.print(f"{runs_dir}/{row['key']}: {what}")


def register(app: typer.Typer) -> None:
    app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(run_cmd)
