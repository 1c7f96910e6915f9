"""Guarantee: a second Ctrl-C (or SIGTERM) right after the first may hurry the exit but
never loses the output: the partial results and the report are printed, with no
traceback, and the exit code is the first signal's. A sync task blocked in its thread
does not hold the exit up (abandoned calls are not waited for), nor does ``map`` reading
a stdin nobody closes."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from ._cli import BOUND, cli, gone, pid_of, spec

BLOCKING = """
import time
from pathlib import Path

def block(marker, seconds):
    Path(marker).write_text("1")
    time.sleep(seconds)
    return "woke"
"""


def command_spec(tmp_path: Path) -> Path:
    # `long` ignores SIGTERM (its sleep too): the run is still stopping, waiting for the
    # grace before SIGKILL, when the second signal comes
    return spec(
        tmp_path,
        f"""
[tasks.quick]
argv = ["true"]

[tasks.long]
argv = ["sh", "-c", "trap '' TERM; echo $$ > {tmp_path}/long.pid; sleep 30"]
after = ["quick"]
""",
    )


@pytest.mark.parametrize(
    ("second", "gap"),
    [(signal.SIGINT, 0.0), (signal.SIGINT, 0.005), (signal.SIGINT, 0.015), (signal.SIGTERM, 0.01)],
    ids=["INT-at-once", "INT-5ms", "INT-15ms", "TERM-10ms"],
)
def test_a_second_signal_keeps_the_report(
    tmp_path: Path, gap: float, second: int, children: Any, commands: list[Any]
) -> None:
    with cli("run", str(command_spec(tmp_path))) as proc:
        long = pid_of(tmp_path / "long.pid", proc)
        commands.append(long)
        proc.send_signal(signal.SIGINT)
        if gap:
            time.sleep(gap)  # the scenario itself: a second key press 5-15 ms later
        proc.send_signal(second)
        out, err = proc.communicate(timeout=BOUND)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    results = json.loads(out)["results"]
    assert results["quick"]["status"] == "ok"
    assert results["long"]["status"] == "cancelled"
    assert "tasks        2 (cancelled 1, ok 1)" in err
    assert gone([long]) == []


@pytest.mark.parametrize("presses", [1, 2])
def test_a_blocked_thread_does_not_hold_the_exit(
    tmp_path: Path, presses: int, children: Any
) -> None:
    (tmp_path / "blocking_fj_test.py").write_text(BLOCKING)
    marker = tmp_path / "started"
    text = f"""
[tasks.quick]
argv = ["true"]

[tasks.blocked]
call = "blocking_fj_test:block"
args = ["{marker}", 30]
after = ["quick"]
"""
    with cli("run", str(spec(tmp_path, text))) as proc:
        deadline = time.monotonic() + BOUND
        while not marker.exists():  # the call is in its thread now
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        pressed = time.monotonic()
        for _ in range(presses):
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=BOUND)
        waited = time.monotonic() - pressed
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    results = json.loads(out)["results"]
    assert results["blocked"]["status"] == "cancelled"
    assert results["blocked"]["reason"] == "abandoned"
    assert "tasks        2 (cancelled 1, ok 1)" in err
    assert waited < BOUND / 3  # not the 30 s the thread sleeps


def test_map_does_not_wait_for_its_stdin(
    tmp_path: Path, children: Any, commands: list[Any]
) -> None:
    command = f"echo $$ > {tmp_path}/$1.pid; exec sleep $1"
    with cli("map", "--", "sh", "-c", command, "sh", stdin=subprocess.PIPE) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write("0\n30\n")
        proc.stdin.flush()  # and left open: the input has not ended
        first = json.loads(proc.stdout.readline())
        long = pid_of(tmp_path / "30.pid", proc)
        commands.append(long)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=BOUND)
        err = proc.stderr.read() if proc.stderr is not None else ""
        proc.stdin.close()
    assert code == 130, err
    assert first["status"] == "ok"
    assert "; interrupted: lines still running were stopped" in err
    assert gone([long]) == []
