"""The one progress bar of secateurs: rich, on stderr (stdout stays clean for ``--json``), a no-op when off."""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def progress_bar(enabled: bool, total: int, description: str, transient: bool = False,
                 **fields: float) -> Iterator[Callable[..., None]]:
    """Context manager yielding ``advance(n=1, **fields)``; draws nothing when ``enabled`` is false or stderr is
    closed.  ``fields`` (e.g. ``loss=nan``) are shown after the bar and updated by ``advance(loss=...)``."""
    if not enabled or sys.stderr is None:
        yield lambda n=1, **kw: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns: list[Any] = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    columns += [TextColumn(f"{k} {{task.fields[{k}]:.4f}}") for k in fields]
    with Progress(*columns, console=Console(stderr=True), transient=transient) as bar:
        task = bar.add_task(description, total=total, **fields)
        yield lambda n=1, **kw: bar.update(task, advance=n, **kw)
