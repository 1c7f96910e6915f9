"""fj.gather / fj.run: one Outcome per task on every path, keyed, no orphans."""

from __future__ import annotations

import asyncio
import gc
import signal
import threading
import warnings
from typing import Any

import pytest

import forkjoin as fj

from .conftest import no_orphans


async def value_after(value: Any, seconds: float) -> Any:
    await asyncio.sleep(seconds)
    return value


async def fail_after(error: BaseException, seconds: float) -> Any:
    await asyncio.sleep(seconds)
    raise error


class Recorder:
    """An observer that keeps every event."""

    def __init__(self) -> None:
        self.events: list[fj.Event] = []

    def on_event(self, event: fj.Event) -> None:
        self.events.append(event)

    def finished(self) -> list[fj.Outcome]:
        return [e.outcome for e in self.events if isinstance(e, fj.TaskFinished)]


# -- success and failure -------------------------------------------------------------------


def test_success_and_exception_are_keyed_outcomes(vrun) -> None:
    boom = ValueError("boom")

    async def main() -> fj.Results:
        results = await fj.gather(
            {
                "slow": (value_after, "S", 3),
                "bad": (fail_after, boom, 1),
                "fast": (value_after, "F", 2),
            }
        )
        no_orphans()
        return results

    results = vrun(main())
    assert list(results) == ["slow", "bad", "fast"]
    assert results["slow"].status is fj.Status.OK
    assert results["slow"].value == "S"
    assert results["fast"].value == "F"
    bad = results["bad"]
    assert bad.status is fj.Status.FAILED
    assert bad.error is boom
    assert not bad.ok
    assert bad.attempts == 1
    assert bad.reason is None
    assert results["slow"].started == 0.0
    assert results["slow"].ended == 3.0
    assert results["slow"].duration == 3.0


def test_spec_forms_task_tuple_callable_coroutine_sync(vrun) -> None:
    def sync_add(a: int, b: int) -> int:
        return a + b

    async def main() -> fj.Results:
        return await fj.gather(
            {
                "task": fj.task(value_after, 1, 0.5),
                "tuple": (value_after, 2, 0.1),
                "lambda": lambda: value_after(3, 0.2),
                "coro": value_after(4, 0.3),
                "sync": (sync_add, 2, 3),
            }
        )

    results = vrun(main())
    assert results.ok_values() == {"task": 1, "tuple": 2, "lambda": 3, "coro": 4, "sync": 5}


def test_empty_gather(vrun) -> None:
    results = vrun(fj.gather({}))
    assert len(results) == 0
    assert results.all_ok


def test_mapping_required_and_closes_coroutines() -> None:
    coro = value_after(1, 0)

    async def main() -> None:
        await fj.gather([coro])  # type: ignore[arg-type]

    with pytest.raises(TypeError, match="mapping"):
        asyncio.run(main())
    assert coro.cr_frame is None  # closed, not left to warn "never awaited"


# -- timeouts ------------------------------------------------------------------------------


def test_per_task_timeout_is_timed_out_with_reason_timeout(vrun) -> None:
    async def main() -> fj.Results:
        results = await fj.gather(
            {
                "slow": fj.task(value_after, "late", 10, timeout=2),
                "quick": fj.task(value_after, "ok", 1, timeout=2),
            }
        )
        no_orphans()
        return results

    results = vrun(main())
    slow = results["slow"]
    assert slow.status is fj.Status.TIMED_OUT
    assert slow.reason == "timeout"
    assert isinstance(slow.error, fj.TaskTimeout)
    assert isinstance(slow.error, TimeoutError)
    assert slow.ended == 2.0
    assert results["quick"].ok


def test_run_default_timeout_and_task_override(vrun) -> None:
    async def main() -> fj.Results:
        return await fj.gather(
            {
                "default": (value_after, 1, 5),
                "longer": fj.task(value_after, 2, 5, timeout=10),
            },
            timeout=3,
        )

    results = vrun(main())
    assert results["default"].status is fj.Status.TIMED_OUT
    assert results["default"].ended == 3.0
    assert results["longer"].ok


