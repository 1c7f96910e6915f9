"""Retries (fj.Retry) and the event stream, through the public API."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import forkjoin as fj

from .conftest import no_orphans


class Recorder:
    def __init__(self) -> None:
        self.events: list[fj.Event] = []

    def on_event(self, event: fj.Event) -> None:
        self.events.append(event)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


class Flaky:
    """Fails the first ``failures`` calls, then returns ``value``; counts its calls."""

    def __init__(self, failures: int, value: Any = "ok", error: type[Exception] = ConnectionError):
        self.failures = failures
        self.value = value
        self.error = error
        self.calls = 0

    async def __call__(self) -> Any:
        self.calls += 1
        await asyncio.sleep(0.5)
        if self.calls <= self.failures:
            raise self.error(f"call {self.calls}")
        return self.value


NO_JITTER = {"backoff": 1.0, "jitter": False}


# -- retry -----------------------------------------------------------------------------------


def test_retry_until_success_records_history(vrun) -> None:
    flaky = Flaky(2)

    async def main() -> fj.Results:
        return await fj.gather({"f": fj.task(flaky, retry=fj.Retry(attempts=5, **NO_JITTER))})

    o = vrun(main())["f"]
    assert o.ok
    assert o.value == "ok"
    assert o.attempts == 3
    assert flaky.calls == 3
    # calls at 0, 0.5+1 and 2+2 (backoff 1, then 2), each 0.5s long
    assert [(a.number, a.started, a.ended) for a in o.history] == [
        (1, 0.0, 0.5),
        (2, 1.5, 2.0),
        (3, 4.0, 4.5),
    ]
    assert [type(a.error) for a in o.history] == [ConnectionError, ConnectionError, type(None)]
    assert o.started == 0.0
    assert o.ended == 4.5


def test_attempts_never_exceed_the_bound(vrun) -> None:
    flaky = Flaky(100)

    async def main() -> fj.Results:
        return await fj.gather({"f": fj.task(flaky, retry=fj.Retry(attempts=4, backoff=0))})

    o = vrun(main())["f"]
    assert o.status is fj.Status.FAILED
    assert flaky.calls == 4
    assert o.attempts == 4
    assert len(o.history) == 4
    assert str(o.error) == "call 4"


def test_attempt_failed_events(vrun) -> None:
    flaky = Flaky(100)
    rec = Recorder()

    async def main() -> None:
        await fj.gather(
            {"f": fj.task(flaky, retry=fj.Retry(attempts=3, **NO_JITTER))}, observers=[rec]
        )

    vrun(main())
    failed = rec.of(fj.AttemptFailed)
    assert [(e.name, e.attempt, e.delay) for e in failed] == [
        ("f", 1, 1.0),
        ("f", 2, 2.0),
        ("f", 3, None),
    ]
    assert [e.attempt for e in rec.of(fj.TaskStarted)] == [1, 2, 3]
    assert len(rec.of(fj.TaskFinished)) == 1


def test_run_default_retry_and_task_opt_out(vrun) -> None:
    a, b = Flaky(1), Flaky(1)

    async def main() -> fj.Results:
        return await fj.gather(
            {"default": a, "opted_out": fj.task(b, retry=False)},
            retry=fj.Retry(attempts=3, backoff=0),
        )

    results = vrun(main())
    assert results["default"].ok
    assert results["default"].attempts == 2
    assert results["opted_out"].status is fj.Status.FAILED
    assert results["opted_out"].attempts == 1
    assert b.calls == 1


def test_retry_only_on_the_given_errors(vrun) -> None:
    conn, val = Flaky(1, error=ConnectionError), Flaky(1, error=ValueError)
    policy = fj.Retry(attempts=3, backoff=0, on=(ConnectionError,))

    async def main() -> fj.Results:
        return await fj.gather(
            {"conn": fj.task(conn, retry=policy), "val": fj.task(val, retry=policy)}
        )

    results = vrun(main())
    assert results["conn"].ok
    assert results["val"].status is fj.Status.FAILED
    assert val.calls == 1


def test_cancelled_error_raised_by_a_task_is_not_retried(vrun) -> None:
    calls: list[int] = []

    async def cancels_itself() -> None:
        calls.append(1)
        raise asyncio.CancelledError

    async def main() -> fj.Results:
        results = await fj.gather(
            {"c": cancels_itself, "ok": lambda: asyncio.sleep(1, "fine")},
            retry=fj.Retry(attempts=5, backoff=0),
        )
        no_orphans()
        return results

    results = vrun(main())
    assert calls == [1]
    assert results["c"].status is fj.Status.CANCELLED
    assert results["c"].attempts == 1
    assert results["ok"].value == "fine"


def test_deadline_during_backoff_is_not_retried(vrun) -> None:
    flaky = Flaky(100)

    async def main() -> fj.Results:
        return await fj.gather(
            {"f": fj.task(flaky, retry=fj.Retry(attempts=10, backoff=2, jitter=False))},
            deadline=3,
        )

    o = vrun(main())["f"]
    # calls at 0 (fails at 0.5), 2.5 (fails at 3.0 = deadline)
    assert o.status is fj.Status.TIMED_OUT
    assert o.reason == "deadline"
    assert flaky.calls <= 2
    assert o.ended == 3.0


def test_timeout_per_call_is_retried(vrun) -> None:
    calls: list[int] = []

    async def slow_then_fast() -> str:
        calls.append(1)
        await asyncio.sleep(10 if len(calls) < 3 else 0.1)
        return "finally"

    async def main() -> fj.Results:
        return await fj.gather(
            {"t": fj.task(slow_then_fast, timeout=1, retry=fj.Retry(attempts=3, backoff=0))}
        )

    o = vrun(main())["t"]
    assert o.ok
    assert o.attempts == 3
    assert [type(a.error) for a in o.history[:2]] == [fj.TaskTimeout, fj.TaskTimeout]


def test_every_call_timing_out_ends_timed_out(vrun) -> None:
    async def main() -> fj.Results:
        return await fj.gather(
            {"t": fj.task(asyncio.sleep, 10, timeout=1, retry=fj.Retry(attempts=2, backoff=0))}
        )

    o = vrun(main())["t"]
    assert o.status is fj.Status.TIMED_OUT
    assert o.reason == "timeout"
    assert o.attempts == 2


def test_sync_task_is_retried_in_a_thread(vrun) -> None:
    calls: list[int] = []

    def sync_flaky() -> int:
        calls.append(1)
        if len(calls) < 2:
            raise OSError("once")
        return 7

    results = vrun(fj.gather({"s": fj.task(sync_flaky, retry=fj.Retry(attempts=3, backoff=0))}))
    assert results["s"].value == 7
    assert results["s"].attempts == 2


def test_retry_validation() -> None:
    with pytest.raises(fj.InvalidPolicy, match="attempts"):
        fj.Retry(attempts=0)
    with pytest.raises(fj.InvalidPolicy, match="backoff"):
        fj.Retry(backoff=-1)
    with pytest.raises(fj.InvalidPolicy, match="retry"):
        fj.task(Flaky(0), retry=3)  # type: ignore[arg-type]


# -- events ----------------------------------------------------------------------------------


def test_full_event_sequence(vrun) -> None:
    rec = Recorder()
    flaky = Flaky(1)

    async def main() -> fj.Results:
        return await fj.gather(
            {
                "a": fj.task(flaky, retry=fj.Retry(attempts=2, backoff=0)),
                "b": (asyncio.sleep, 2, "B"),
                "c": (asyncio.sleep, 1, "C"),
            },
            limit=2,
            deadline=100,
            observers=[rec],
        )

    results = vrun(main())
    kinds = [type(e).__name__ for e in rec.events]
    assert kinds[0] == "RunStarted"
    assert kinds[-1] == "RunFinished"
    assert kinds.count("RunStarted") == kinds.count("RunFinished") == 1
    assert kinds[1:4] == ["TaskQueued"] * 3
    finished = rec.of(fj.TaskFinished)
    assert sorted(e.outcome.name for e in finished) == ["a", "b", "c"]
    for name in "abc":
        # every event of a task carries its name, TaskFinished too
        mine = [e for e in rec.events if getattr(e, "name", None) == name]
        order = [type(e).__name__ for e in mine]
        expected = ["TaskQueued", "AttemptStarted"]
        if name == "a":
            expected += ["AttemptFailed", "AttemptStarted"]
        assert order == [*expected, "TaskFinished"]
    assert fj.TaskStarted is fj.AttemptStarted  # the older name still works
    times = [e.time for e in rec.events]
    assert times == sorted(times)
    assert {e.run for e in rec.events} == {rec.events[0].run}
    assert rec.events[0].options["limit"] == 2
    assert rec.events[0].options["deadline"] == 100
    assert rec.events[-1].results is results
    assert {e.outcome.name: e.outcome for e in finished} == dict(results)


def test_one_task_finished_per_task_on_every_path(vrun) -> None:
    rec = Recorder()

    async def bad() -> None:
        await asyncio.sleep(1)
        raise ValueError("x")

    async def main() -> None:
        with pytest.raises(fj.FanError):
            await fj.gather(
                {
                    "ok": (asyncio.sleep, 0.5),
                    "bad": bad,
                    "running": (asyncio.sleep, 10),
                    "timeout": fj.task(asyncio.sleep, 10, timeout=0.7),
                    **{f"q{i}": (asyncio.sleep, 1) for i in range(5)},
                },
                limit=4,
                on_error="fail_fast",
                observers=[rec],
            )

    vrun(main())
    names = [e.outcome.name for e in rec.of(fj.TaskFinished)]
    assert sorted(names) == sorted(
        ["ok", "bad", "running", "timeout"] + [f"q{i}" for i in range(5)]
    )
    assert len(rec.of(fj.TaskQueued)) == 9


def test_dynamic_spawn_emits_task_queued(vrun) -> None:
    rec = Recorder()

    async def main() -> None:
        async with fj.Fan(observers=[rec]) as fan:
            fan.spawn("a", asyncio.sleep, 1)
            await asyncio.sleep(2)
            fan.spawn("b", asyncio.sleep, 1)

    vrun(main())
    queued = rec.of(fj.TaskQueued)
    assert [(e.name, e.time) for e in queued] == [("a", 0.0), ("b", 2.0)]


def test_a_failing_observer_does_not_break_the_run(vrun, caplog) -> None:
    good = Recorder()

    class Broken:
        def on_event(self, event: fj.Event) -> None:
            raise RuntimeError("observer bug")

    async def main() -> fj.Results:
        return await fj.gather(
            {"a": (asyncio.sleep, 1, "A"), "b": (asyncio.sleep, 2, "B")},
            observers=[Broken(), good],
        )

    with caplog.at_level(logging.ERROR, logger="forkjoin"):
        results = vrun(main())
    assert results.ok_values() == {"a": "A", "b": "B"}
    assert len(good.of(fj.TaskFinished)) == 2
    assert isinstance(good.events[-1], fj.RunFinished)
    assert "observer" in caplog.text


def test_observer_without_on_event_is_invalid() -> None:
    with pytest.raises(fj.InvalidPolicy, match="on_event"):
        fj.Fan(observers=[object()])


def test_observer_protocol_is_runtime_checkable() -> None:
    assert isinstance(Recorder(), fj.Observer)
    assert not isinstance(object(), fj.Observer)


def test_a_retry_the_deadline_stops_is_in_the_history(vrun) -> None:
    calls = 0

    async def slow_after_first() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("first call fails")
        await asyncio.sleep(100)
        return "late"

    async def main() -> fj.Results:
        return await fj.gather(
            {"t": fj.task(slow_after_first, retry=fj.Retry(attempts=3, backoff=1, jitter=False))},
            deadline=10,
        )

    outcome = vrun(main())["t"]
    assert outcome.status is fj.Status.TIMED_OUT
    assert outcome.reason == "deadline"
    assert [a.number for a in outcome.history] == [1, 2]
    assert isinstance(outcome.history[0].error, ConnectionError)
    assert isinstance(outcome.history[1].error, fj.TaskTimeout)
    assert outcome.history[1].started == 1.0
    assert outcome.history[1].ended == 10.0
