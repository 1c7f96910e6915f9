"""A reducer (``fj.map_reduce``) or a consumer (of ``fj.imap``) that raises leaves nothing
of the run behind: no asyncio task still running, every call in flight cancelled, and no
thread of the run still in a call once the calls it could not interrupt have returned
(and none beyond those already handed to a thread starts)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import pytest

import forkjoin as fj

from ..conftest import no_orphans

ITEMS = 200
LIMIT = 8


class Boom(Exception):
    pass


class Calls:
    """Counts calls started, in flight and cancelled; all but the first few wait for ``gate``."""

    def __init__(self, quick: int = 3) -> None:
        self.quick = quick
        self.started = 0
        self.active = 0
        self.cancelled = 0
        self.changed = threading.Condition()
        self.gate = threading.Event()
        self.agate = asyncio.Event()

    def enter(self) -> None:
        with self.changed:
            self.started += 1
            self.active += 1
            self.changed.notify_all()

    def leave(self) -> None:
        with self.changed:
            self.active -= 1
            self.changed.notify_all()

    async def call(self, i: int) -> int:
        self.enter()
        try:
            if i >= self.quick:
                await self.agate.wait()
            return i
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.leave()

    def call_sync(self, i: int) -> int:
        self.enter()
        try:
            if i >= self.quick:
                self.gate.wait(timeout=60)
            return i
        finally:
            self.leave()


def reducer_raising_at(n: int) -> Any:
    def reduce(acc: int, value: int) -> int:
        if acc + 1 >= n:
            raise Boom("reducer")
        return acc + 1

    return reduce


def test_a_raising_reducer_cancels_every_call_in_flight() -> None:
    calls = Calls()

    async def main() -> None:
        with pytest.raises(Boom):
            await fj.map_reduce(calls.call, range(ITEMS), reducer_raising_at(2), 0, limit=LIMIT)
        no_orphans()
        assert calls.active == 0
        assert calls.cancelled == calls.started - calls.quick
        assert calls.started <= LIMIT + calls.quick

    asyncio.run(main())


def test_a_raising_reducer_over_threads_starts_nothing_more() -> None:
    calls = Calls()

    async def main() -> None:
        with pytest.raises(Boom):
            await fj.map_reduce(
                calls.call_sync, range(ITEMS), reducer_raising_at(2), 0, limit=LIMIT,
                backend="thread",
            )  # fmt: skip
        no_orphans()
        calls.gate.set()  # the calls a thread cannot interrupt now return
        with calls.changed:
            assert calls.changed.wait_for(lambda: calls.active == 0, timeout=30)

    asyncio.run(main())
    # only the calls already handed to a thread ran: none was dispatched after the raise
    assert calls.started <= LIMIT + calls.quick
    assert calls.active == 0


async def consume(closing: Any) -> None:
    async with closing as stream:
        async for o in stream:
            if o.ok:
                raise Boom("consumer")


def test_a_raising_consumer_of_imap_cancels_every_call_in_flight() -> None:
    calls = Calls()

    async def main() -> None:
        stream = fj.imap(calls.call, range(ITEMS), limit=LIMIT)
        with pytest.raises(Boom):
            await consume(contextlib.aclosing(stream))
        no_orphans()
        assert calls.active == 0
        assert calls.started <= LIMIT + calls.quick

    asyncio.run(main())


def test_a_raising_consumer_without_a_with_block_leaves_nothing_once_the_loop_ends() -> None:
    calls = Calls()

    async def main() -> None:
        with pytest.raises(Boom):  # noqa: PT012 - the consumer is the loop's body
            async for o in fj.imap(calls.call, range(ITEMS), limit=LIMIT):
                if o.ok:
                    raise Boom("consumer")

    asyncio.run(main())  # asyncio.run closes what the loop still runs, and reports nothing
    assert calls.active == 0
    assert calls.started <= LIMIT + calls.quick


@pytest.mark.parametrize("backend", ["thread", "loop"])
def test_a_consumer_leaving_a_stream_without_closing_it_never_hangs_the_loops_end(
    backend: str,
) -> None:
    # two workers, room for four Outcomes: the consumer takes the first and leaves (`break`,
    # no aclose) once items 1-3 wait for it and a worker is in a call that waits for the
    # gate. asyncio.run then cancels the workers: one in a call must end there, not record
    # its item and wait for room a consumer that is gone will never make.
    calls = Calls(quick=4)
    fn = calls.call_sync if backend == "thread" else calls.call

    async def main() -> None:
        async for _ in fj.imap(fn, range(ITEMS), limit=2, backend=backend):
            while calls.active < 1 or calls.started < 5:
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.05)  # the quick items' Outcomes reach the stream
            break

    ended = threading.Event()
    # a thread of its own, so that a hang fails this test instead of stopping the session
    loop_thread = threading.Thread(target=lambda: (asyncio.run(main()), ended.set()), daemon=True)
    try:
        loop_thread.start()
        assert ended.wait(30), "asyncio.run never returned: a worker waits for a gone consumer"
        if backend == "thread":  # it returned while the calls still waited for the gate
            assert calls.active >= 1
        else:  # the calls on the loop were cancelled
            assert calls.active == 0
            assert calls.cancelled >= 1
    finally:
        calls.gate.set()
    with calls.changed:
        assert calls.changed.wait_for(lambda: calls.active == 0, timeout=30)
    assert calls.started <= 6  # nothing was started after the cancellation