def test_users_own_timeout_error_is_failed_not_timed_out(vrun) -> None:
    own = TimeoutError("the remote said so")

    async def main() -> fj.Results:
        return await fj.gather(
            {
                "own": fj.task(fail_after, own, 1, timeout=5),
                "own_no_timeout": (fail_after, TimeoutError("x"), 1),
            }
        )

    results = vrun(main())
    assert results["own"].status is fj.Status.FAILED
    assert results["own"].error is own
    assert results["own"].reason is None
    assert results["own_no_timeout"].status is fj.Status.FAILED


def test_asyncio_timeout_inside_task_is_the_tasks_failure(vrun) -> None:
    async def inner_timeout() -> None:
        async with asyncio.timeout(1):
            await asyncio.sleep(5)

    async def main() -> fj.Results:
        return await fj.gather({"t": fj.task(inner_timeout, timeout=10)})

    results = vrun(main())
    assert results["t"].status is fj.Status.FAILED
    assert isinstance(results["t"].error, TimeoutError)


# -- deadline ------------------------------------------------------------------------------


def test_deadline_running_timed_out_waiting_skipped(vrun) -> None:
    async def main() -> fj.Results:
        results = await fj.gather(
            {
                "done": (value_after, "d", 1),
                "running": (value_after, "r", 100),
                "waiting": (value_after, "w", 1),
            },
            limit=2,
            deadline=5,
        )
        no_orphans()
        return results

    results = vrun(main())
    assert results["done"].ok
    running = results["running"]
    assert running.status is fj.Status.TIMED_OUT
    assert running.reason == "deadline"
    assert isinstance(running.error, fj.TaskTimeout)
    assert running.ended == 5.0
    # "waiting" started when "done" freed a slot at t=1, so it finished
    assert results["waiting"].ok
    assert results["waiting"].started == 1.0


def test_deadline_never_started_is_skipped(vrun) -> None:
    async def main() -> fj.Results:
        return await fj.gather(
            {f"t{i}": (value_after, i, 4) for i in range(4)}, limit=1, deadline=10
        )

    results = vrun(main())
    assert [o.status for o in results.values()] == [
        fj.Status.OK,
        fj.Status.OK,
        fj.Status.TIMED_OUT,
        fj.Status.SKIPPED,
    ]
    skipped = results["t3"]
    assert skipped.reason == "deadline"
    assert skipped.attempts == 0
    assert skipped.started is None
    assert skipped.ended is None
    assert skipped.duration is None
    assert isinstance(skipped.error, fj.TaskSkipped)
    assert results.report.wall == 10.0


def test_deadline_returns_at_the_deadline(vrun) -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await fj.gather({"h": (asyncio.sleep, 3600)}, deadline=60)
        return loop.time() - t0

    assert vrun(main()) == 60.0


# -- fail_fast and quorum ------------------------------------------------------------------


def test_fail_fast_raises_fan_error_with_complete_results(vrun) -> None:
    boom = RuntimeError("boom")

    async def main() -> fj.FanError:
        with pytest.raises(fj.FanError) as info:
            await fj.gather(
                {
                    "ok": (value_after, 1, 1),
                    "bad": (fail_after, boom, 2),
                    "running": (value_after, 3, 10),
                    "queued": (value_after, 4, 1),
                },
                limit=3,
                on_error="fail_fast",
            )
        no_orphans()
        return info.value

    err = vrun(main())
    results = err.results
    assert list(results) == ["ok", "bad", "running", "queued"]
    assert results["ok"].ok
    assert results["bad"].status is fj.Status.FAILED
    assert results["bad"].error is boom
    # "queued" started at t=1 (when "ok" finished) and ran till t=2: cancelled, like "running"
    assert results["running"].status is fj.Status.CANCELLED
    assert results["running"].reason == "fail_fast"
    assert results["queued"].status in (fj.Status.CANCELLED, fj.Status.SKIPPED)
    assert results["queued"].reason == "fail_fast"
    assert boom in err.exceptions
    assert results["running"].ended == 2.0


