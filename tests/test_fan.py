"""fj.Fan: streaming, dynamic fan-out, limits, priorities, sync tasks in threads."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import forkjoin as fj

from .conftest import no_orphans


async def value_after(value: Any, seconds: float) -> Any:
    await asyncio.sleep(seconds)
    return value


# -- streaming and dynamic fan-out ---------------------------------------------------------


def test_as_completed_streams_in_completion_order(vrun) -> None:
    async def main() -> tuple[list[str], fj.Results]:
        seen: list[str] = []
        async with fj.Fan() as fan:
            fan.spawn("c", value_after, "C", 3)
            fan.spawn("a", value_after, "A", 1)
            fan.spawn("b", value_after, "B", 2)
            async for outcome in fan.as_completed():
                seen.append(outcome.name)
                assert outcome.value == outcome.name.upper()
        no_orphans()
        return seen, fan.results

    seen, results = vrun(main())
    assert seen == ["a", "b", "c"]
    assert list(results) == ["c", "a", "b"]  # results keep the added order


def test_spawn_from_the_as_completed_loop_body(vrun) -> None:
    async def main() -> tuple[list[str], fj.Results]:
        seen: list[str] = []
        async with fj.Fan(limit=2) as fan:
            fan.spawn("root", value_after, [1, 2, 3], 1)
            async for outcome in fan.as_completed():
                seen.append(outcome.name)
                if outcome.name == "root":
                    for i in outcome.value:
                        fan.spawn(f"child{i}", value_after, i * 10, i)
        no_orphans()
        return seen, fan.results

    seen, results = vrun(main())
    assert seen == ["root", "child1", "child2", "child3"]
    assert results.ok_values() == {"root": [1, 2, 3], "child1": 10, "child2": 20, "child3": 30}


def test_current_fan_spawn_from_inside_a_running_task(vrun) -> None:
    async def parent(depth: int) -> str:
        fan = fj.current_fan()
        if depth < 3:
            fan.spawn(f"level{depth + 1}", parent, depth + 1)
        await asyncio.sleep(1)
        return f"done{depth}"

    async def main() -> fj.Results:
        async with fj.Fan() as fan:
            fan.spawn("level0", parent, 0)
        no_orphans()
        return fan.results

    results = vrun(main())
    assert results.ok_values() == {f"level{i}": f"done{i}" for i in range(4)}


def test_current_fan_in_a_sync_task_thread(vrun) -> None:
    def sync_parent() -> str:
        fj.current_fan()  # the task's context is copied into its thread
        return "ok"

    async def main() -> fj.Results:
        async with fj.Fan() as fan:
            fan.spawn("p", sync_parent)
            assert fj.current_fan() is fan
        return fan.results

    assert vrun(main())["p"].value == "ok"


def test_gather_task_can_spawn_via_current_fan(vrun) -> None:
    async def parent() -> int:
        fj.current_fan().spawn("child", value_after, "c", 1)
        return 1

    results = vrun(fj.gather({"parent": parent}))
    assert results.ok_values() == {"parent": 1, "child": "c"}


def test_current_fan_outside_a_run_raises(vrun) -> None:
    with pytest.raises(RuntimeError, match="current_fan"):
        fj.current_fan()

    async def main() -> None:
        async with fj.Fan():
            pass
        with pytest.raises(RuntimeError, match="current_fan"):
            fj.current_fan()

    vrun(main())


def test_spawn_after_the_run_ended_raises_fan_closed(vrun) -> None:
    async def main() -> None:
        async with fj.Fan() as fan:
            fan.spawn("a", value_after, 1, 0)
        assert fan.closed
        coro = value_after(2, 0)
        with pytest.raises(fj.FanClosed):
            fan.spawn("b", coro)
        coro.close()
        with pytest.raises(fj.FanClosed):
            fan.spawn("c", value_after, 1, 0)
        assert list(fan.results) == ["a"]

    vrun(main())


def test_spawn_before_entering_is_an_error() -> None:
    fan = fj.Fan()
    with pytest.raises(RuntimeError, match="async with"):
        fan.spawn("a", value_after, 1, 0)


def test_duplicate_task_name(vrun) -> None:
    async def main() -> fj.Results:
        async with fj.Fan() as fan:
            fan.spawn("a", value_after, 1, 1)
            with pytest.raises(fj.DuplicateTaskName, match="'a'"):
                fan.spawn("a", value_after, 2, 1)
        return fan.results

    results = vrun(main())
    assert results.ok_values() == {"a": 1}


def test_fan_fail_fast_raises_on_exit(vrun) -> None:
    async def bad() -> None:
        await asyncio.sleep(1)
        raise KeyError("k")

    async def main() -> fj.Fan:
        fan = fj.Fan(on_error="fail_fast")

        async def body() -> None:
            async with fan:
                fan.spawn("bad", bad)
                fan.spawn("slow", value_after, 1, 10)

        with pytest.raises(fj.FanError) as info:
            await body()
        no_orphans()
        assert info.value.results is fan.results
        return fan

    results = vrun(main()).results
    assert results["bad"].status is fj.Status.FAILED
    assert results["slow"].status is fj.Status.CANCELLED
    assert results["slow"].reason == "fail_fast"


def test_exception_in_as_completed_body_ends_every_task(vrun) -> None:
    async def main() -> fj.Fan:
        fan = fj.Fan(limit=2)

        async def body() -> None:
            async with fan:
                for i in range(4):
                    fan.spawn(f"t{i}", value_after, i, i + 1)
                async for outcome in fan.as_completed():
                    assert outcome.name == "t0"
                    raise LookupError("consumer gave up")

        with pytest.raises(LookupError, match="consumer"):
            await body()
        no_orphans()
        return fan

    fan = vrun(main())
    results = fan.results
    assert list(results) == ["t0", "t1", "t2", "t3"]
    assert results["t0"].ok
    assert results["t1"].status is fj.Status.CANCELLED
    # t2 was admitted when t0 freed its slot, but had not run a step when the consumer raised
    assert results["t2"].status in (fj.Status.CANCELLED, fj.Status.SKIPPED)
    assert results["t3"].status is fj.Status.SKIPPED
    assert {results[n].reason for n in ("t1", "t2", "t3")} == {"aborted"}


def test_outer_cancellation_of_async_with_fan(vrun) -> None:
    fans: list[fj.Fan] = []

    async def body() -> None:
        async with fj.Fan(limit=2) as fan:
            fans.append(fan)
            fan.spawn("quick", value_after, 1, 1)
            fan.spawn("slow", value_after, 2, 100)
            fan.spawn("queued", value_after, 3, 100)
            fan.spawn("queued2", value_after, 4, 100)
            async for _ in fan.as_completed():
                pass

    async def main() -> None:
        t = asyncio.ensure_future(body())
        await asyncio.sleep(5)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        no_orphans()

    vrun(main())
    results = fans[0].results
    assert len(results) == 4
    assert results["quick"].ok
    assert results["slow"].status is fj.Status.CANCELLED
    assert results["slow"].reason == "cancelled"
    assert results["queued"].status is fj.Status.CANCELLED  # started at t=1
    assert results["queued2"].status is fj.Status.SKIPPED
    assert results["queued2"].reason == "cancelled"


def test_cancel_while_draining_on_exit(vrun) -> None:
    """A cancellation that lands while __aexit__ waits for the tasks still ends them all."""
    fans: list[fj.Fan] = []

    async def body() -> None:
        async with fj.Fan() as fan:
            fans.append(fan)
            fan.spawn("slow", value_after, 1, 100)

    async def main() -> None:
        t = asyncio.ensure_future(body())
        await asyncio.sleep(1)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        no_orphans()

    vrun(main())
    assert fans[0].results["slow"].status is fj.Status.CANCELLED


def test_fan_runs_once(vrun) -> None:
    async def main() -> None:
        fan = fj.Fan()
        async with fan:
            pass
        with pytest.raises(RuntimeError, match="runs once"):
            async with fan:
                pass

    vrun(main())


# -- limits and priorities -------------------------------------------------------------------


class Gauge:
    """Counts tasks running at once, overall and per group; remembers the peaks."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.group_running: dict[str | None, int] = {}
        self.group_peak: dict[str | None, int] = {}
        self.starts: list[str] = []

    async def work(self, name: str, group: str | None, seconds: float) -> str:
        self.starts.append(name)
        self.running += 1
        self.peak = max(self.peak, self.running)
        g = self.group_running[group] = self.group_running.get(group, 0) + 1
        self.group_peak[group] = max(self.group_peak.get(group, 0), g)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.running -= 1
            self.group_running[group] -= 1
        return name


