"""What every command shares: JSON output, error reporting, progress on stderr."""
from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable

import typer
from rich.console import Console

from ..errors import PruningError

err = Console(stderr=True)
out = Console()


def emit_json(doc: Any) -> None:
    """The command's only stdout output under --json."""
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


def handle_errors(fn: Callable) -> Callable:
    """Turn secateurs errors into a one-line message on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*a, **k):
        try:
            return fn(*a, **k)
        except PruningError as e:
            err.print(f"[bold red]error:[/] {e}", highlight=False)
            raise typer.Exit(2)

    return wrapper