def test_fail_fast_skips_never_started(vrun) -> None:
    async def main() -> fj.FanError:
        with pytest.raises(fj.FanError) as info:
            await fj.gather(
                {"bad": (fail_after, ValueError("x"), 1), "later": (value_after, 1, 1)},
                limit=1,
                on_error="fail_fast",
            )
        return info.value

    results = vrun(main()).results
    assert results["later"].status is fj.Status.SKIPPED
    assert results["later"].reason == "fail_fast"


def test_fail_fast_on_timeout(vrun) -> None:
    async def main() -> fj.FanError:
        with pytest.raises(fj.FanError) as info:
            await fj.gather(
                {"t": fj.task(value_after, 1, 10, timeout=1), "other": (value_after, 2, 5)},
                on_error="fail_fast",
            )
        return info.value

    results = vrun(main()).results
    assert results["t"].status is fj.Status.TIMED_OUT
    assert results["other"].reason == "fail_fast"


def test_collect_runs_everything_despite_failures(vrun) -> None:
    async def main() -> fj.Results:
        return await fj.gather({"bad": (fail_after, ValueError("x"), 1), "ok": (value_after, 2, 5)})

    results = vrun(main())
    assert results["ok"].ok
    assert results["bad"].status is fj.Status.FAILED


def test_quorum_stops_after_k_ok(vrun) -> None:
    async def main() -> fj.Results:
        results = await fj.gather(
            {
                "bad": (fail_after, ValueError("x"), 0.5),
                **{f"m{i}": (value_after, i, i) for i in range(1, 6)},
            },
            quorum=2,
        )
        no_orphans()
        return results

    results = vrun(main())
    assert len(results) == 6
    assert results.ok_values() == {"m1": 1, "m2": 2}
    assert results["bad"].status is fj.Status.FAILED
    for name in ("m3", "m4", "m5"):
        assert results[name].status is fj.Status.CANCELLED
        assert results[name].reason == "quorum"
        assert results[name].ended == 2.0
    assert results.report.wall == 2.0


def test_quorum_skips_queued(vrun) -> None:
    async def main() -> fj.Results:
        return await fj.gather({f"t{i}": (value_after, i, 1) for i in range(5)}, quorum=1, limit=1)

    results = vrun(main())
    assert results["t0"].ok
    assert all(
        o.status is fj.Status.SKIPPED and o.reason == "quorum"
        for n, o in results.items()
        if n != "t0"
    )


def test_quorum_larger_than_task_count_is_invalid_and_runs_nothing() -> None:
    calls: list[int] = []

    async def counted() -> None:
        calls.append(1)

    coro = counted()

    async def main() -> None:
        await fj.gather({"a": counted, "b": coro}, quorum=3)

    with pytest.raises(fj.InvalidPolicy, match="quorum"):
        asyncio.run(main())
    assert calls == []
    assert coro.cr_frame is None


# -- outer cancellation --------------------------------------------------------------------


def test_outer_cancellation_of_gather(vrun) -> None:
    rec = Recorder()
    started = asyncio.Event()

    async def blocker() -> None:
        started.set()
        await asyncio.sleep(1000)

    async def main() -> None:
        gather_task = asyncio.ensure_future(
            fj.gather(
                {
                    "done": (value_after, 1, 0),
                    "running": blocker,
                    "running2": (value_after, 2, 500),
                    "queued": (value_after, 3, 1),
                },
                limit=3,
                observers=[rec],
            )
        )
        await started.wait()
        await asyncio.sleep(1)
        gather_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gather_task
        no_orphans()
        assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]

    vrun(main())
    finished = {o.name: o for o in rec.finished()}
    assert len(rec.finished()) == 4
    assert finished["done"].ok
    assert finished["queued"].ok
    for name in ("running", "running2"):
        assert finished[name].status is fj.Status.CANCELLED
        assert finished[name].reason == "cancelled"
    run_finished = [e for e in rec.events if isinstance(e, fj.RunFinished)]
    assert len(run_finished) == 1
    assert set(run_finished[0].results) == set(finished)