def test_limit_and_group_limits_never_exceeded(vrun) -> None:
    gauge = Gauge()

    async def main() -> fj.Results:
        async with fj.Fan(limit=5, limits={"a": 2, "b": 1}) as fan:
            for i in range(30):
                group = ("a", "b", None)[i % 3]
                fan.spawn(f"t{i}", gauge.work, f"t{i}", group, 1 + i % 4, group=group)
        return fan.results

    results = vrun(main())
    assert results.all_ok
    assert gauge.peak == 5
    assert gauge.group_peak["a"] == 2
    assert gauge.group_peak["b"] == 1
    assert results.report.peak_concurrency == 5


def test_group_limit_without_overall_limit(vrun) -> None:
    gauge = Gauge()

    async def main() -> fj.Results:
        return await fj.gather(
            {
                f"t{i}": fj.task(
                    gauge.work, f"t{i}", "g" if i < 6 else None, 1, group="g" if i < 6 else None
                )
                for i in range(10)
            },
            limits={"g": 2},
        )

    results = vrun(main())
    assert gauge.group_peak["g"] == 2
    assert gauge.group_peak[None] == 4  # ungrouped tasks are not held back
    assert results["t4"].started == 2.0  # the third pair of the group started at t=2
    assert results["t9"].started == 0.0


