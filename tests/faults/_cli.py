"""What the fault tests of the command line share: the CLI as a real process, ended by pid,
and the commands it runs, found by the pid files they write."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent.parent
FORKJOIN = [sys.executable, "-m", "forkjoin"]
BOUND = 30.0  # seconds: what "never" means here (nothing below should take a tenth of it)


@contextlib.contextmanager
def cli(*args: str, stdin: Any = subprocess.DEVNULL) -> Iterator[subprocess.Popen[str]]:
    """``forkjoin ARGS...`` in a process of its own, killed by pid if still running."""
    proc = subprocess.Popen(
        [*FORKJOIN, *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def pid_of(path: Path, proc: subprocess.Popen[str]) -> psutil.Process:
    """The process whose pid a command wrote to ``path`` (waited for, while the CLI runs)."""
    deadline = time.monotonic() + BOUND
    while not (path.exists() and path.read_text().strip()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path.name} never written"
        time.sleep(0.01)
    return psutil.Process(int(path.read_text().split()[0]))


def watchdog_of(proc: subprocess.Popen[str]) -> psutil.Process:
    """The CLI's watchdog (``python -I -S -c ...``), started with its first command."""
    found = [p for p in _helpers(proc) if SPAWNER not in p.cmdline()]
    assert len(found) == 1, found
    return found[0]


SPAWNER = "forkjoin-spawner"


def spawners_of(proc: subprocess.Popen[str]) -> list[psutil.Process]:
    """The CLI's spawners (``python -I -S -c ... forkjoin-spawner``), if it started any."""
    return [p for p in _helpers(proc) if SPAWNER in p.cmdline()]


def _helpers(proc: subprocess.Popen[str]) -> list[psutil.Process]:
    return [p for p in psutil.Process(proc.pid).children() if "-I" in p.cmdline()[1:3]]


def gone(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those of ``procs`` still running after a bounded wait; each is killed (by pid)."""
    _, alive = psutil.wait_procs(procs, timeout=10)
    alive = [p for p in alive if _running(p)]
    for p in alive:
        with contextlib.suppress(psutil.Error):
            os.kill(p.pid, signal.SIGKILL)
    return alive


def _running(p: psutil.Process) -> bool:
    try:
        return bool(p.is_running() and p.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path