def test_outer_cancellation_skips_queued(vrun) -> None:
    rec = Recorder()

    async def main() -> None:
        t = asyncio.ensure_future(
            fj.gather({f"t{i}": (value_after, i, 10) for i in range(3)}, limit=1, observers=[rec])
        )
        await asyncio.sleep(1)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        no_orphans()

    vrun(main())
    statuses = {o.name: o.status for o in rec.finished()}
    assert statuses == {
        "t0": fj.Status.CANCELLED,
        "t1": fj.Status.SKIPPED,
        "t2": fj.Status.SKIPPED,
    }


def test_task_that_cleans_up_after_cancellation_still_ends_the_run(vrun) -> None:
    # its cleanup takes less than the grace a stopped call gets (ABANDON_GRACE): waited for
    async def stubborn() -> str:
        try:
            await asyncio.sleep(100)
        except asyncio.CancelledError:
            await asyncio.sleep(0.5)  # cleanup, then give up
            raise
        return "never"

    async def main() -> fj.Results:
        results = await fj.gather({"s": stubborn}, deadline=5)
        no_orphans()
        return results

    results = vrun(main())
    assert results["s"].status is fj.Status.TIMED_OUT
    assert results["s"].reason == "deadline"
    assert results["s"].ended == 5.5


# -- fj.run ----------------------------------------------------------------------------------


def test_run_from_sync_code() -> None:
    results = fj.run({"a": (value_after, 1, 0.001), "b": lambda: 2}, limit=2)
    assert results.ok_values() == {"a": 1, "b": 2}


def test_run_inside_a_running_loop_is_a_clear_error() -> None:
    coro = value_after(1, 0)

    async def main() -> None:
        fj.run({"a": coro})

    with pytest.raises(RuntimeError, match="running event loop"):
        asyncio.run(main())
    assert coro.cr_frame is None


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="needs the main thread"
)
def test_ctrl_c_in_run_raises_interrupted_with_complete_results() -> None:
    async def press_ctrl_c() -> None:
        await asyncio.sleep(0.01)
        signal.raise_signal(signal.SIGINT)
        await asyncio.sleep(30)

    with pytest.raises(fj.Interrupted) as info:
        fj.run(
            {
                "done": lambda: "fine",
                "ctrl_c": press_ctrl_c,
                "long": (asyncio.sleep, 30),
                "queued1": (asyncio.sleep, 30),
                "queued2": (asyncio.sleep, 30),
            },
            limit=3,
        )
    assert isinstance(info.value, KeyboardInterrupt)
    results = info.value.results
    assert list(results) == ["done", "ctrl_c", "long", "queued1", "queued2"]
    assert results["done"].ok
    assert results["ctrl_c"].status is fj.Status.CANCELLED
    assert results["long"].status is fj.Status.CANCELLED
    # "done" freed its slot before the signal, so queued1 was running
    assert results["queued1"].status is fj.Status.CANCELLED
    assert results["queued2"].status is fj.Status.SKIPPED
    # the previous SIGINT handler is back
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# -- coroutines that never run ---------------------------------------------------------------


@pytest.mark.filterwarnings("error")
def test_coroutines_of_tasks_that_never_start_are_closed(vrun) -> None:
    coros = [value_after(i, 1) for i in range(5)]

    async def main() -> fj.Results:
        return await fj.gather({f"c{i}": c for i, c in enumerate(coros)}, limit=1, deadline=1.5)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = vrun(main())
        coros.clear()
        gc.collect()
    assert [o.status for o in results.values()] == [fj.Status.OK, fj.Status.TIMED_OUT] + [
        fj.Status.SKIPPED
    ] * 3
    assert not [w for w in caught if "never awaited" in str(w.message)]


