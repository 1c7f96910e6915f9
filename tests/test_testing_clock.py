"""forkjoin.testing: the virtual-clock loop the rest of the suite relies on."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import forkjoin as fj
from forkjoin.testing import VirtualClockLoop, run


def test_time_jumps_to_the_next_timer() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.sleep(3600)
        return t0, loop.time()

    wall0 = time.monotonic()
    t0, t1 = run(main())
    assert t1 - t0 == 3600
    assert time.monotonic() - wall0 < 5  # an hour of virtual time, no real hour


def test_start_time_and_loop_class() -> None:
    async def main() -> tuple[float, bool]:
        loop = asyncio.get_running_loop()
        return loop.time(), isinstance(loop, VirtualClockLoop)

    assert run(main(), start=100.0) == (100.0, True)


def test_timers_fire_in_order() -> None:
    order: list[tuple[str, float]] = []

    async def after(name: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        order.append((name, asyncio.get_running_loop().time()))

    async def main() -> None:
        await asyncio.gather(after("c", 3), after("a", 1), after("b", 2), after("a2", 1))

    run(main())
    assert order == [("a", 1.0), ("a2", 1.0), ("b", 2.0), ("c", 3.0)]


def test_asyncio_timeout_on_the_virtual_clock() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(5):
                await asyncio.sleep(60)
        return loop.time()

    assert run(main()) == 5.0


def test_clock_stands_still_while_a_thread_works() -> None:
    release = threading.Event()

    def work() -> str:
        release.wait(10)
        return "done"

    async def main() -> tuple[str, float]:
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(None, work)
        # a timer far away must not be jumped to while the thread is busy
        timer = asyncio.ensure_future(asyncio.sleep(1000))
        await asyncio.sleep(0)
        loop.call_soon(release.set)
        value = await fut
        now = loop.time()
        timer.cancel()
        return value, now

    value, now = run(main())
    assert value == "done"
    assert now < 1000


def test_forkjoin_run_is_deterministic_on_the_virtual_clock() -> None:
    async def main() -> list[tuple[str, float | None]]:
        results = await fj.gather(
            {f"t{i}": (asyncio.sleep, (7 * i) % 5 + 1) for i in range(10)}, limit=3, deadline=7.5
        )
        return [(o.status.value, o.ended) for o in results.values()]

    assert run(main()) == run(main())
