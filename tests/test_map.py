"""fj.map / fj.imap / fj.map_reduce: lazy input, order, failures, no orphans."""

from __future__ import annotations

import asyncio
import contextlib
import operator
import random
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import forkjoin as fj

from .conftest import no_orphans

N = 1_000_000
LIMIT = 100


class Meter:
    """An instrumented lazy input: counts items pulled, calls running and calls done."""

    def __init__(self, n: int = N) -> None:
        self.n = n
        self.pulled = 0
        self.done = 0
        self.running = 0
        self.peak_running = 0
        self.max_ahead = 0  # most items pulled but whose call had not finished yet

    def items(self) -> Iterator[int]:
        for i in range(self.n):
            self.pulled += 1
            self.max_ahead = max(self.max_ahead, self.pulled - self.done)
            yield i

    async def aitems(self) -> AsyncIterator[int]:
        for i in range(self.n):
            await asyncio.sleep(0)
            self.pulled += 1
            self.max_ahead = max(self.max_ahead, self.pulled - self.done)
            yield i

    async def square(self, i: int) -> int:
        self.running += 1
        self.peak_running = max(self.peak_running, self.running)
        try:
            await asyncio.sleep(1)  # virtual time
        finally:
            self.running -= 1
            self.done += 1
        return i * i


async def square_after(i: int, seconds: float = 0.0) -> int:
    await asyncio.sleep(seconds)
    return i * i


# -- map -----------------------------------------------------------------------------------


def test_map_values_in_input_order_despite_random_delays(vrun) -> None:
    rng = random.Random(7)
    delays = [rng.uniform(0, 5) for _ in range(300)]

    async def work(i: int) -> str:
        await asyncio.sleep(delays[i])
        return f"v{i}"

    async def main() -> list[str]:
        values = await fj.map(work, range(300), limit=17)
        no_orphans()
        return values

    assert vrun(main()) == [f"v{i}" for i in range(300)]


def test_map_over_generator_async_iterable_and_sync_fn(vrun) -> None:
    async def agen() -> AsyncIterator[int]:
        for i in range(50):
            await asyncio.sleep(0)
            yield i

    def sync_square(i: int) -> int:
        assert threading.current_thread() is not threading.main_thread()
        return i * i

    async def main() -> tuple[list[int], list[int], list[int]]:
        a = await fj.map(square_after, (i for i in range(50)), limit=7)
        b = await fj.map(square_after, agen(), limit=7)
        c = await fj.map(sync_square, range(50), limit=4)
        return a, b, c

    expected = [i * i for i in range(50)]
    assert vrun(main()) == (expected, expected, expected)


def test_map_without_limit_and_empty_input(vrun) -> None:
    async def main() -> tuple[list[int], list[int]]:
        return await fj.map(square_after, range(10)), await fj.map(square_after, [])

    assert vrun(main()) == ([i * i for i in range(10)], [])


def test_map_limit_never_exceeded(vrun) -> None:
    meter = Meter(500)
    assert vrun(fj.map(meter.square, meter.items(), limit=13)) == [i * i for i in range(500)]
    assert meter.peak_running == 13


def test_map_pulls_lazily_from_a_million_item_generator(vrun) -> None:
    """The input is pulled only as calls finish; a failure stops the pulling."""
    meter = Meter()

    async def square_or_fail(i: int) -> int:
        if i == 5_000:
            raise ValueError("stop here")
        return await meter.square(i)

    async def main() -> fj.FanError:
        with pytest.raises(fj.FanError) as info:
            await fj.map(square_or_fail, meter.items(), limit=LIMIT)
        no_orphans()
        return info.value

    err = vrun(main())
    assert meter.max_ahead <= LIMIT + 1
    assert meter.pulled <= 5_000 + LIMIT + 1
    assert meter.peak_running == LIMIT
    assert err.results["5000"].status is fj.Status.FAILED
    # only the items that were not ok are carried: the failure and the calls it cancelled
    others = [o for n, o in err.results.items() if n != "5000"]
    assert len(others) == LIMIT - 1
    assert {(o.status, o.reason) for o in others} == {(fj.Status.CANCELLED, "fail_fast")}
    assert all(4_900 <= o.index < 5_100 for o in others)


