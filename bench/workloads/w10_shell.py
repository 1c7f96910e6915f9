"""Workload 10: ``forkjoin map -- CMD {}`` beside ``xargs -P N`` and GNU parallel.

n input lines, one command per line (``true``, then ``echo {}``), N at once (8, then 50);
every contender is the whole command a shell user types, timed from the outside with its
start-up (bench/workloads/_shell.py). Each row is divided by ``xargs`` with the same
command and N, measured in the same pass.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from . import _shell
from ._base import Contender, Result, Workload

JOBS = (8, 50)
COMMANDS = {"true": ["true"], "echo {}": ["echo", "{}"]}

# a ThreadPoolExecutor + subprocess.run script: what a Python user writes first
TPE = """\
import subprocess, sys
from concurrent.futures import ThreadPoolExecutor
jobs, argv = int(sys.argv[1]), sys.argv[2:]
def one(line):
    cmd = [a.replace("{}", line) for a in argv] if any("{}" in a for a in argv) else argv + [line]
    return subprocess.run(cmd, capture_output=True, text=True).stdout
with ThreadPoolExecutor(jobs) as ex:
    for out in ex.map(one, sys.stdin.read().splitlines()):
        sys.stdout.write(out)
"""


def _lines(n: int) -> tuple[list[str], str]:
    lines = [str(i) for i in range(n)]
    return lines, "".join(f"{x}\n" for x in lines)


def run(tool: str, command: str, jobs: int, n: int, params: dict[str, Any]) -> Result:
    lines, text = _lines(n)
    argv = COMMANDS[command]
    echoes = command.startswith("echo")
    if tool == "xargs":
        _shell.skip_unless("xargs")
        cmd = ["xargs", "-P", str(jobs), *(["-I{}"] if echoes else ["-n", "1"]), *argv]
    elif tool == "parallel":
        _shell.skip_unless("parallel")
        cmd = ["parallel", "--will-cite", "-j", str(jobs), *argv]
    elif tool == "tpe":
        import sys

        cmd = [sys.executable, "-c", TPE, str(jobs), *argv]
    else:
        _shell.compile_forkjoin()
        cmd = _shell.forkjoin_argv("map", "-j", str(jobs), "--quiet", "--", *argv)
    r = _shell.run_tool(cmd, text)
    _shell.ok_or_raise(r, tool)
    if tool == "fj.map":
        _shell.check_jsonl(r["stdout"], n, "forkjoin map")
    elif echoes:
        _shell.check_lines(r["stdout"], lines, tool)
    return {"seconds": r["seconds"], "cpu": r["cpu"]}


LABELS = {
    "xargs": "`xargs -P {j}`",
    "fj.map": "`forkjoin map -j {j}`",
    "parallel": "GNU `parallel -j {j}`",
    "tpe": "ThreadPoolExecutor({j}) + subprocess.run script",
}


def _contenders() -> tuple[Contender, ...]:
    out = []
    for command in COMMANDS:
        for jobs in JOBS:
            for tool, label in LABELS.items():
                system = tool in ("xargs", "parallel")
                out.append(
                    Contender(
                        f"{tool}/{command}/{jobs}",
                        f"{label.format(j=jobs)}, `{command}`",
                        "sync",
                        partial(run, tool, command, jobs),
                        is_forkjoin=tool == "fj.map",
                        available=partial(_shell.need, tool) if system else None,
                    )
                )
    return tuple(out)


def baseline_of(key: str) -> str:
    """Each row's baseline: xargs with the same command and N."""
    return "xargs/" + key.split("/", 1)[1]


WORKLOAD = Workload(
    id=10,
    title="shell: a command per input line",
    description="n lines, a command per line (`true`, `echo {}`) N at once, as a shell user "
    "runs it (the tool's start-up included), against `xargs -P N` with the same command",
    contenders=_contenders(),
    sizes={"quick": (200,), "full": (2_000,)},
    baseline="xargs/true/8",
    baseline_of=baseline_of,
    unit="s",
    repeats={"quick": 1, "full": 5},
)
