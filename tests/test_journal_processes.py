"""The journal across real processes: kill -9, SIGTERM and SIGINT mid-run, then resume.

Each test starts its processes itself and ends every one by pid (a killed CLI's command
tasks by its process group, which is its pid).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import forkjoin as fj

HERE = Path(__file__).resolve().parent
WORKER = [sys.executable, str(HERE / "journal_worker.py")]
FORKJOIN = [sys.executable, "-m", "forkjoin"]
N = 200
LIMIT = 10


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@contextlib.contextmanager
def started(argv: list[str], **kwargs: object) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **kwargs,  # type: ignore[call-overload]
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # command tasks a killed CLI left behind


def wait_for_lines(path: Path, count: int, proc: subprocess.Popen[str]) -> None:
    """Wait until the tasks have written ``count`` names (the process must still run)."""
    deadline = time.monotonic() + 60
    while len(lines(path)) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"only {len(lines(path))} names written"
        time.sleep(0.001)


def wait_for_committed(db: Path, count: int, proc: subprocess.Popen[str]) -> None:
    """Wait until the journal file holds ``count`` ok outcomes (the process must still run)."""
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(fj.JournalError):  # a file still being created
            if db.exists() and len(committed(db)) >= count:
                return
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the journal never held the outcomes"
        time.sleep(0.01)


def wait_until_gone(marker: str) -> None:
    """Wait until no process has ``marker`` in its command line: a killed CLI's watchdog
    ends its commands a moment after the CLI itself is gone."""
    deadline = time.monotonic() + 30
    while True:
        alive = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                        alive.append(entry)
        if not alive:
            return
        assert time.monotonic() < deadline, f"processes {alive} outlived the killed CLI"
        time.sleep(0.01)


def all_rows(db: Path) -> dict[str, str]:
    """``{task: status}`` of what the journal file holds (every run in it)."""
    return {r["key"]: r["status"] for r in fj.Journal(db).outcomes()}


def committed(db: Path) -> set[str]:
    return {k for k, s in all_rows(db).items() if s == "ok"}


def worker(db: Path, side: Path, durability: str) -> list[str]:
    return [*WORKER, "run", str(db), str(side), durability, str(N), str(LIMIT)]


def finish(argv: list[str]) -> dict[str, int]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, int] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("durability", ["sync", "batch"])
def test_kill_9_then_resume_reruns_only_what_was_in_flight(tmp_path: Path, durability: str) -> None:
    db, side = tmp_path / "run.db", tmp_path / "side.txt"
    with started(worker(db, side, durability)) as proc:
        wait_for_lines(side, N // 2, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    first = lines(side)
    kept = committed(db)
    in_flight = set(first) - kept
    assert 0 < len(kept) < N
    if durability == "sync":
        assert len(in_flight) <= LIMIT  # only the tasks that were running at the kill

    second = finish(worker(db, side, durability))
    assert second == {"ok": N, "resumed": len(kept)}
    counts = Counter(lines(side))
    assert set(counts) == {f"t{i:03d}" for i in range(N)}
    twice = {name for name, n in counts.items() if n > 1}
    assert twice <= in_flight  # a committed ok task is never called again
    assert all(n <= 2 for n in counts.values())

    before = lines(side)
    third = finish(worker(db, side, durability))
    assert third == {"ok": N, "resumed": N}
    assert lines(side) == before  # nothing was called


def test_sigterm_commits_what_finished_and_exits_143(tmp_path: Path) -> None:
    db, side = tmp_path / "run.db", tmp_path / "side.txt"
    with started(worker(db, side, "batch")) as proc:
        wait_for_lines(side, N // 2, proc)
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 143
    rows = all_rows(db)
    assert len(rows) == N  # every task's Outcome: ok, cancelled or skipped
    ok = {k for k, s in rows.items() if s == "ok"}
    assert set(rows.values()) <= {"ok", "cancelled", "skipped"}
    before = len(lines(side))
    second = finish(worker(db, side, "batch"))
    assert second == {"ok": N, "resumed": len(ok)}
    assert set(lines(side)[before:]) == set(rows) - ok  # only the rest ran


def test_a_second_process_is_locked_out_until_the_first_is_killed(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    with started([*WORKER, "hold", str(db)]) as holder:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        with started([*WORKER, "hold", str(db)]) as second:
            out, err = second.communicate(timeout=60)
        assert second.returncode == 3, err
        locked = json.loads(out)
        assert locked["locked"] == holder.pid
        assert f"process {holder.pid}" in locked["message"]
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    with started([*WORKER, "hold", str(db)]) as third:  # the dead holder's lock is taken over
        assert third.stdout is not None
        assert third.stdout.readline().strip() == "ready"


# -- the command line ---------------------------------------------------------------------


def command_spec(tmp_path: Path, side: Path, journal: bool = False) -> Path:
    """N command tasks; the second half waits for ``tmp_path / "gate"`` before it starts, so a
    test can stop the run with exactly the first half finished."""
    script = (
        'if [ -n "$3" ]; then while [ ! -e "$3" ]; do sleep 0.005; done; fi; '
        'echo "$1" >> "$2"; sleep 0.01; echo "end $1" >> "$2.end"'
    )
    parts = ["[run]", f"limit = {LIMIT}"]
    if journal:
        parts.append('journal = "spec.db"')
    gate = str(tmp_path / "gate")
    for i in range(N):
        name = f"t{i:03d}"
        argv = ["sh", "-c", script, "sh", name, str(side), gate if i >= N // 2 else ""]
        parts.append(f"[tasks.{name}]\nargv = {json.dumps(argv)}")
    path = tmp_path / "spec.toml"
    path.write_text("\n".join(parts) + "\n")
    return path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FORKJOIN, *args], capture_output=True, text=True, timeout=180, check=False
    )


def test_cli_kill_9_then_resume(tmp_path: Path) -> None:
    db, side = tmp_path / "run.db", tmp_path / "side.txt"
    spec = command_spec(tmp_path, side)
    argv = [*FORKJOIN, "run", str(spec), "--journal", str(db), "--quiet"]
    with started(argv) as proc:
        wait_for_committed(db, N // 2, proc)  # the second half waits for the gate
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    wait_until_gone(str(side))  # the commands waiting for the gate, killed by the watchdog
    (tmp_path / "gate").touch()
    kept = committed(db)
    assert kept == {f"t{i:03d}" for i in range(N // 2)}
    first = set(lines(side))

    second = cli("run", str(spec), "--journal", str(db), "--quiet")
    assert second.returncode == 0, second.stderr
    results = json.loads(second.stdout)["results"]
    assert len(results) == N
    assert all(r["status"] == "ok" for r in results.values())
    assert {n for n, r in results.items() if r.get("resumed")} == kept
    counts = Counter(lines(side))
    assert {n for n, c in counts.items() if c > 1} <= first - kept

    before = lines(side)
    third = cli("run", str(spec), "--journal", str(db))
    assert third.returncode == 0, third.stderr
    assert lines(side) == before
    assert f"{N} from the journal" in third.stderr
    # --fresh starts over
    fresh = cli("run", str(spec), "--journal", str(db), "--fresh", "--quiet")
    assert fresh.returncode == 0
    assert len(lines(side)) == len(before) + N


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_cli_signals_commit_what_finished(tmp_path: Path, sig: int, code: int) -> None:
    side = tmp_path / "side.txt"
    spec = command_spec(tmp_path, side, journal=True)  # [run] journal = "spec.db"
    db = tmp_path / "spec.db"
    with started([*FORKJOIN, "run", str(spec), "--quiet"]) as proc:
        wait_for_lines(side, N // 2, proc)  # the second half waits for the gate
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=60)
    (tmp_path / "gate").touch()
    assert proc.returncode == code, err
    if sig == signal.SIGTERM:
        assert "terminated: the journal holds what finished" in err
    rows = all_rows(db)
    assert len(rows) == N
    ok = {k for k, s in rows.items() if s == "ok"}
    assert 0 < len(ok) < N
    before = len(lines(side))
    again = cli("run", str(spec), "--quiet")
    assert again.returncode == 0, again.stderr
    assert set(lines(side)[before:]) == set(rows) - ok