def test_map_fail_fast_by_default(vrun) -> None:
    calls: list[int] = []

    async def work(i: int) -> int:
        calls.append(i)
        await asyncio.sleep(i)
        if i == 3:
            raise KeyError("three")
        return i

    async def main() -> fj.FanError:
        with pytest.raises(fj.FanError) as info:
            await fj.map(work, range(100), limit=5)
        no_orphans()
        return info.value

    err = vrun(main())
    assert err.results["3"].status is fj.Status.FAILED
    assert isinstance(err.results["3"].error, KeyError)
    cancelled = [o for o in err.results.values() if o.status is fj.Status.CANCELLED]
    assert cancelled
    assert {o.reason for o in cancelled} == {"fail_fast"}
    assert max(calls) < 10  # the rest of the input was never pulled


def test_map_collect_runs_everything_then_raises(vrun) -> None:
    calls: list[int] = []

    async def work(i: int) -> int:
        calls.append(i)
        await asyncio.sleep(1)
        if i % 10 == 0:
            raise ValueError(i)
        return i

    async def main() -> fj.FanError:
        with pytest.raises(fj.FanError) as info:
            await fj.map(work, range(50), limit=5, on_error="collect")
        return info.value

    err = vrun(main())
    assert sorted(calls) == list(range(50))
    assert list(err.results) == ["0", "10", "20", "30", "40"]
    assert len(err.exceptions) == 5


def test_map_deadline_with_timeout_and_retry_path(vrun) -> None:
    meter = Meter(1000)

    async def main() -> fj.FanError:
        with pytest.raises(fj.FanError) as info:
            await fj.map(meter.square, meter.items(), limit=10, deadline=5.5, timeout=100)
        no_orphans()
        return info.value

    err = vrun(main())
    assert meter.pulled <= 60 + 10 + 1
    assert all(o.status is fj.Status.TIMED_OUT for o in err.results.values())
    assert {o.reason for o in err.results.values()} == {"deadline"}
    assert len(err.results) == 10


def test_map_input_error_propagates(vrun) -> None:
    def broken() -> Iterator[int]:
        yield 1
        raise OSError("disk")

    async def main() -> None:
        with pytest.raises(OSError, match="disk"):
            await fj.map(square_after, broken(), limit=2)
        no_orphans()

    vrun(main())


# -- imap ----------------------------------------------------------------------------------


def test_imap_break_early_stops_pulling_and_leaves_no_orphans(vrun) -> None:
    meter = Meter()

    async def main() -> int:
        taken = 0
        outcomes = fj.imap(meter.square, meter.items(), limit=LIMIT)
        async with contextlib.aclosing(outcomes):
            async for outcome in outcomes:
                assert outcome.ok
                taken += 1
                # outcomes waiting for the consumer are bounded too: O(limit), not O(items)
                assert meter.pulled - taken <= 3 * LIMIT + 1
                if taken == 1_000:
                    break
        no_orphans()  # aclosing: every call in flight has ended when the block exits
        pulled = meter.pulled
        await asyncio.sleep(10)  # nothing keeps pulling in the background
        assert meter.pulled == pulled
        no_orphans()
        return pulled

    pulled = vrun(main())
    assert pulled <= 1_000 + 3 * LIMIT + 1
    assert meter.max_ahead <= 3 * LIMIT + 1
    assert meter.peak_running == LIMIT


def test_imap_plain_break_is_cleaned_up_by_the_loop(vrun) -> None:
    """Without aclosing(), the abandoned generator is closed by asyncio's async-generator
    finaliser on the next loop passes; the calls in flight are cancelled then."""
    meter = Meter()

    async def main() -> None:
        async for o in fj.imap(meter.square, meter.items(), limit=LIMIT):
            if o.index >= 100:
                break
        for _ in range(5):
            await asyncio.sleep(0)
        no_orphans()
        pulled = meter.pulled
        await asyncio.sleep(10)
        assert meter.pulled == pulled

    vrun(main())
    assert meter.running == 0
    assert meter.pulled <= 3 * LIMIT + 101


def test_imap_async_iterable_is_pulled_lazily(vrun) -> None:
    meter = Meter()

    async def main() -> None:
        taken = 0
        async with contextlib.aclosing(fj.imap(meter.square, meter.aitems(), limit=LIMIT)) as it:
            async for _ in it:
                taken += 1
                if taken == 500:
                    break
        no_orphans()

    vrun(main())
    assert meter.pulled <= 500 + 3 * LIMIT + 1


