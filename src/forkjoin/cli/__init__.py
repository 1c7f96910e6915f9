"""The ``forkjoin`` command line: ``run`` a TOML spec of named tasks, ``map`` a command,
request or function over lines of input, re-render a saved ``report``, show or export a
``journal``.

Every command is a thin layer over the library: parse, call forkjoin, render. A command
imports only what it needs: ``forkjoin --version``, ``--help`` and ``forkjoin map`` start
without typer, rich, pydantic or httpx (``map`` parses with argparse, in ``_mapcmd``);
``run`` and ``report`` are a typer app (``_app``). A new command is a line in
:data:`COMMANDS` and its function in the module named there.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

from .._version import __version__
from ._usage import EXIT_OK, EXIT_USAGE, say

__all__ = ["COMMANDS", "app", "bare_dask", "main"]

# name -> (the module that runs it, what `forkjoin --help` says of it), in help order.
# "_app" commands are typer commands of forkjoin.cli._app.app; "_mapcmd" is argparse.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("_app", "Run the named tasks of a TOML spec; print keyed JSON results and a report."),
    "map": ("_mapcmd", "Run a command, request or function per input line; JSON Lines out."),
    "report": ("_app", "Re-render a report saved with `forkjoin run --report-json`."),
    "journal": ("_journalcmd", "Show or export what a journal (--journal FILE) holds."),
}

HELP = """\
usage: forkjoin [-h] [--version] COMMAND [ARGS]...

Run many independent tasks at once under policies; get keyed results and a report.

commands:
{commands}

options:
  -h, --help  show this help and exit
  --version   show forkjoin's version and exit

`forkjoin COMMAND -h` shows a command's options. Exit codes: 0 all ok, 1 some tasks not
ok, 2 a bad spec, usage or journal, 130 interrupted, 143 terminated, 129 hung up.
"""


def help_text() -> str:
    """What ``forkjoin --help`` prints."""
    width = max(len(name) for name in COMMANDS)
    lines = [f"  {name.ljust(width)}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return HELP.format(commands="\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``forkjoin`` command (exit codes: 0 ok, 1 not all ok, 2 usage or
    journal, 130 interrupted, 143 terminated, 129 hung up)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(help_text())
        raise SystemExit(EXIT_OK if args else EXIT_USAGE)
    first = args[0]
    if first in ("-V", "--version"):
        sys.stdout.write(f"forkjoin {__version__}\n")
        raise SystemExit(EXIT_OK)
    where = COMMANDS.get(first)
    if where is None:
        what = "option" if first.startswith("-") else "command"
        say(f"unknown {what} {first!r} (commands: {', '.join(COMMANDS)}; see forkjoin --help)")
        raise SystemExit(EXIT_USAGE)
    if where[0] == "_mapcmd":
        if argv is None:
            # no collection while the modules load: what they make lives until the process
            # ends (the map's start-up freezes it, then collects as usual)
            gc.disable()
            if not _may_use_tls(args[1:]):
                # a map of commands: its watchdog starts beside the imports, not in the
                # way of its first command
                from . import _guard

                _guard.start_now()
                _asyncio_without_tls()
        from ._mapcmd import main as map_main

        raise SystemExit(map_main(args[1:], program=argv is None))
    typer_app = _typer_app()
    typer_app(args=bare_dask(args), prog_name="forkjoin")


def _may_use_tls(argv: list[str]) -> bool:
    """Whether ``forkjoin map ARGV`` can make a TLS connection: ``--http``, or Python code
    of the user's (``--call``). A command per line cannot (it is another process)."""
    for arg in argv:
        if arg == "--":
            return False
        if arg.split("=", 1)[0] in ("--http", "--call"):
            return True
    return False


def _asyncio_without_tls() -> None:
    """Import asyncio without the ssl module, for a program that makes no TLS connection:
    loading ssl (OpenSSL's libraries) is 10-20 ms of a one-line ``forkjoin map`` (bench
    workload 13). A ``None`` in ``sys.modules`` makes ``import ssl`` fail, which asyncio
    takes as a Python without TLS; ssl itself is importable again afterwards."""
    if "asyncio" in sys.modules or "ssl" in sys.modules:
        return
    sys.modules["ssl"] = None  # type: ignore[assignment]
    try:
        import asyncio  # noqa: F401
    finally:
        del sys.modules["ssl"]


def bare_dask(argv: list[str]) -> list[str]:
    """``--dask`` alone means a local cluster: the parser wants a value, so a ``--dask``
    not followed by a scheduler's address becomes ``--dask=local``."""
    from ._usage import looks_like_address

    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--":
            break
        if arg == "--dask" and (i + 1 == len(out) or not looks_like_address(out[i + 1])):
            out[i] = "--dask=local"
    return out


def _typer_app() -> Any:
    """The typer app with every typer command registered on it."""
    from . import _journalcmd  # noqa: F401 - registers `forkjoin journal` on the app
    from ._app import app

    return app


def __getattr__(name: str) -> Any:
    # the typer app is built on first use, so that importing forkjoin.cli stays light
    if name == "app":
        return _typer_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
