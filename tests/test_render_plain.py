"""The plain-text report (stderr is not a terminal): as wide as its content, one line per
task, and the words a person would write."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import forkjoin as fj
from forkjoin.cli._render import render_report
from forkjoin.cli._template import Redactor

ROOT = Path(__file__).resolve().parent.parent


def _results() -> fj.Results:
    from forkjoin._outcome import Attempt, Outcome, Results, RunInfo, Status

    long_error = ConnectionError("the upstream said: " + "no " * 80 + "(end)")
    outcomes = {
        "ok": Outcome("ok", Status.OK, 1, None, None, 1, 0.0, 0.1, index=0),
        "flaky": Outcome("flaky", Status.OK, 2, None, None, 2, 0.0, 0.3, index=1,
                         calls=(Attempt(1, 0.0, 0.1, ConnectionError("once")),
                                Attempt(2, 0.2, 0.3))),
        "long_error": Outcome("long_error", Status.FAILED, None, long_error, None, 1, 0.0, 0.2,
                              index=2),
        "stopped": Outcome("stopped", Status.CANCELLED, None, fj.TaskCancelled("cancelled"),
                           "cancelled", 1, 0.0, 0.4, index=3),
        "later": Outcome("later", Status.SKIPPED, None, fj.TaskSkipped("budget"), "budget",
                         index=4),
    }  # fmt: skip
    return Results(outcomes, RunInfo(wall=0.5, started_at=0.0))


def test_plain_report_is_as_wide_as_its_content_and_never_wraps() -> None:
    results = _results()
    text = render_report(results.report, results, Redactor(), terminal=False)
    lines = text.splitlines()
    assert all(line == line.rstrip() for line in lines)  # nothing padded to a width
    (row,) = [line for line in lines if line.startswith("long_error")]
    assert "ConnectionError: the upstream said: no no" in row  # on its task's line
    assert not any(line.startswith(" " * 20) for line in lines)  # no wrapped continuation
    # words as a person writes them
    assert "attempts     5 (1 retry)" in text
    assert "(cancelled)" not in text
    (stopped,) = [line for line in lines if line.startswith("stopped")]
    assert stopped.endswith("cancelled")  # not "cancelled: TaskCancelled: cancelled (...)"
    (later,) = [line for line in lines if line.startswith("later")]
    assert later.endswith("  budget")


def test_a_run_slower_than_sequential_claims_no_saving(vrun: object) -> None:
    async def one() -> fj.Results:
        return await fj.gather({"only": (asyncio.sleep, 0.5)})

    results: fj.Results = vrun(one())  # type: ignore[operator]
    report = results.report
    text = str(report)
    assert report.time_saved <= 0.0005
    assert "saved" not in text
    assert "(sum of task durations)" in text
    assert "0 retries" in text


def test_cancelled_error_says_it_once() -> None:
    assert str(fj.TaskCancelled("cancelled")) == "cancelled"
    assert str(fj.TaskCancelled("quorum")) == "cancelled (quorum)"
    assert str(fj.TaskSkipped("budget")) == "skipped (budget)"


def test_map_summary_counts_in_words() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "forkjoin", "map", "--call", "json:dumps"],
        input="one\n", capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert r.stderr.startswith("map: 1 line, 1 ok, 0 not ok in ")


def test_map_summary_rate_in_words() -> None:
    from forkjoin.cli._mapcmd import per_second

    assert per_second(1, 1.0) == "1 line/s"
    assert per_second(3, 2.0) == "2 lines/s"
    assert per_second(25_000, 2.0) == "12,500 lines/s"
    assert per_second(0, 1.0) == "0 lines/s"