def test_imap_keys_outcomes_by_index(vrun) -> None:
    rng = random.Random(3)
    delays = [rng.uniform(0, 3) for _ in range(200)]

    async def work(i: int) -> int:
        await asyncio.sleep(delays[i])
        return -i

    async def main() -> list[fj.Outcome]:
        return [o async for o in fj.imap(work, range(200), limit=9)]

    outcomes = vrun(main())
    assert sorted(o.index for o in outcomes) == list(range(200))
    for o in outcomes:
        assert o.value == -o.index
        assert o.name == str(o.index)
    ends = [o.ended for o in outcomes]
    assert ends == sorted(ends)  # completion order


def test_imap_ordered_yields_in_input_order(vrun) -> None:
    rng = random.Random(5)
    delays = [rng.uniform(0, 3) for _ in range(200)]

    async def work(i: int) -> int:
        await asyncio.sleep(delays[i])
        return i * 2

    async def main() -> list[fj.Outcome]:
        return [o async for o in fj.imap(work, range(200), limit=9, ordered=True)]

    outcomes = vrun(main())
    assert [o.index for o in outcomes] == list(range(200))
    assert [o.value for o in outcomes] == [2 * i for i in range(200)]


def test_imap_ordered_is_lazy_too(vrun) -> None:
    meter = Meter()

    async def main() -> None:
        outcomes = fj.imap(meter.square, meter.items(), limit=LIMIT, ordered=True)
        async with contextlib.aclosing(outcomes):
            async for o in outcomes:
                if o.index == 999:
                    break
        no_orphans()

    vrun(main())
    assert meter.pulled <= 1_000 + 3 * LIMIT + 1


def test_imap_collects_failures_as_outcomes(vrun) -> None:
    async def work(i: int) -> int:
        await asyncio.sleep(1)
        if i == 2:
            raise ValueError("two")
        return i

    async def main() -> dict[int, fj.Outcome]:
        return {o.index: o async for o in fj.imap(work, range(5), limit=2)}

    outcomes = vrun(main())
    assert len(outcomes) == 5
    assert outcomes[2].status is fj.Status.FAILED
    assert all(outcomes[i].ok for i in (0, 1, 3, 4))


def test_imap_consumer_exception_leaves_no_orphans(vrun) -> None:
    meter = Meter(1000)

    async def consume() -> None:
        async with contextlib.aclosing(fj.imap(meter.square, meter.items(), limit=10)) as it:
            async for _ in it:
                raise RuntimeError("consumer")

    async def main() -> None:
        with pytest.raises(RuntimeError, match="consumer"):
            await consume()
        no_orphans()

    vrun(main())
    assert meter.pulled <= 10 + 3 * 10 + 1


def test_imap_outer_cancellation(vrun) -> None:
    meter = Meter(1000)

    async def consume() -> None:
        async for _ in fj.imap(meter.square, meter.items(), limit=10):
            pass

    async def main() -> None:
        t = asyncio.ensure_future(consume())
        await asyncio.sleep(3.5)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        await asyncio.sleep(0)
        no_orphans()

    vrun(main())
    assert meter.pulled <= 40 + 3 * 10 + 1
    assert meter.running == 0


# -- map_reduce ----------------------------------------------------------------------------


def test_map_reduce_folds_every_value(vrun) -> None:
    async def main() -> tuple[int, int, dict[int, int]]:
        total = await fj.map_reduce(square_after, range(1000), operator.add, 0, limit=8)
        gen_total = await fj.map_reduce(
            square_after, (i for i in range(100)), operator.add, 0, limit=3
        )

        def count(acc: dict[int, int], v: int) -> dict[int, int]:
            acc[v % 3] = acc.get(v % 3, 0) + 1
            return acc

        counts = await fj.map_reduce(square_after, range(30), count, {}, limit=4)
        no_orphans()
        return total, gen_total, counts

    total, gen_total, counts = vrun(main())
    assert total == sum(i * i for i in range(1000))
    assert gen_total == sum(i * i for i in range(100))
    assert sum(counts.values()) == 30


def test_map_reduce_is_lazy_and_raises_on_failure(vrun) -> None:
    meter = Meter()

    async def main() -> fj.FanError:
        with pytest.raises(fj.FanError) as info:
            await fj.map_reduce(
                meter.square, meter.items(), operator.add, 0, limit=LIMIT, deadline=20.5
            )
        no_orphans()
        return info.value

    err = vrun(main())
    assert meter.pulled <= 20 * LIMIT + LIMIT + 1
    assert meter.max_ahead <= LIMIT + 1
    assert {o.reason for o in err.results.values()} == {"deadline"}


