"""Less travelled paths: big unlimited runs (batched start), cancellation of map,
timeouts of blocking calls, imap with quorum."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import forkjoin as fj
from forkjoin._deadlines import Deadlines
from forkjoin._engine import CHAIN_MAX

from .conftest import no_orphans


async def instant(i: int) -> int:
    await asyncio.sleep(0)
    return i


async def value_after(value: object, seconds: float) -> object:
    await asyncio.sleep(seconds)
    return value


async def fails_now() -> None:
    raise ValueError("first")


def test_fail_fast_in_a_large_unlimited_gather_skips_the_unstarted(vrun) -> None:
    n = 5_000

    async def main() -> fj.FanError:
        tasks: dict[str, object] = {"bad": fails_now}
        tasks.update({f"t{i}": (asyncio.sleep, 1, i) for i in range(n)})
        with pytest.raises(fj.FanError) as info:
            await fj.gather(tasks, on_error="fail_fast")
        no_orphans()
        return info.value

    results = vrun(main()).results
    assert len(results) == n + 1
    assert list(results)[:3] == ["bad", "t0", "t1"]
    counts = results.counts()
    assert counts["failed"] == 1
    assert counts.get("skipped", 0) > 0  # tasks not yet started when "bad" failed
    assert counts.get("cancelled", 0) + counts["skipped"] == n
    assert {o.reason for n_, o in results.items() if n_ != "bad"} == {"fail_fast"}


def test_quorum_in_a_large_unlimited_gather(vrun) -> None:
    n = 3_000

    async def main() -> fj.Results:
        results = await fj.gather({f"t{i}": (instant, i) for i in range(n)}, quorum=10)
        no_orphans()
        return results

    results = vrun(main())
    assert len(results) == n
    assert len(results.ok_values()) == 10
    assert {o.reason for o in results.failures().values()} == {"quorum"}


def test_large_unlimited_gather_outer_cancellation(vrun) -> None:
    async def main() -> None:
        t = asyncio.ensure_future(fj.gather({f"t{i}": (asyncio.sleep, 5) for i in range(3_000)}))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        no_orphans()

    vrun(main())


def test_deadline_in_a_large_unlimited_gather(vrun) -> None:
    async def main() -> fj.Results:
        return await fj.gather(
            {f"t{i}": (asyncio.sleep, i % 3, i) for i in range(3_000)}, deadline=1.5
        )

    results = vrun(main())
    for name, o in results.items():
        i = int(name[1:])
        if i % 3 < 1.5:
            assert o.value == i
        else:
            assert o.status is fj.Status.TIMED_OUT
            assert o.reason == "deadline"


def test_outer_cancellation_of_map(vrun) -> None:
    running = [0]

    async def work(i: int) -> int:
        running[0] += 1
        try:
            await asyncio.sleep(10)
        finally:
            running[0] -= 1
        return i

    async def main() -> None:
        t = asyncio.ensure_future(fj.map(work, range(100), limit=7))
        await asyncio.sleep(15)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        no_orphans()
        assert running[0] == 0

    vrun(main())


def test_outer_cancellation_of_map_reduce_with_observers(vrun) -> None:
    finished: list[int] = []

    class Obs:
        def on_event(self, e: fj.Event) -> None:
            if isinstance(e, fj.TaskFinished):
                finished.append(e.outcome.index)

    async def main() -> None:
        t = asyncio.ensure_future(
            fj.map_reduce(
                asyncio.sleep, [10] * 100, lambda a, _: a + 1, 0, limit=5, observers=[Obs()]
            )
        )
        await asyncio.sleep(25)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        no_orphans()

    vrun(main())
    # 10 finished by t=20, 5 more were running when the cancel came
    assert sorted(finished) == list(range(15))


def test_timeout_of_a_blocking_call_does_not_wait_for_the_thread() -> None:
    release = threading.Event()

    def blocked() -> str:
        release.wait(30)
        return "late"

    async def main() -> fj.Results:
        return await fj.gather({"b": fj.task(blocked, timeout=0.1)})

    t0 = time.monotonic()
    try:
        results = asyncio.run(main())
        returned_while_blocked = not release.is_set()
    finally:
        release.set()
    assert returned_while_blocked
    assert time.monotonic() - t0 < 10
    assert results["b"].status is fj.Status.TIMED_OUT
    assert results["b"].reason in ("timeout", "abandoned")


def test_imap_with_quorum(vrun) -> None:
    async def main() -> list[fj.Outcome]:
        out = [o async for o in fj.imap(asyncio.sleep, range(1, 50), limit=5, quorum=3)]
        no_orphans()
        return out

    outcomes = vrun(main())
    assert sum(o.ok for o in outcomes) == 3
    assert {o.reason for o in outcomes if not o.ok} <= {"quorum"}


def test_imap_with_quorum_and_observers(vrun) -> None:
    class Obs:
        def on_event(self, e: fj.Event) -> None:
            pass

    async def main() -> list[fj.Outcome]:
        outcomes = fj.imap(asyncio.sleep, range(1, 50), limit=5, quorum=3, observers=[Obs()])
        return [o async for o in outcomes]

    outcomes = vrun(main())
    assert sum(o.ok for o in outcomes) == 3


def test_a_freed_slot_is_refilled_on_the_finished_tasks_asyncio_task(vrun) -> None:
    # a task started when another finishes runs on that one's asyncio Task (no new Task,
    # no loop pass before its first step): n tasks need about limit + n/64 Tasks, not n
    n, limit = 300, 3
    seen: list[asyncio.Task[object]] = []
    running = 0
    peak = 0

    async def note(i: int) -> int:
        nonlocal running, peak
        task = asyncio.current_task()
        assert task is not None
        seen.append(task)
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return i

    results = vrun(fj.gather({str(i): (note, i) for i in range(n)}, limit=limit))
    assert [o.value for o in results.values()] == list(range(n))
    assert peak == limit
    assert limit <= len(set(seen)) <= limit + n // CHAIN_MAX + 1


def test_a_task_cancelling_its_own_asyncio_task_does_not_cancel_the_next(vrun) -> None:
    # the request is never delivered (it returns first) and 3.11 cannot take it back:
    # the next task must not inherit it
    async def cancels_itself() -> str:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        return "returned first"

    async def main() -> fj.Results:
        results = await fj.gather(
            {"self": cancels_itself, "b": (value_after, "b", 1), "c": (value_after, "c", 1)},
            limit=1,
        )
        no_orphans()
        return results

    results = vrun(main())
    assert {n: o.status for n, o in results.items()} == dict.fromkeys(
        ["self", "b", "c"], fj.Status.OK
    )
    assert results["b"].value == "b"
    assert results["c"].value == "c"


def test_tasks_that_never_suspend_do_not_hold_the_loop_for_the_whole_run(vrun) -> None:
    n = 1_000
    done: list[int] = []

    async def no_await(i: int) -> int:
        done.append(i)
        return i

    async def main() -> int:
        async def bystander() -> int:
            await asyncio.sleep(0)
            return len(done)

        seen = asyncio.ensure_future(bystander())
        results = await fj.gather({str(i): (no_await, i) for i in range(n)}, limit=1)
        assert len(results.ok_values()) == n
        return await seen

    # one asyncio Task runs at most CHAIN_MAX + 1 tasks back to back, then the loop turns
    assert vrun(main()) <= CHAIN_MAX + 1


def test_calls_sharing_a_timeout_each_expire_at_their_own_deadline(vrun) -> None:
    # one timeout value: one FIFO of running calls and one loop timer for the oldest
    async def main() -> fj.Results:
        async with fj.Fan(timeout=3) as fan:
            fan.spawn("x", value_after, "x", 10)  # starts at 0: times out at 3
            await asyncio.sleep(1)
            fan.spawn("y", value_after, "y", 10)  # starts at 1: times out at 4
            await asyncio.sleep(0.5)
            fan.spawn("z", value_after, "z", 0.5)  # starts at 1.5, ends at 2 (between them)
        no_orphans()
        return fan.results

    r = vrun(main())
    assert r["z"].ok
    assert r["z"].ended == pytest.approx(2.0)
    for name, end in (("x", 3.0), ("y", 4.0)):
        assert r[name].status is fj.Status.TIMED_OUT
        assert r[name].reason == "timeout"
        assert r[name].ended == pytest.approx(end)


def test_finished_calls_do_not_pile_up_under_a_long_timeout(vrun) -> None:
    # calls that end long before their deadline leave the FIFO as they end, so a long
    # run with a generous timeout holds about `limit` entries, not one per call so far
    n, limit = 2_000, 10
    sizes: list[int] = []

    async def main() -> None:
        deadlines = Deadlines(asyncio.get_running_loop(), 60.0)
        task = asyncio.current_task()
        assert task is not None
        running: list[object] = []
        for _ in range(n):
            running.append(deadlines.start(task))
            if len(running) == limit:
                await asyncio.sleep(0.001)
                for call in running:
                    deadlines.end(call)  # type: ignore[arg-type]
                running.clear()
            sizes.append(len(deadlines))
        deadlines.close()

    vrun(main())
    assert max(sizes) <= 2 * limit
