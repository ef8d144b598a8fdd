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


def parse_options(items: list[str], **aliases: Any) -> dict[str, Any]:
    """Repeatable ``--option KEY=VALUE`` as component options; each value stays text
    (:class:`~secateurs.registry.TextValue`) that the registry coerces to the option's declared type.  ``aliases``
    are the values of dedicated flags (``--percdamp``...; None: not given); giving one twice is an error."""
    from ..errors import InvalidArgumentError
    from ..registry import TextValue

    opts: dict[str, Any] = {k: v for k, v in aliases.items() if v is not None}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise InvalidArgumentError(f"--option expects KEY=VALUE, got {item!r}")
        if key in opts:
            raise InvalidArgumentError(f"option {key!r} is given twice (--option {key}=... and --{key.replace('_', '-')}"
                                       f" or a repeated --option); give it once")
        opts[key] = TextValue(value)
    return opts


def methods_table(kinds: dict[str, str], as_json: bool) -> None:
    """``secateurs methods``: per kind, every registered name with its description and typed options."""
    from rich.markup import escape
    from rich.table import Table

    from .. import registry

    docs = {k: registry.catalog(kind) for k, kind in kinds.items()}
    if as_json:
        emit_json(docs)
        return
    for k, d in docs.items():
        t = Table(title=k)
        t.add_column("name")
        t.add_column("what it does")
        t.add_column("options (type = default)")
        for name, entry in d.items():
            opts = ", ".join(f"{o['name']}: {o['type']}" + ("" if o["required"] else f" = {o['default']!r}")
                             for o in entry["options"])
            t.add_row(escape(name), escape(entry["description"]), escape(opts))
        out.print(t)


def handle_errors(fn: Callable) -> Callable:
    """Turn secateurs errors into a one-line message on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*a, **k):
        try:
            return fn(*a, **k)
        except PruningError as e:
            err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)  # one line, greppable
            raise typer.Exit(2)

    return wrapper
