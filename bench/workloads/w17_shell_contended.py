"""Workload 17: workload 10's ``echo {}`` at N = 8 on a busy machine: two processes of
this workload spin on the CPU (one per core of the reference machine) while each
contender runs, and are ended by pid after it.

``forkjoin map`` starts a command with ``posix_spawn`` (a vfork), which holds the caller
until the child has been scheduled and has exec'd; on an idle machine that is about
70 µs, but behind busy processes the new child waits for its turn on a core, and the
caller with it (about 5 ms per command here), while ``xargs`` forks and goes on at once.
This workload shows that cost beside ``xargs``.
"""

from __future__ import annotations

import subprocess
import sys
from functools import partial
from typing import Any

from . import _shell
from ._base import Contender, Result, Workload
from .w10_shell import _lines

JOBS = 8
BUSY = 2  # processes spinning beside the contender
_SPIN = "while True: pass"


def run(tool: str, n: int, params: dict[str, Any]) -> Result:
    lines, text = _lines(n)
    if tool == "xargs":
        _shell.skip_unless("xargs")
        cmd = ["xargs", "-P", str(JOBS), "-I{}", "echo", "{}"]
    else:
        _shell.compile_forkjoin()
        cmd = _shell.forkjoin_argv("map", "-j", str(JOBS), "--quiet", "--", "echo", "{}")
    spinners = [subprocess.Popen([sys.executable, "-c", _SPIN]) for _ in range(BUSY)]
    try:
        r = _shell.run_tool(cmd, text)
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    _shell.ok_or_raise(r, tool)
    if tool == "fj.map":
        _shell.check_jsonl(r["stdout"], n, "forkjoin map")
    else:
        _shell.check_lines(r["stdout"], lines, tool)
    return {"seconds": r["seconds"], "cpu": r["cpu"]}


WORKLOAD = Workload(
    id=17,
    title="shell on a busy machine",
    description=f"n lines of `echo {{}}`, {JOBS} at once, while {BUSY} other processes spin "
    "on the CPU (started and ended by the workload), against `xargs` in the same conditions",
    contenders=(
        Contender(
            "xargs",
            f"`xargs -P {JOBS}`, `echo {{}}`, {BUSY} busy processes beside it",
            "sync",
            partial(run, "xargs"),
            available=partial(_shell.need, "xargs"),
        ),
        Contender(
            "fj.map",
            f"`forkjoin map -j {JOBS}`, `echo {{}}`, {BUSY} busy processes beside it",
            "sync",
            partial(run, "fj.map"),
            is_forkjoin=True,
        ),
    ),
    sizes={"quick": (100,), "full": (2_000,)},
    baseline="xargs",
    unit="s",
    repeats={"quick": 1, "full": 3},
    note="The spinning processes compete with every contender alike; what differs is "
    "whether the tool waits for each new command to be scheduled before starting the next.",
)