@pytest.mark.filterwarnings("error")
def test_coroutines_closed_on_fail_fast_and_invalid_policy(vrun) -> None:
    async def main() -> None:
        with pytest.raises(fj.FanError):
            await fj.gather(
                {"bad": fail_after(ValueError("x"), 0), "never": value_after(1, 0)},
                limit=1,
                on_error="fail_fast",
            )
        with pytest.raises(fj.InvalidPolicy):
            await fj.gather({"never": value_after(1, 0)}, limit=0)
        with pytest.raises(fj.InvalidPolicy):
            await fj.gather({"never": fj.task(value_after(1, 0))}, deadline=0)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vrun(main())
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]


def test_results_keep_added_order_when_priorities_differ(vrun) -> None:
    """Priorities decide who starts first, never the order of the Results or the indexes."""
    rec = Recorder()

    async def main() -> tuple[fj.Results, fj.Results, fj.Results]:
        tasks = {
            "low": fj.task(value_after, "L", 1, priority=-1),
            "high": fj.task(value_after, "H", 1, priority=5),
            "mid": fj.task(value_after, "M", 1),
        }
        unlimited = await fj.gather(tasks)
        limited = await fj.gather(dict(tasks), limit=1)
        observed = await fj.gather(dict(tasks), observers=[rec])
        return unlimited, limited, observed

    for results in vrun(main()):
        assert list(results) == ["low", "high", "mid"]
        assert [o.index for o in results.values()] == [0, 1, 2]
        assert results.ok_values() == {"low": "L", "high": "H", "mid": "M"}


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="needs the main thread"
)
def test_ctrl_c_with_a_blocking_call_in_a_thread_returns_at_once() -> None:
    release = threading.Event()

    def stuck() -> str:
        release.wait(30)
        return "late"

    async def press_ctrl_c() -> None:
        await asyncio.sleep(0.05)
        signal.raise_signal(signal.SIGINT)
        await asyncio.sleep(30)

    try:
        with pytest.raises(fj.Interrupted) as info:
            fj.run({"stuck": stuck, "ctrl_c": press_ctrl_c})
        returned_while_stuck = not release.is_set()
    finally:
        release.set()
    assert returned_while_stuck
    results = info.value.results
    assert results["stuck"].status is fj.Status.CANCELLED
    assert results["stuck"].reason == "abandoned"
    assert results["ctrl_c"].reason == "cancelled"


# -- the late-binding trap ----------------------------------------------------------------------


def test_lambdas_that_all_see_the_last_loop_value_are_refused() -> None:
    calls: list[str] = []

    async def fetch(n: str) -> str:
        calls.append(n)
        return n

    names = ["amazon", "reddit", "youtube"]
    with pytest.raises(fj.InvalidPolicy) as info:
        fj.run({n: lambda: fetch(n) for n in names})  # noqa: B023 - the trap under test
    message = str(info.value)
    assert message.startswith("tasks['amazon'], tasks['reddit'] and 1 more are the same lambda")
    assert "n='youtube'" in message
    assert "`lambda n=n: fetch(n)`" in message
    assert "`(fetch, n)`" in message
    assert calls == []  # refused before anything ran
    # the same trap inside fj.task, and with a def in a plain loop
    with pytest.raises(fj.InvalidPolicy, match="the same lambda"):
        fj.run({n: fj.task(lambda: fetch(n), timeout=5) for n in names})  # noqa: B023
    tasks = {}
    for n in names:

        def one() -> Any:
            return fetch(n)  # noqa: B023

        tasks[n] = one
    with pytest.raises(fj.InvalidPolicy, match=r"the same function one\(\)"):
        fj.run(tasks)
    assert calls == []


