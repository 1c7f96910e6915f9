"""LogObserver: one structured record per state change, quiet by default, no values."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from typing import Any

import pytest

import forkjoin as fj


async def _work(x: str, fail: bool = False) -> str:
    await asyncio.sleep(1)
    if fail:
        raise ValueError("broken")
    return x.upper()


def _run(vrun: Any, obs: fj.LogObserver) -> fj.Results:
    return vrun(  # type: ignore[no-any-return]
        fj.gather(
            {
                "a": fj.task(_work, "s3cret-arg", cost=0.5, group="api"),
                "b": fj.task(_work, "x", True, retry=fj.Retry(attempts=2, backoff=0)),
            },
            observers=[obs],
        )
    )


def test_one_structured_record_per_state_change(
    vrun: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="forkjoin")
    _run(vrun, fj.LogObserver())
    events = [
        (getattr(r, "event", None), getattr(r, "task", None), getattr(r, "attempt", None))
        for r in caplog.records
    ]
    assert events[0] == ("run_started", None, None)
    assert events[-1] == ("run_finished", None, None)
    assert sorted(events[1:-1]) == sorted(
        [
            ("task_queued", "a", None),
            ("task_queued", "b", None),
            ("task_started", "a", 1),
            ("task_started", "b", 1),
            ("attempt_failed", "b", 1),
            ("task_started", "b", 2),
            ("attempt_failed", "b", 2),
            ("task_finished", "a", 1),
            ("task_finished", "b", 2),
        ]
    )
    done = {r.task: r for r in caplog.records if r.event == "task_finished"}  # type: ignore[attr-defined]
    a, b = done["a"], done["b"]
    assert (a.status, a.duration, a.cost, a.group, a.levelno) == ("ok", 1.0, 0.5, "api", 20)
    assert (b.status, b.attempt, b.error, b.levelno) == ("failed", 2, "ValueError: broken", 30)
    assert a.name == "forkjoin.tasks"
    assert a.getMessage() == "task a ok in 1.000s (1 attempt(s))"
    retry = next(r for r in caplog.records if r.event == "attempt_failed")  # type: ignore[attr-defined]
    assert retry.getMessage() == "task b attempt 1 failed: ValueError: broken; retry in 0.000s"
    # values and arguments never reach the logs unless asked
    assert all("s3cret" not in r.getMessage().lower() for r in caplog.records)
    assert all(not hasattr(r, "value") for r in caplog.records)


def test_values_only_when_asked(vrun: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="forkjoin")
    _run(vrun, fj.LogObserver(log_values=True))
    done = next(r for r in caplog.records if getattr(r, "task", None) == "a")
    assert done.value == "'S3CRET-ARG'"  # type: ignore[attr-defined]


def test_levels_filter_before_building_records(vrun: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="forkjoin")
    _run(vrun, fj.LogObserver())
    assert {r.event for r in caplog.records} == {"attempt_failed", "task_finished"}  # type: ignore[attr-defined]
    assert {r.levelno for r in caplog.records} == {logging.WARNING}


def test_a_custom_logger_and_level(vrun: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="myapp")
    _run(vrun, fj.LogObserver("myapp.fan", level=logging.DEBUG))
    ok = next(
        r for r in caplog.records if getattr(r, "task", None) == "a" and r.event == "task_finished"
    )  # type: ignore[attr-defined]
    assert ok.name == "myapp.fan"
    assert ok.levelno == logging.DEBUG


def test_quiet_by_default() -> None:
    # no logging configured: even failures print nothing (logging's last resort stays silent)
    script = (
        "import forkjoin as fj\n"
        "def bad(): raise ValueError('no')\n"
        "fj.run({'a': bad}, observers=[fj.LogObserver()])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout == ""
    assert done.stderr == ""


def test_an_adaptive_limit_change_is_logged(vrun: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="forkjoin")

    async def overloaded() -> None:
        await asyncio.sleep(1)
        raise fj.RetryAfter(0.5)

    results = vrun(
        fj.gather(
            {f"t{i}": fj.task(overloaded, group="api") for i in range(6)},
            limits={"api": fj.AdaptiveLimit(initial=4)},
            observers=[fj.LogObserver()],
        )
    )
    cut = [r for r in caplog.records if getattr(r, "event", None) == "limit_changed"]
    assert cut, "the overload should have cut the limit"
    assert (cut[0].group, cut[0].limit, cut[0].why) == ("api", 2, "overload")  # type: ignore[attr-defined]
    assert cut[0].getMessage() == "group api limit now 2 (overload)"
    assert "adaptive     api limit" in str(results.report)


# -- logging's convention: enabling the logger is enough -------------------------------------


def _events(caplog: pytest.LogCaptureFixture) -> list[tuple[str | None, str | None]]:
    return [(getattr(r, "event", None), getattr(r, "task", None)) for r in caplog.records]


def test_enabling_the_forkjoin_logger_logs_every_run_with_no_observer(
    vrun: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="forkjoin")
    vrun(fj.gather({"a": (_work, "x"), "b": (_work, "y", True)}))
    events = _events(caplog)
    assert events[0] == ("run_started", None)
    assert sorted(events[1:-1]) == [("task_finished", "a"), ("task_finished", "b")]
    assert events[-1] == ("run_finished", None)
    # INFO: no queued/started records (nor the events behind them)
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="forkjoin.tasks")
    vrun(fj.gather({"a": (_work, "x")}))
    assert ("task_queued", "a") in _events(caplog)
    assert ("task_started", "a") in _events(caplog)


def test_a_map_run_logs_the_same_way(vrun: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="forkjoin")
    assert vrun(fj.map(_work, ["a", "b"])) == ["A", "B"]
    assert [e for e, _ in _events(caplog)] == ["run_started", "task_finished", "task_finished",
                                               "run_finished"]  # fmt: skip


def test_the_default_level_logs_nothing_and_subscribes_nothing(
    vrun: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from forkjoin._engine import Engine
    from forkjoin._options import build_options

    caplog.set_level(logging.WARNING)  # logging's own default: WARNING at the root
    vrun(fj.gather({"a": (_work, "x"), "b": (_work, "y", True)}))
    assert [r for r in caplog.records if r.name.startswith("forkjoin")] == []
    assert not Engine(build_options({})).events  # no observer: no event is ever built
    caplog.set_level(logging.INFO, logger="forkjoin")
    assert Engine(build_options({})).events


def test_an_explicit_log_observer_is_not_doubled(
    vrun: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="forkjoin")
    vrun(fj.gather({"a": (_work, "x")}, observers=[fj.LogObserver()]))
    assert _events(caplog).count(("task_finished", "a")) == 1
    # one of another logger is another log: both write
    caplog.clear()
    caplog.set_level(logging.INFO, logger="myapp")
    vrun(fj.gather({"a": (_work, "x")}, observers=[fj.LogObserver("myapp")]))
    names = [r.name for r in caplog.records if getattr(r, "event", None) == "task_finished"]
    assert sorted(names) == ["forkjoin.tasks", "myapp"]
