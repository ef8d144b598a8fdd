"""A sweep: the Cartesian product of a recipe's ``--grid`` values and seeds (plus the built-in controls), run on
Ray or in a plain loop, resumable.

Every cell is a :class:`~secateurs.recipes.Recipe`, validated before any cell runs (a grid over a field that does
not exist, or a value a field does not allow, fails first and writes nothing).  Each cell's run folder is keyed by
the recipe's hash and published atomically, so a sweep that is killed and started again re-runs only the cells
that had not finished, and nothing finished is lost or corrupted.

Backends: ``ray`` (default): an embedded local Ray (``ray.init(num_cpus=...)``) or an existing cluster
(``address``); tasks go to long-lived worker processes, which import torch once and keep the dense zoo models
they loaded (:func:`secateurs.recipes.run._dense` is cached per process), so a cell costs its own work, not a
fresh interpreter.  ``local``: the same cells in a plain loop in this process.
"""
from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from ..errors import InvalidArgumentError, PruningError
from ..schedules.callbacks import MissingExtraError  # the one 'extra not installed' error
from .recipe import CONTROLS, Recipe, RecipeError, check_path, controls_for
from .store import finished, open_runs_dir

BACKENDS = ("ray", "local")


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``["method=magnitude,snip", "sparsity=0.5,0.9"]`` -> ``{"method": [...], "sparsity": [0.5, 0.9]}``; each
    value is read as a YAML scalar (numbers, true/false, null), the field path is checked (did-you-mean)."""
    import yaml

    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise RecipeError(key, f"--grid expects FIELD=V1,V2,..., got {item!r}")
        check_path(key)
        if key in grid:
            raise RecipeError(key, "is given to --grid twice; list all its values once")
        grid[key] = [_scalar(yaml, v.strip()) for v in values.split(",")]
    return grid


def _scalar(yaml: Any, text: str) -> Any:
    try:
        v = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return text if isinstance(v, (dict, list)) else v


def cells(base: Recipe, grid: dict[str, list[Any]], seeds: int | None = None,
          controls: tuple[str, ...] | list[str] = ()) -> list[Recipe]:
    """Every cell of the sweep: each combination of the grid values x seeds (``base.seed`` .. ``+ seeds - 1``),
    then its controls; all validated (RecipeError naming the grid field) before anything runs."""
    for c in controls:
        if c not in CONTROLS:
            raise RecipeError("control", f"unknown control {c!r}; controls: {', '.join(CONTROLS)}")
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise InvalidArgumentError(f"--seeds must be an int >= 1, got {seeds!r}")
    if seeds is not None and "seed" in grid:
        raise RecipeError("seed", "give the seeds either as --grid seed=... or as --seeds, not both")
    for k in grid:
        check_path(k)
    grid = dict(grid)
    if seeds is not None:
        grid["seed"] = [base.seed + i for i in range(seeds)]
    keys = list(grid)
    out: dict[str, Recipe] = {}
    for combo in itertools.product(*(grid[k] for k in keys)):
        changes = dict(zip(keys, combo))
        try:
            r = base.with_changes(changes)
        except RecipeError as e:
            where = ", ".join(f"{k}={v!r}" for k, v in changes.items())
            raise RecipeError(e.path, f"{str(e).split(': ', 1)[-1]} (in the grid cell {where})") from None
        out.setdefault(r.key(), r)
    return with_controls(list(out.values()), tuple(controls))


def with_controls(cells: list[Recipe], controls: tuple[str, ...] | list[str]) -> list[Recipe]:
    """``cells`` followed by the control runs they call for (deduplicated by key: one dense run per model, data
    and seed; one global-magnitude run per sparsity and seed; one scratch / random-mask run per method cell)."""
    out: dict[str, Recipe] = {c.key(): c for c in cells}
    for c in cells:
        if c.control is not None:
            continue
        for name in controls:
            if name not in controls_for(c.family):
                continue
            out.setdefault(_control(c, name).key(), _control(c, name))
    return list(out.values())


def _control(c: Recipe, name: str) -> Recipe:
    d = c.to_dict()
    d["control"] = name
    if name == "dense":  # the method's settings do not matter: one run per model, data, seed
        keep = {"family", "model", "data", "seed", "evaluation", "control"}
        if c.family == "data":
            keep |= {"finetune"}
        d = {k: v for k, v in d.items() if k in keep}
    elif name == "global_magnitude":
        d = {k: v for k, v in d.items() if k in {"family", "model", "data", "sparsity", "pattern", "min_keep", "seed",
                                                 "finetune", "evaluation", "ignore", "dense", "control"}}
    elif name == "random_mask" and c.family == "data":
        d = {k: v for k, v in d.items() if k in {"family", "model", "data", "sparsity", "seed", "finetune",
                                                 "evaluation", "control"}}
    return Recipe(**d)


@dataclass
class SweepResult:
    runs_dir: Path
    rows: list[dict[str, Any]]
    ran: int
    cached: int
    seconds: float
    backend: str
    init_seconds: float = 0.0
    failed: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"runs_dir": str(self.runs_dir), "ran": self.ran, "cached": self.cached, "seconds": self.seconds,
                "backend": self.backend, "init_seconds": self.init_seconds, "failed": self.failed,
                "rows": self.rows}


def sweep(base: Recipe, grid: dict[str, list[Any]], runs_dir: str | Path, *, seeds: int | None = None,
          controls: tuple[str, ...] | list[str] = (), backend: str = "ray", address: str | None = None,
          num_cpus: int | None = 2, log: TextIO | None = sys.stderr,
          on_done: Callable[[Recipe, dict[str, Any]], None] | None = None) -> SweepResult:
    """Run every cell of ``cells(base, grid, seeds, controls)`` into ``runs_dir``; finished cells are read back,
    not recomputed.  Progress (one line per cell) goes to ``log``.  A cell that raises a secateurs error is
    recorded in ``failed`` (the others still run); any other exception stops the sweep."""
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"unknown backend {backend!r}; backends: {', '.join(BACKENDS)}")
    todo = cells(base, grid, seeds, controls)  # every cell validated before the folder is made
    if backend == "ray":
        ray = require_ray()
    store = open_runs_dir(runs_dir, create=True)
    start = time.perf_counter()
    rows: dict[str, dict[str, Any]] = {}
    pending = []
    for r in todo:
        done = finished(store, r.key())
        if done is not None:
            rows[r.key()] = {**done["result"], "cached": True}
        else:
            pending.append(r)
    total, n_done = len(todo), len(rows)
    _log(log, f"sweep: {total} cells, {n_done} finished before, {len(pending)} to run ({backend})")
    failed: list[dict[str, Any]] = []

    def report(r: Recipe, row: dict[str, Any] | None, error: str | None) -> None:
        nonlocal n_done
        n_done += 1
        if row is not None:
            rows[r.key()] = row
            if on_done is not None:
                on_done(r, row)
            _log(log, f"[{n_done}/{total}] {r.label()}: accuracy={_fmt(row.get('accuracy'))} "
                      f"sparsity={_fmt(row.get('sparsity'))} ({row.get('seconds', 0):.1f}s)")
        else:
            failed.append({"recipe": r.to_dict(), "error": error})
            _log(log, f"[{n_done}/{total}] {r.label()}: FAILED: {error}")

    init_seconds = 0.0
    if backend == "local":
        from .run import run_recipe

        for r in pending:
            try:
                report(r, run_recipe(r, store), None)
            except PruningError as e:
                report(r, None, str(e))
    elif pending:
        t0 = time.perf_counter()
        started = _init_ray(ray, address, num_cpus)
        init_seconds = time.perf_counter() - t0
        try:
            task = ray.remote(num_cpus=1, max_retries=0)(_ray_cell)
            futures = {task.remote(r.to_dict(), str(store)): r for r in pending}
            while futures:
                ready, _ = ray.wait(list(futures), num_returns=1)
                for f in ready:
                    r = futures.pop(f)
                    ok, payload = ray.get(f)
                    report(r, payload if ok else None, None if ok else payload)
        finally:
            if started:
                ray.shutdown()
    seconds = time.perf_counter() - start
    ordered = [rows[r.key()] for r in todo if r.key() in rows]
    ran = sum(1 for row in ordered if not row.get("cached"))
    _log(log, f"sweep: done in {seconds:.1f}s ({ran} ran, {len(ordered) - ran} cached, {len(failed)} failed) "
              f"-> {store}")
    return SweepResult(store, ordered, ran, len(ordered) - ran, seconds, backend, init_seconds, failed)


def require_ray() -> Any:
    """The ``ray`` module, or MissingExtraError naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise MissingExtraError("sweeps on Ray need the ray package: pip install 'secateurs[ray]' (or run the "
                                "cells in a plain loop with --backend local)") from None
    return ray


def _init_ray(ray: Any, address: str | None, num_cpus: int | None) -> bool:
    """Start the embedded local Ray (``num_cpus`` workers) or connect to ``address``; True if this call started
    it (and must shut it down)."""
    if ray.is_initialized():
        return False
    import os

    # one torch thread per worker: the cells run side by side on the cores Ray was given
    env = {"env_vars": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "RAY_DEDUP_LOGS": "0"}}
    src = str(Path(__file__).resolve().parents[2])  # so workers import this secateurs, installed or not
    env["env_vars"]["PYTHONPATH"] = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    if address:
        ray.init(address=address, runtime_env=env, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env=env, log_to_driver=False,
                 configure_logging=False)
    return True


def _ray_cell(recipe: dict[str, Any], runs_dir: str) -> tuple[bool, Any]:
    """One cell, on a Ray worker: (True, row) or (False, the secateurs error's message)."""
    import torch

    torch.set_num_threads(1)
    from .run import run_recipe

    try:
        return True, run_recipe(Recipe(**recipe), runs_dir)
    except PruningError as e:
        return False, str(e)


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _log(log: TextIO | None, line: str) -> None:
    if log is not None:
        print(line, file=log, flush=True)
