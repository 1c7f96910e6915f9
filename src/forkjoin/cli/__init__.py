"""The ``forkjoin`` command line: ``run`` a TOML spec of named tasks, ``map`` a command,
request or function over lines of input, re-render a saved ``report``.

Every command is a thin layer over the library: parse, call forkjoin, render.
"""

from __future__ import annotations

import sys

from . import _mapcmd  # noqa: F401 - registers `forkjoin map` on the app
from ._app import app

__all__ = ["app", "bare_dask", "main"]


def main() -> None:
    """Entry point of the ``forkjoin`` command (exit codes: 0 ok, 1 not all ok, 2 usage,
    130 interrupted)."""
    app(args=bare_dask(sys.argv[1:]))


def bare_dask(argv: list[str]) -> list[str]:
    """``--dask`` alone means a local cluster: the parser wants a value, so a ``--dask``
    not followed by a scheduler's address becomes ``--dask=local``."""
    from ._app import looks_like_address

    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--":
            break
        if arg == "--dask" and (i + 1 == len(out) or not looks_like_address(out[i + 1])):
            out[i] = "--dask=local"
    return out
