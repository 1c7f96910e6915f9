"""Per-call timeouts without a loop timer per call.

The calls of a run nearly always share one timeout, so their deadlines come due in the
order the calls started. :class:`Deadlines` keeps the running calls of one timeout value
in a FIFO with a single loop timer for the oldest, so a call under a timeout costs a
deque append and a flag instead of ``loop.call_at`` + ``TimerHandle.cancel`` (a heap push
on the loop, and a cancelled handle left in that heap until the loop rebuilds it): most
of the 15 µs a per-call timeout cost in bench workload 5 (bench/PROFILE.md).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any


class Call:
    """One call under a timeout: ``expired`` once its deadline passed while it ran."""

    __slots__ = ("deadline", "done", "expired", "site", "task")

    def __init__(self, deadline: float, task: asyncio.Task[Any], site: Any) -> None:
        self.deadline = deadline
        self.task = task
        self.site = site  # whose call it is (the engine's record of the task)
        self.done = False
        self.expired = False


class Deadlines:
    """The running calls of one timeout value, oldest first, and one timer for the oldest."""

    __slots__ = ("_calls", "_loop", "_on_expired", "_timeout", "_timer")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        timeout: float,
        on_expired: Callable[[list[Call]], None] | None = None,
    ) -> None:
        self._loop = loop
        self._timeout = timeout
        self._calls: deque[Call] = deque()
        self._timer: asyncio.TimerHandle | None = None
        # told of the calls just cancelled (to abandon those that ignore it)
        self._on_expired = on_expired

    def start(self, task: asyncio.Task[Any], site: Any = None) -> Call:
        """A call of ``site`` starts now in ``task``: cancel that task if it is still
        running at now + timeout (unless :meth:`end` was called first)."""
        call = Call(self._loop.time() + self._timeout, task, site)
        self._calls.append(call)  # the clock never goes back: the deque stays sorted
        if self._timer is None:
            self._timer = self._loop.call_at(call.deadline, self._expire)
        return call

    def end(self, call: Call) -> None:
        """The call ended (however): it can no longer expire."""
        call.done = True
        calls = self._calls
        while calls and calls[0].done:  # calls mostly end in the order they started
            calls.popleft()
        # the timer stays armed: at worst it fires once for nothing and re-arms

    def _expire(self) -> None:
        self._timer = None
        calls = self._calls
        now = self._loop.time()
        expired: list[Call] = []
        while calls:
            call = calls[0]
            if not call.done:
                if call.deadline > now:
                    break
                if not call.task.done():
                    call.expired = True
                    call.task.cancel()
                    expired.append(call)
            calls.popleft()
        if calls:
            self._timer = self._loop.call_at(calls[0].deadline, self._expire)
        if expired and self._on_expired is not None:
            self._on_expired(expired)

    def __len__(self) -> int:
        """Calls in the FIFO (running, or ended but not yet dropped from its front)."""
        return len(self._calls)

    def close(self) -> None:
        """The run ended: no timer is left on the loop."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._calls.clear()
