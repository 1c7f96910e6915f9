"""Workload 11: makespan of ``sleep 0.05`` per line, 50 at once: ``forkjoin map`` beside
``xargs -P 50`` and GNU parallel (ideal: n / 50 × 50 ms)."""

from __future__ import annotations

from functools import partial
from typing import Any

from . import _shell
from ._base import Contender, Result, Workload

JOBS = 50
SLEEP = 0.05


def run(tool: str, n: int, params: dict[str, Any]) -> Result:
    text = f"{SLEEP}\n" * n
    if tool == "xargs":
        _shell.skip_unless("xargs")
        cmd = ["xargs", "-P", str(JOBS), "-n", "1", "sleep"]
    elif tool == "parallel":
        _shell.skip_unless("parallel")
        cmd = ["parallel", "--will-cite", "-j", str(JOBS), "sleep"]
    else:
        _shell.compile_forkjoin()
        cmd = _shell.forkjoin_argv("map", "-j", str(JOBS), "--quiet", "--", "sleep")
    r = _shell.run_tool(cmd, text)
    _shell.ok_or_raise(r, tool)
    if tool == "fj.map":
        _shell.check_jsonl(r["stdout"], n, "forkjoin map")
    return {"seconds": r["seconds"], "cpu": r["cpu"]}


WORKLOAD = Workload(
    id=11,
    title="shell makespan",
    description=f"n lines of `sleep {SLEEP}`, {JOBS} at once, start-up included "
    f"(ideal n/{JOBS} × {SLEEP * 1000:g} ms)",
    contenders=(
        Contender(
            "xargs",
            f"`xargs -P {JOBS} -n 1 sleep`",
            "sync",
            partial(run, "xargs"),
            available=partial(_shell.need, "xargs"),
        ),
        Contender(
            "fj.map",
            f"`forkjoin map -j {JOBS} -- sleep`",
            "sync",
            partial(run, "fj.map"),
            is_forkjoin=True,
        ),
        Contender(
            "parallel",
            f"GNU `parallel -j {JOBS} sleep`",
            "sync",
            partial(run, "parallel"),
            available=partial(_shell.need, "parallel"),
        ),
    ),
    sizes={"quick": (100,), "full": (500,)},
    baseline="xargs",
    unit="s",
    ideal=lambda n: -(-n // JOBS) * SLEEP,
    repeats={"quick": 1, "full": 5},
)
