"""Running command-line tools as contenders: ``forkjoin`` beside ``xargs`` and GNU parallel.

Every contender is the whole command a shell user types, started fresh and timed from the
outside (wall time of the process, its interpreter's start-up included; the CPU time of
the process and of the commands it started, from ``wait4``). Each checks its own output
afterwards: a tool that skipped work cannot look fast.

The forkjoin under test is the one the harness chose (``PYTHONPATH`` of the child), byte-
compiled first, as an installed package is: timing the compiler would say nothing about
forkjoin (CI sets ``PYTHONDONTWRITEBYTECODE``, so nothing else would write the cache).
"""

from __future__ import annotations

import compileall
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._base import Skip

__all__ = [
    "compile_forkjoin",
    "echo",
    "forkjoin_argv",
    "need",
    "run_tool",
]


def echo(line: str) -> str:
    """What ``forkjoin map --call`` is timed with (trivial, sync, in this module)."""
    return line


def need(tool: str) -> str | None:
    """A reason to skip a contender whose tool is missing, or None. Under CI a missing
    tool is not a reason: the contender then runs, fails and says which tool is missing."""
    if shutil.which(tool) is None and not os.environ.get("CI"):
        return f"`{tool}` is not installed (apt-get install {tool})"
    return None


def compile_forkjoin() -> None:
    """Write the byte-code of the forkjoin the children import, once per child."""
    import forkjoin

    folder = Path(forkjoin.__file__ or "").parent
    compileall.compile_dir(str(folder), quiet=1)


def forkjoin_argv(*args: str) -> list[str]:
    """``forkjoin ARGS`` as the console script runs it."""
    return [sys.executable, "-c", "from forkjoin.cli import main; main()", *args]


def run_tool(argv: list[str], stdin: str | None = None) -> dict[str, Any]:
    """Run one command to its end: wall seconds, CPU seconds (the process and what it
    started), its exit code and stdout. Its stdin is a file holding ``stdin``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, _input(stdin) as inp:
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen(argv, stdin=inp, stdout=out, stderr=err)
        except FileNotFoundError as e:
            raise RuntimeError(f"{argv[0]}: not found ({e})") from None
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    return {
        "seconds": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "code": proc.returncode,
        "stdout": stdout,
        "stderr": stderr,
    }


class _input:
    """A file holding ``text`` (or /dev/null), opened for reading."""

    def __init__(self, text: str | None) -> None:
        self.text = text
        self.f: Any = None

    def __enter__(self) -> Any:
        if self.text is None:
            self.f = open(os.devnull, "rb")
        else:
            self.f = tempfile.TemporaryFile()
            self.f.write(self.text.encode())
            self.f.seek(0)
        return self.f

    def __exit__(self, *exc: object) -> None:
        self.f.close()


def check_jsonl(stdout: str, n: int, what: str) -> None:
    """Raise unless ``stdout`` is ``n`` JSON lines, every one ok."""
    lines = stdout.splitlines()
    ok = sum(1 for line in lines if json.loads(line).get("status") == "ok")
    if len(lines) != n or ok != n:
        raise AssertionError(f"{what}: {ok} ok lines of {len(lines)}, expected {n}")


def check_lines(stdout: str, expected: list[str], what: str) -> None:
    """Raise unless ``stdout`` holds exactly ``expected`` lines, in any order."""
    got = sorted(stdout.splitlines())
    if got != sorted(expected):
        raise AssertionError(f"{what}: {len(got)} lines, expected {len(expected)}")


def ok_or_raise(result: dict[str, Any], what: str) -> None:
    if result["code"] != 0:
        tail = (result["stderr"] or result["stdout"]).strip().splitlines()[-3:]
        raise AssertionError(f"{what}: exit {result['code']}: {' | '.join(tail)}")


def skip_unless(tool: str) -> None:
    """Inside a contender: raise Skip when ``tool`` is missing (outside CI)."""
    reason = need(tool)
    if reason is not None:
        raise Skip(reason)
