"""Deterministic time for tests of code that uses forkjoin (or any asyncio code).

:func:`run` runs a coroutine on an event loop whose clock is virtual: when every task is
waiting on a timer, the clock jumps straight to the next timer instead of sleeping, so a
run with ``asyncio.sleep(60)`` tasks, timeouts and deadlines finishes in milliseconds and
always in the same order. I/O and threads still work: while the loop waits on a thread
the clock runs at real speed (so a deadline still fires over a stuck blocking call).
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["VirtualClockLoop", "run"]

T = TypeVar("T")


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualClockLoop) -> None:
        super().__init__()
        self._vloop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        # Poll first; if nothing is ready and the loop would sleep until a timer, jump.
        events = super().select(0)
        if events or timeout == 0:
            return events
        if timeout is None or self._vloop._pending_io():
            # waiting on threads or I/O: really wait, and let the clock run at real speed
            # meanwhile, so a deadline still fires over a call stuck in a thread
            began = time.monotonic()
            events = super().select(timeout)
            self._vloop._now += time.monotonic() - began
            return events
        self._vloop._now += timeout
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose ``time()`` only moves when every task is waiting on a timer."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._io_waits = 0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self._now

    def _pending_io(self) -> bool:
        # executors (threads) report back through call_soon_threadsafe; while one has
        # work outstanding, wait for it rather than jumping the clock
        return self._io_waits > 0

    def run_in_executor(  # type: ignore[override]
        self, executor: Any, func: Any, *args: Any
    ) -> asyncio.Future[Any]:
        fut = super().run_in_executor(executor, func, *args)
        self._track(fut)
        return fut

    def _track(self, fut: asyncio.Future[Any]) -> None:
        self._io_waits += 1

        def done(_f: asyncio.Future[Any]) -> None:
            self._io_waits -= 1

        fut.add_done_callback(done)

    def track_thread_future(self, fut: asyncio.Future[Any]) -> None:
        """Keep the clock still while ``fut`` (e.g. from ``asyncio.wrap_future``) is pending."""
        self._track(fut)


def run(main: Coroutine[Any, Any, T], *, start: float = 0.0) -> T:
    """Run ``main`` to completion on a fresh :class:`VirtualClockLoop`."""
    with asyncio.Runner(loop_factory=lambda: VirtualClockLoop(start)) as runner:
        return runner.run(main)