def test_group_limit_none_means_unlimited(vrun) -> None:
    """``limits={"g": None}`` reads like ``limit=None``: no limit for that group (it used to
    be accepted and then crash admission with a TypeError)."""
    gauge = Gauge()

    async def main() -> fj.Results:
        tasks = {f"t{i}": fj.task(gauge.work, f"t{i}", "g", 1, group="g") for i in range(4)}
        return await fj.gather(tasks, limit=3, limits={"g": None, "h": 1})

    results = vrun(main())
    assert results.all_ok
    assert gauge.group_peak["g"] == 3


def test_limit_holds_with_dynamic_spawns(vrun) -> None:
    gauge = Gauge()

    async def spawner(n: int) -> None:
        await gauge.work(f"s{n}", None, 1)
        if n < 20:
            fan = fj.current_fan()
            fan.spawn(f"s{n}a", spawner, 2 * n + 100)
            fan.spawn(f"s{n}b", gauge.work, f"x{n}", None, 2)

    async def main() -> fj.Results:
        async with fj.Fan(limit=3) as fan:
            for i in range(5):
                fan.spawn(f"root{i}", spawner, i)
        return fan.results

    results = vrun(main())
    assert results.all_ok
    assert gauge.peak == 3


def test_waiting_tasks_start_by_priority_then_fifo(vrun) -> None:
    gauge = Gauge()
    priorities = [0, 5, 1, 5, -2, 1, 0, 9, 5]

    async def main() -> None:
        async with fj.Fan(limit=1) as fan:
            fan.spawn("blocker", gauge.work, "blocker", None, 1)
            await asyncio.sleep(0.5)  # the blocker is running; the rest will queue
            for i, p in enumerate(priorities):
                fan.spawn(f"p{i}", gauge.work, f"p{i}", None, 1, priority=p)

    vrun(main())
    expected = sorted(range(len(priorities)), key=lambda i: (-priorities[i], i))
    assert gauge.starts == ["blocker"] + [f"p{i}" for i in expected]


def test_gather_priority_order_under_limit_one(vrun) -> None:
    gauge = Gauge()
    priorities = {"low": -1, "mid1": 0, "high": 3, "mid2": 0, "top": 7}

    async def main() -> None:
        await fj.gather(
            {n: fj.task(gauge.work, n, None, 1, priority=p) for n, p in priorities.items()},
            limit=1,
        )

    vrun(main())
    assert gauge.starts == ["top", "high", "mid1", "mid2", "low"]


def test_priority_within_a_group(vrun) -> None:
    gauge = Gauge()

    async def main() -> None:
        await fj.gather(
            {
                "g-low": fj.task(gauge.work, "g-low", "g", 1, group="g", priority=0),
                "g-high": fj.task(gauge.work, "g-high", "g", 1, group="g", priority=2),
                "g-mid": fj.task(gauge.work, "g-mid", "g", 1, group="g", priority=1),
            },
            limits={"g": 1},
        )

    vrun(main())
    assert gauge.starts == ["g-high", "g-mid", "g-low"]


# -- sync callables in threads ---------------------------------------------------------------


def test_sync_tasks_run_in_worker_threads_never_on_the_loop(vrun) -> None:
    def where() -> int:
        return threading.get_ident()

    async def main() -> tuple[int, fj.Results]:
        results = await fj.gather({f"s{i}": where for i in range(5)}, limit=2)
        return threading.get_ident(), results

    loop_thread, results = vrun(main())
    idents = set(results.ok_values().values())
    assert loop_thread not in idents
    assert 1 <= len(idents) <= 2


def test_sync_tasks_get_as_many_threads_as_the_limit(vrun) -> None:
    barrier = threading.Barrier(8, timeout=10)

    def meet(i: int) -> int:
        barrier.wait()  # only returns once all 8 are blocked here at the same time
        return i

    async def main() -> fj.Results:
        return await fj.gather({f"s{i}": (meet, i) for i in range(8)}, limit=8)

    results = vrun(main())
    assert results.all_ok, results.failures()
    assert not barrier.broken