def test_map_reduce_reducer_error_propagates(vrun) -> None:
    def bad_reducer(acc: int, v: int) -> int:
        if v == 25:
            raise ArithmeticError("reducer")
        return acc + v

    async def main() -> None:
        with pytest.raises(ArithmeticError, match="reducer"):
            await fj.map_reduce(square_after, range(100), bad_reducer, 0, limit=4)
        no_orphans()

    vrun(main())


def test_map_options_are_validated() -> None:
    async def main() -> None:
        with pytest.raises(fj.InvalidPolicy):
            await fj.map(square_after, range(3), limit=-1)
        with pytest.raises(fj.InvalidPolicy):
            await fj.map(square_after, range(3), on_error="ignore")
        with pytest.raises(fj.InvalidPolicy):
            await fj.map_reduce(square_after, range(3), operator.add, 0, deadline=0)
        with pytest.raises(fj.InvalidPolicy):
            async for _ in fj.imap(square_after, range(3), limit=0):
                pass

    asyncio.run(main())


def test_map_events_one_finished_per_item(vrun) -> None:
    events: list[Any] = []

    class Obs:
        def on_event(self, e: fj.Event) -> None:
            events.append(e)

    vrun(fj.map(square_after, range(20), limit=3, observers=[Obs()]))
    finished = [e.outcome.index for e in events if isinstance(e, fj.TaskFinished)]
    assert sorted(finished) == list(range(20))
    assert isinstance(events[0], fj.RunStarted)
    assert isinstance(events[-1], fj.RunFinished)


def test_blocking_map_threads_pull_items_themselves() -> None:
    """A sync fn with no per-call policy runs on `limit` threads that pull the items
    (like ThreadPoolExecutor.map): all run at once, values stay in input order, a failure
    still gets its Outcome and fail_fast stops the pulling."""
    barrier = threading.Barrier(4, timeout=10)
    threads: set[int] = set()

    def work(i: int) -> int:
        threads.add(threading.get_ident())
        if i < 4:
            barrier.wait()  # only passes if 4 calls run at the same time
        return i * 10

    async def main() -> None:
        assert await fj.map(work, iter(range(40)), limit=4) == [i * 10 for i in range(40)]
        assert threading.get_ident() not in threads

        def boom(i: int) -> int:
            if i == 5:
                raise ValueError(i)
            return i

        with pytest.raises(fj.FanError) as info:
            await fj.map(boom, range(10_000), limit=2)
        failed = info.value.results
        assert list(failed) == ["5"]
        assert failed["5"].status is fj.Status.FAILED
        assert isinstance(failed["5"].error, ValueError)
        started, ended = failed["5"].started, failed["5"].ended
        assert started is not None
        assert ended is not None
        assert ended >= started

    asyncio.run(main())


def test_ordered_imap_over_more_items_than_its_window_ends() -> None:
    # every worker waiting for the window is woken when the consumer takes an item
    async def ident(x: int) -> int:
        await asyncio.sleep(0)
        return x

    async def main() -> list[int]:
        return [o.value async for o in fj.imap(ident, range(200), limit=4, ordered=True)]

    assert asyncio.run(asyncio.wait_for(main(), 10)) == list(range(200))


# -- the sync forms ---------------------------------------------------------------------------


def test_map_sync_and_map_reduce_sync_from_plain_code() -> None:
    async def square(i: int) -> int:
        await asyncio.sleep(0)
        return i * i

    values = fj.map_sync(square, range(100), limit=8)
    assert values == [i * i for i in range(100)]
    assert values.report is not None
    assert values.report.tasks == 100
    assert fj.map_sync(str.upper, ["a", "b"]) == ["A", "B"]  # a sync fn: worker threads
    assert fj.map_reduce_sync(square, range(100), operator.add, 0, limit=8) == 328350
    with pytest.raises(fj.FanError):
        fj.map_sync(int, ["1", "x"])


def test_the_sync_forms_refuse_a_running_loop_and_show_the_await_form() -> None:
    async def inside() -> list[str]:
        messages = []
        for call in (
            lambda: fj.map_sync(str, [1]),
            lambda: fj.map_reduce_sync(str, [1], operator.add, ""),
            lambda: fj.run({"a": (asyncio.sleep, 0)}),
        ):
            with pytest.raises(RuntimeError) as info:
                call()
            messages.append(str(info.value))
        return messages

    map_msg, reduce_msg, run_msg = asyncio.run(inside())
    assert "use `values = await fj.map(fn, items, ...)` there" in map_msg
    assert "use `total = await fj.map_reduce(fn, items, reducer, initial, ...)` there" in reduce_msg
    assert "use `results = await fj.gather(tasks, ...)` there" in run_msg
