"""``forkjoin journal show`` and ``forkjoin journal export``: what a journal file holds.

Both only read the file (a journal that is not one, or is corrupt, exits 2 with one line).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

import forkjoin as fj

from ._app import EXIT_OK, app, fail

__all__ = ["journal_app"]

journal_app = typer.Typer(
    name="journal",
    help="Show or export what a journal (--journal FILE) holds.",
    no_args_is_help=True,
)
app.add_typer(journal_app)

JournalFile = Annotated[Path, typer.Argument(metavar="JOURNAL.db", help="a journal file")]


def _when(t: float | None) -> str:
    if not t:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


@journal_app.command("show")
def show(journal: JournalFile) -> None:
    """A table of the journal's runs: counts by status, cost, last errors."""
    try:
        runs = fj.Journal(journal).runs()
    except fj.JournalError as e:
        raise fail(str(e)) from None
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"journal {journal}", title_justify="left")
    for column in ("run", "tasks", "by status", "cost", "sessions", "updated", "last errors"):
        table.add_column(column, overflow="fold")
    for r in runs:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(r["counts"].items())) or "-"
        errors = "\n".join(f"{k}: {e}" for k, e in r["last_errors"]) or "-"
        name = r["run"] + (f" (running: pid {r['holder_pid']})" if r["holder_pid"] else "")
        table.add_row(
            name,
            str(r["tasks"]),
            counts,
            f"${r['spent_usd']:.4f}" if r["spent_usd"] else "-",
            str(r["sessions"]),
            _when(r["updated"]),
            errors,
        )
    console = Console(file=sys.stdout, width=120, highlight=False)
    console.print(table)
    if not runs:
        console.print("(no runs)")
    raise typer.Exit(EXIT_OK)


@journal_app.command("export")
def export(
    journal: JournalFile,
    run: Annotated[str | None, typer.Option("--run", help="only this run")] = None,
) -> None:
    """Every recorded outcome as JSON Lines (run, key, status, value, error, cost ...)."""
    try:
        j = fj.Journal(journal)
        if run is not None and run not in {r["run"] for r in j.runs()}:
            raise fail(f"{journal}: no run named {run!r} (see `forkjoin journal show`)")
        out = sys.stdout
        for row in j.outcomes(run):
            out.write(json.dumps(row, default=_unjsonable) + "\n")
        out.flush()
    except fj.JournalError as e:
        raise fail(str(e)) from None
    except BrokenPipeError:
        pass
    raise typer.Exit(EXIT_OK)


def _unjsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    return repr(value)