def test_spawning_such_lambdas_in_one_loop_is_refused_at_the_second() -> None:
    calls: list[str] = []

    async def fetch(n: str) -> str:
        calls.append(n)
        return n

    async def trap() -> None:
        async with fj.Fan() as fan:
            for n in ["amazon", "reddit", "youtube"]:
                fan.spawn(n, lambda: fetch(n))  # noqa: B023 - the trap under test

    with pytest.raises(fj.InvalidPolicy, match=r"tasks\['amazon'\], tasks\['reddit'\] are the"):
        asyncio.run(trap())
    assert calls == []

    async def bound() -> fj.Results:
        async with fj.Fan() as fan:
            for n in ["amazon", "reddit"]:
                fan.spawn(n, lambda n=n: fetch(n))
            for n in ["x", "y"]:  # one lambda, each made after the last one ran
                fan.spawn(n, lambda: fetch(n))  # noqa: B023
                while n not in calls:
                    await asyncio.sleep(0)
        return fan.results

    results = asyncio.run(bound())
    assert {k: o.value for k, o in results.items()} == {
        "amazon": "amazon", "reddit": "reddit", "x": "x", "y": "y",
    }  # fmt: skip


_MODULE_LOOP = """
import forkjoin as fj

calls = []

async def fetch(n):
    calls.append(n)
    return n

names = ["amazon", "reddit", "youtube"]
URL = "http://127.0.0.1/"
tasks = {}
for n in names:
    tasks[n] = lambda: fetch(n)
same = {k: lambda: fetch(URL) for k in names}
bound = {n: lambda n=n: fetch(n) for n in names}
made = {n: fj.task(fetch, n) for n in names}
calls_only = {k: lambda: fetch.__name__ for k in names}
"""


def test_module_level_lambdas_that_all_read_the_last_global_are_refused() -> None:
    module: dict[str, Any] = {"__name__": "a_module"}  # a module's globals, as exec sees them
    exec(compile(_MODULE_LOOP, "a_module.py", "exec"), module)
    with pytest.raises(fj.InvalidPolicy) as info:
        fj.run(module["tasks"])
    message = str(info.value)
    assert message.startswith("tasks['amazon'], tasks['reddit'] and 1 more are the same lambda")
    assert "n='youtube'" in message
    assert "reads its globals when it runs" in message
    assert "`lambda n=n: fetch(n)`" in message
    assert "`(fetch, n)`" in message
    # every task the same call is the same trap (the fix is the same)
    with pytest.raises(fj.InvalidPolicy, match=r"URL='http://127\.0\.0\.1/'"):
        fj.run(module["same"])
    with pytest.raises(fj.InvalidPolicy, match="the same lambda"):
        fj.run({n: fj.task(fn, timeout=5) for n, fn in module["tasks"].items()})
    assert module["calls"] == []  # refused before anything ran
    # bound values, fj.task(fn, arg) and lambdas that read only functions run
    assert fj.run(module["bound"]).ok_values() == {n: n for n in module["names"]}
    assert fj.run(module["made"]).ok_values() == {n: n for n in module["names"]}
    assert fj.run(module["calls_only"]).ok_values() == dict.fromkeys(module["names"], "fetch")


def test_one_function_under_several_names_runs() -> None:
    module: dict[str, Any] = {"__name__": "a_module"}
    exec(compile(_MODULE_LOOP, "a_module.py", "exec"), module)
    ping = module["tasks"]["amazon"]  # the same function object each time is meant
    assert fj.run({f"hit{i}": ping for i in range(3)}).all_ok
    # one lambda made in a loop that reads only its own names
    assert fj.run({k: lambda: 1 for k in "abc"}).ok_values() == dict.fromkeys("abc", 1)


def test_closures_that_bind_their_values_run() -> None:
    async def fetch(n: str) -> str:
        return n

    def make(n: str) -> Any:
        return lambda: fetch(n)

    names = ["a", "b", "c"]
    expected = {n: n for n in names}
    assert fj.run({n: lambda n=n: fetch(n) for n in names}).ok_values() == expected  # type: ignore[misc]
    assert fj.run({n: (fetch, n) for n in names}).ok_values() == expected
    assert fj.run({n: make(n) for n in names}).ok_values() == expected  # one cell each
    # one lambda, or the same values on purpose with different code, is no trap
    assert fj.run({"only": lambda: fetch(names[0])}).ok_values() == {"only": "a"}
    same = "a"
    assert fj.run({"x": lambda: fetch(same), "y": lambda: fetch(same)}).ok_values() == {
        "x": "a",
        "y": "a",
    }
