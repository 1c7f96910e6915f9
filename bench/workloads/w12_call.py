"""Workload 12: ``forkjoin map --call`` throughput — a trivial Python function per line.

Beside the floor of the same work done by a plain Python loop (read lines, call, write a
JSON line each), both as a shell user runs them, start-up included.
"""

from __future__ import annotations

import sys
from functools import partial
from typing import Any

from . import _shell
from ._base import Contender, Result, Workload

LIMIT = 8
FUNCTION = "bench.workloads._shell:echo"

LOOP = """\
import json, sys
from bench.workloads._shell import echo
out = sys.stdout
for line in sys.stdin:
    line = line.rstrip("\\n")
    out.write(json.dumps({"input": line, "status": "ok", "value": echo(line)}) + "\\n")
"""


def run(tool: str, n: int, params: dict[str, Any]) -> Result:
    text = "".join(f"line {i}\n" for i in range(n))
    if tool == "loop":
        cmd = [sys.executable, "-c", LOOP]
    else:
        _shell.compile_forkjoin()
        cmd = _shell.forkjoin_argv("map", "-j", str(LIMIT), "--quiet", "--call", FUNCTION)
    r = _shell.run_tool(cmd, text)
    _shell.ok_or_raise(r, tool)
    _shell.check_jsonl(r["stdout"], n, tool)
    return {"seconds": r["seconds"], "cpu": r["cpu"]}


WORKLOAD = Workload(
    id=12,
    title="`forkjoin map --call` throughput",
    description=f"n lines, a trivial sync function per line (`{FUNCTION}`), limit {LIMIT}, "
    "JSON Lines out, start-up included",
    contenders=(
        Contender(
            "loop", "a plain Python loop (no concurrency; floor)", "sync", partial(run, "loop")
        ),
        Contender(
            "fj.map --call",
            f"`forkjoin map -j {LIMIT} --call`",
            "sync",
            partial(run, "fj.map"),
            is_forkjoin=True,
        ),
    ),
    sizes={"quick": (2_000,), "full": (20_000,)},
    baseline="loop",
    repeats={"quick": 1, "full": 5},
)
