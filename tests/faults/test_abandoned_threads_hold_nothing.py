"""Guarantee: a blocking call the run gave up on (a timeout, the deadline) is reported as
abandoned, holds no slot (the next task gets a thread at once and is not charged the
wait) and does not keep the process alive after the run has returned."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import forkjoin as fj


def test_a_timed_out_blocking_call_is_reported_abandoned() -> None:
    release = threading.Event()
    try:
        results = fj.run({"stuck": fj.task(release.wait, 30, timeout=0.2)})
    finally:
        release.set()
    o = results["stuck"]
    assert o.status is fj.Status.TIMED_OUT
    assert o.reason == "abandoned"  # not just "timeout": its thread still runs
    assert isinstance(o.error, fj.TaskTimeout)


def test_the_next_task_gets_a_thread_at_once_and_only_its_own_time() -> None:
    release = threading.Event()
    started: dict[str, float] = {}

    def quick() -> str:
        started["quick"] = time.monotonic()
        return "quick"

    t0 = time.monotonic()
    try:
        results = fj.run({"stuck": fj.task(release.wait, 30, timeout=0.2), "quick": quick}, limit=1)
    finally:
        release.set()
    assert results["stuck"].reason == "abandoned"
    assert results["quick"].ok
    # it started when the stuck call was given up on, not when that call ends
    assert started["quick"] - t0 < 5
    assert results["quick"].duration is not None
    assert results["quick"].duration < 1.0


def test_an_abandoned_thread_does_not_keep_the_process_alive() -> None:
    script = textwrap.dedent(
        """
        import time
        import forkjoin as fj

        results = fj.run({"stuck": fj.task(time.sleep, 30, timeout=0.5)})
        print(results["stuck"].reason, flush=True)
        """
    )
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    elapsed = time.monotonic() - t0
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "abandoned"
    assert elapsed < 15  # the stuck call sleeps 30 s; the process must not wait for it
