"""Recipes, sweeps, built-in controls and the HTML report: the benchmark harness of secateurs.

``Recipe`` (:mod:`.recipe`) describes one run of any family; :func:`run_recipe` (:mod:`.run`) runs it into a
runs directory (:mod:`.store`: one folder per run, keyed by the recipe's hash and the library version);
:func:`.sweep.sweep` runs a grid of them on Ray or in a loop, with the controls of :mod:`.controls`;
:func:`write_report` (:mod:`.report`) turns a runs directory into one self-contained HTML file;
:func:`oracle_study` (:mod:`.oracle`) is the experiment of "Is Oracle Pruning the True Oracle?".
"""
from __future__ import annotations

from typing import Any

from .recipe import CONTROLS, FAMILIES, Recipe, RecipeError
from .store import RunsDirError

__all__ = ["Recipe", "RecipeError", "RunsDirError", "FAMILIES", "CONTROLS", "run_recipe", "write_report",
           "IncompatibleRunsError", "oracle_study"]  # the sweep: secateurs.recipes.sweep.sweep (module and function share the name)


def __getattr__(name: str) -> Any:  # the runner, sweep and report import torch / matplotlib: only when used
    if name == "run_recipe":
        from .run import run_recipe
        return run_recipe
    if name == "oracle_study":
        from .oracle import oracle_study
        return oracle_study
    if name in ("write_report", "IncompatibleRunsError"):
        from . import report
        return getattr(report, name)
    raise AttributeError(f"module 'secateurs.recipes' has no attribute {name!r}")
