"""The ``forkjoin`` command line: ``run`` a TOML spec of named tasks, ``map`` a command,
request or function over lines of input, re-render a saved ``report``, show or export a
``journal``.

Every command is a thin layer over the library: parse, call forkjoin, render.
"""

from __future__ import annotations

from . import (
    _journalcmd,  # noqa: F401 - registers `forkjoin journal` on the app
    _mapcmd,  # noqa: F401 - registers `forkjoin map` on the app
)
from ._app import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``forkjoin`` command (exit codes: 0 ok, 1 not all ok, 2 usage or
    journal, 130 interrupted, 143 terminated)."""
    app()
