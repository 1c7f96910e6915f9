"""Workload 13: start-up — ``forkjoin --version``, ``--help`` and ``forkjoin map`` on one
line, beside the interpreter alone and GNU parallel.

Each child starts the command n times in a row; the figure is the median of those starts
(wall time; CPU time of the process beside it).
"""

from __future__ import annotations

import statistics
import sys
from functools import partial
from typing import Any

from . import _shell
from ._base import Contender, Result, Workload


def _argv(which: str) -> tuple[list[str], str | None]:
    if which == "python":
        return [sys.executable, "-c", "pass"], None
    if which == "version":
        return _shell.forkjoin_argv("--version"), None
    if which == "help":
        return _shell.forkjoin_argv("--help"), None
    if which == "map":
        return _shell.forkjoin_argv("map", "--quiet", "--", "true"), "x\n"
    if which == "parallel --version":
        return ["parallel", "--will-cite", "--version"], None
    return ["parallel", "--will-cite", "true"], "x\n"  # parallel, one line


def run(which: str, n: int, params: dict[str, Any]) -> Result:
    if which.startswith("parallel"):
        _shell.skip_unless("parallel")
    else:
        _shell.compile_forkjoin()
    argv, stdin = _argv(which)
    walls, cpus = [], []
    for _ in range(n):
        r = _shell.run_tool(argv, stdin)
        _shell.ok_or_raise(r, which)
        walls.append(r["seconds"])
        cpus.append(r["cpu"])
    return {"seconds": statistics.median(walls), "cpu": statistics.median(cpus)}


def _c(key: str, label: str, fj: bool = False) -> Contender:
    available = partial(_shell.need, "parallel") if key.startswith("parallel") else None
    return Contender(key, label, "sync", partial(run, key), is_forkjoin=fj, available=available)


WORKLOAD = Workload(
    id=13,
    title="start-up",
    description="one start of the command, the median of n starts in a row",
    contenders=(
        _c("python", "`python -c pass` (the interpreter alone; floor)"),
        _c("version", "`forkjoin --version`", fj=True),
        _c("help", "`forkjoin --help`", fj=True),
        _c("map", "`forkjoin map -- true` on one line", fj=True),
        _c("parallel --version", "GNU `parallel --version`"),
        _c("parallel", "GNU `parallel true` on one line"),
    ),
    sizes={"quick": (3,), "full": (15,)},
    baseline="python",
    unit="s",
    repeats={"quick": 1, "full": 3},
    note=(
        "Figures are per start (the median of n starts), not per n. forkjoin is byte-compiled "
        "first, as an installed package is."
    ),
)
