"""``secateurs report``: one self-contained HTML page of a runs directory."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import emit_json, err, handle_errors


@handle_errors
def report_cmd(
    runs_dir: Path = typer.Argument(..., help="runs directory written by `secateurs run` / `secateurs sweep`"),
    out_file: Path = typer.Option(Path("report.html"), "--out", help="the HTML file to write"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --out"),
    title: Optional[str] = typer.Option(None, help="page title"),
    as_json: bool = typer.Option(False, "--json", help="print {path, runs} as JSON on stdout"),
) -> None:
    """Write one self-contained HTML report of a runs directory.

    Accuracy/perplexity vs sparsity per method (seed spread, controls as reference lines), layer-wise sparsity,
    latency vs MACs/parameters (structured), data-pruning curves, a table behind every plot; plots embedded, no
    network needed to view it."""
    from ..recipes.report import load_rows, write_report

    path = write_report(runs_dir, out_file, overwrite=overwrite, title=title)
    if as_json:
        emit_json({"path": str(path), "runs": len(load_rows(runs_dir))})
    else:
        err.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