def test_sync_tasks_without_limit_are_not_capped_at_cpu_count(vrun) -> None:
    n = 24  # more than the default executor's min(32, cpus + 4) on a small machine
    barrier = threading.Barrier(n, timeout=10)

    async def main() -> fj.Results:
        return await fj.gather({f"s{i}": barrier.wait for i in range(n)})

    assert vrun(main()).all_ok


def test_sync_fn_returning_a_coroutine_is_awaited(vrun) -> None:
    def make() -> Any:
        assert threading.current_thread() is not threading.main_thread()
        return value_after("from coro", 1)

    async def main() -> fj.Results:
        return await fj.gather({"lam": lambda: value_after("lam", 1), "sync": make})

    results = vrun(main())
    assert results.ok_values() == {"lam": "lam", "sync": "from coro"}


def test_a_coroutine_object_cannot_be_retried(vrun) -> None:
    """A coroutine object runs once: a retry (its own or the run's) would silently not
    happen, so it is refused at the start, naming the task and the fix."""
    calls: list[int] = []

    async def once() -> None:
        calls.append(1)
        raise ConnectionError("x")

    with pytest.raises(fj.InvalidPolicy, match="pass the function"):
        fj.task(once(), retry=fj.Retry(attempts=5, backoff=0))

    async def main() -> fj.Results:
        with pytest.raises(fj.InvalidPolicy, match=r"task 'coro'.*pass the function"):
            await fj.gather({"coro": once(), "fn": once}, retry=fj.Retry(attempts=3))
        assert calls == []  # nothing ran
        return await fj.gather(
            {"coro": fj.task(once(), retry=False), "fn": once},
            retry=fj.Retry(attempts=3, backoff=0),
        )

    results = vrun(main())
    assert results["coro"].attempts == 1
    assert results["fn"].attempts == 3
    assert len(calls) == 4


def test_stuck_sync_task_is_abandoned_at_the_deadline() -> None:
    release = threading.Event()
    entered = threading.Event()

    def stuck() -> str:
        entered.set()
        release.wait(30)
        return "late"

    async def main() -> fj.Results:
        results = await fj.gather({"stuck": stuck, "fine": (value_after, 1, 0)}, deadline=0.2)
        no_orphans()
        return results

    t0 = time.monotonic()
    try:
        results = asyncio.run(main())
        elapsed = time.monotonic() - t0
        returned_while_stuck = not release.is_set()
    finally:
        release.set()
    assert entered.is_set()
    assert returned_while_stuck  # the return did not wait for the thread
    assert elapsed < 10  # generous: deadline + a small grace in practice
    stuck_outcome = results["stuck"]
    assert stuck_outcome.status is fj.Status.TIMED_OUT
    assert stuck_outcome.reason == "abandoned"
    assert results["fine"].ok


def test_stuck_sync_task_abandoned_on_fail_fast() -> None:
    release = threading.Event()

    def stuck() -> None:
        release.wait(30)

    async def bad() -> None:
        await asyncio.sleep(0.05)
        raise ValueError("x")

    async def main() -> fj.FanError:
        with pytest.raises(fj.FanError) as info:
            await fj.gather({"stuck": stuck, "bad": bad}, on_error="fail_fast")
        no_orphans()
        return info.value

    try:
        err = asyncio.run(main())
        returned_while_stuck = not release.is_set()
    finally:
        release.set()
    assert returned_while_stuck
    assert err.results["stuck"].status is fj.Status.CANCELLED
    assert err.results["stuck"].reason == "abandoned"


def test_spawn_from_a_sync_task_in_its_worker_thread() -> None:
    """current_fan().spawn() from a sync task's thread hands the spawn to the loop thread:
    the child starts at once (the loop is woken), errors still raise in the caller."""
    child_ran = threading.Event()

    async def child() -> str:
        child_ran.set()
        return "c"

    def parent() -> bool:
        fan = fj.current_fan()
        fan.spawn("child", child)
        with pytest.raises(fj.DuplicateTaskName):
            fan.spawn("child", child)
        return child_ran.wait(10)  # the child runs on the loop while this thread waits

    results = fj.run({"parent": parent}, deadline=30)
    assert results["parent"].value is True
    assert results["child"].value == "c"


def test_spawn_from_a_thread_in_debug_mode(vrun) -> None:
    def parent() -> str:
        fj.current_fan().spawn("child", value_after, "c", 1)
        return "p"

    async def main() -> fj.Results:
        asyncio.get_running_loop().set_debug(True)  # flags non-thread-safe loop calls
        async with fj.Fan(deadline=30) as fan:
            fan.spawn("parent", parent)
        return fan.results

    results = vrun(main())
    assert results.ok_values() == {"parent": "p", "child": "c"}
