"""Admission: who runs next, never past the run's or a group's concurrency limit.

One object per run owns the slots (the run's ``limit``, each group's limit), the queue of
entries waiting for a slot (highest ``priority`` first, first come first served among
equals) and the feed of an unlimited run. Both ways the engine runs work are its clients:
the task-per-record path (``gather``, ``Fan``: an entry is a task, started by the engine's
``start`` callback when admitted) and the worker pool of ``map``/``imap`` (a worker holds a
slot while it calls, and waits in the same queue with :meth:`acquire` when there is none).

An entry is anything with ``group``, ``priority`` and ``seq`` (its order of arrival).
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Protocol

__all__ = ["Admission", "Entry"]

# Entries started per loop pass in an unlimited run: trivial tasks finish before the next
# batch is made, so live asyncio Tasks (and the cyclic GC's work, ~half of
# asyncio.gather's time at 100k) stay bounded, and no task waits for another to finish.
FEED_BATCH: Final = 512


class Entry(Protocol):
    group: str | None
    priority: float
    seq: int


class _Queue:
    """The waiting entries of one group: a FIFO while every priority is the same (a deque,
    ~10x cheaper than a heap), a heap of (-priority, seq, entry) once they differ."""

    __slots__ = ("fifo", "heap", "priority")

    def __init__(self, priority: float) -> None:
        self.priority = priority
        self.fifo: deque[Any] | None = deque()
        self.heap: list[tuple[float, int, Any]] = []

    def push(self, entry: Any) -> None:
        fifo = self.fifo
        if fifo is not None:
            if entry.priority == self.priority:
                fifo.append(entry)
                return
            self.heap = [(-e.priority, e.seq, e) for e in fifo]  # already in heap order
            self.fifo = None
        heapq.heappush(self.heap, (-entry.priority, entry.seq, entry))

    def head(self) -> Any:
        fifo = self.fifo
        return fifo[0] if fifo is not None else self.heap[0][2]

    def pop(self) -> Any:
        fifo = self.fifo
        return fifo.popleft() if fifo is not None else heapq.heappop(self.heap)[2]

    def __len__(self) -> int:
        fifo = self.fifo
        return len(fifo) if fifo is not None else len(self.heap)

    def drain(self) -> list[Any]:
        if self.fifo is not None:
            return list(self.fifo)
        return [e for _, _, e in sorted(self.heap)]


class _Waiter:
    """A worker pool's wait for a slot, queued like a task."""

    __slots__ = ("fut", "group", "priority", "seq")

    def __init__(self, group: str | None, seq: int, fut: asyncio.Future[None]) -> None:
        self.group = group
        self.priority = 0
        self.seq = seq
        self.fut = fut


class Admission:
    """The slots and the queue of one run."""

    __slots__ = (
        "_feed",
        "_feeding",
        "_loop",
        "_queues",
        "_scheduled",
        "_start",
        "group_limits",
        "group_running",
        "limit",
        "queued",
        "running",
        "seq",
    )

    def __init__(
        self,
        limit: int | None,
        group_limits: dict[str, int],
        start: Callable[[Any], None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.limit = limit
        self.group_limits = group_limits  # adaptive limits change these (set_limit)
        self.group_running: dict[str, int] = dict.fromkeys(group_limits, 0)
        self.running = 0  # entries holding a slot
        self.queued = 0
        self.seq = 0
        self._start = start
        self._loop = loop
        self._queues: dict[str | None, _Queue] = {}
        self._feed: deque[Any] = deque()
        self._feeding = False
        self._scheduled = False

    # -- slots ---------------------------------------------------------------------------

    def limited(self, group: str | None) -> bool:
        """Whether an entry of ``group`` may have to wait for a slot."""
        return self.limit is not None or (group is not None and group in self.group_limits)

    def has_room(self, group: str | None) -> bool:
        if self.limit is not None and self.running >= self.limit:
            return False
        if group is not None and group in self.group_limits:
            return self.group_running[group] < self.group_limits[group]
        return True

    def take(self, group: str | None) -> None:
        """Count a slot as held by an entry of ``group`` (the caller checked the room)."""
        self.running += 1
        if group is not None and group in self.group_running:
            self.group_running[group] += 1

    def release(self, group: str | None) -> None:
        """A slot of ``group`` is free again (call :meth:`admit` to fill it)."""
        self.running -= 1
        if group is not None and group in self.group_running:
            self.group_running[group] -= 1

    def set_limit(self, group: str, limit: int) -> None:
        """Change a group's limit; a raised limit admits waiting entries on the next pass."""
        grew = limit > self.group_limits.get(group, limit)
        self.group_limits[group] = limit
        self.group_running.setdefault(group, 0)
        if grew and self.queued:
            self.admit_soon()

    # -- the queue -----------------------------------------------------------------------

    def push(self, entry: Any) -> None:
        """Queue ``entry`` until a slot of its group is free (see :meth:`admit`)."""
        q = self._queues.get(entry.group)
        if q is None:
            q = self._queues[entry.group] = _Queue(entry.priority)
        q.push(entry)
        self.queued += 1

    def admit_freed(self, group: str | None) -> None:
        """A slot of ``group`` was just released: start what it makes room for. With no
        run-wide limit only that group's queue can use it (every other waiting group is
        at its own limit), so only that queue is looked at."""
        if self.limit is not None or group is None:
            self.admit()
            return
        q = self._queues.get(group)
        if q is None:
            return
        glimits = self.group_limits
        grun = self.group_running
        while grun[group] < glimits[group]:
            entry = q.pop()
            self.queued -= 1
            self.take(group)
            if not q:
                del self._queues[group]
            if type(entry) is _Waiter:
                if not entry.fut.done():
                    entry.fut.set_result(None)
                else:  # its worker was cancelled while it waited: the slot goes on
                    self.release(group)
            else:
                self._start(entry)
            if group not in self._queues:
                return

    def push_all(self, entries: list[Any]) -> None:
        """:meth:`push` each entry (in one step when they share a group and a priority)."""
        if not entries:
            return
        first = entries[0]
        group, priority = first.group, first.priority
        if group not in self._queues and all(
            e.group == group and e.priority == priority for e in entries
        ):
            q = self._queues[group] = _Queue(priority)
            assert q.fifo is not None
            q.fifo.extend(entries)
            self.queued += len(entries)
            return
        for e in entries:
            self.push(e)

    def admit(self) -> None:
        """Start waiting entries while there is room: highest priority first, FIFO among
        equals, passing over groups that are at their own limit."""
        queues = self._queues
        limit = self.limit
        glimits = self.group_limits
        grun = self.group_running
        if len(queues) == 1 and None in queues and not glimits:
            # one run-wide limit and one queue (a limited gather): pop while there is room
            q = queues[None]
            start = self._start
            while self.queued and (limit is None or self.running < limit):
                entry = q.pop()
                self.queued -= 1
                if not q:
                    del queues[None]
                self.running += 1
                if type(entry) is _Waiter:
                    if not entry.fut.done():
                        entry.fut.set_result(None)
                    else:
                        self.running -= 1
                else:
                    start(entry)
                if None not in queues:
                    return
            return
        while self.queued and (limit is None or self.running < limit):
            if len(queues) == 1:
                group, q = next(iter(queues.items()))
                if group is not None and group in glimits and grun[group] >= glimits[group]:
                    return
            else:
                best: Any = None
                chosen: _Queue | None = None
                for g, candidate in queues.items():
                    if g is not None and g in glimits and grun[g] >= glimits[g]:
                        continue
                    head = candidate.head()
                    if (
                        best is None
                        or head.priority > best.priority
                        or (head.priority == best.priority and head.seq < best.seq)
                    ):
                        best, chosen = head, candidate
                if best is None or chosen is None:
                    return
                group, q = best.group, chosen
            entry = q.pop()
            if not q:
                del queues[group]
            self.queued -= 1
            self.take(group)
            if type(entry) is _Waiter:
                if not entry.fut.done():
                    entry.fut.set_result(None)
                else:  # its worker was cancelled while it waited: the slot goes on
                    self.release(group)
                continue
            self._start(entry)

    def admit_soon(self) -> None:
        """:meth:`admit` on the next loop pass (so entries added together start by
        priority, not in the order they were added)."""
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._admit_scheduled)

    def _admit_scheduled(self) -> None:
        self._scheduled = False
        self.admit()

    async def acquire(self, group: str | None) -> None:
        """Hold a slot of ``group`` (a worker pool's call); wait in the queue if there is
        none. Give it back with :meth:`release`."""
        if self.has_room(group) and not self.queued:
            self.take(group)
            return
        self.seq += 1
        fut: asyncio.Future[None] = self._loop.create_future()
        self.push(_Waiter(group, self.seq, fut))
        self.admit()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(group)  # admitted, then cancelled before it could run
                self.admit()
            raise

    # -- an unlimited run ----------------------------------------------------------------

    def feed(self, entry: Any) -> None:
        """Start ``entry`` soon, with no limit: a batch per loop pass (see FEED_BATCH)."""
        self._feed.append(entry)
        self._schedule_feed()

    def feed_all(self, entries: list[Any]) -> None:
        """:meth:`feed` each entry (highest priority first, FIFO among equals)."""
        if any(e.priority for e in entries):
            entries = sorted(entries, key=lambda e: -e.priority)
        self._feed.extend(entries)
        self._schedule_feed()

    def feed_now(self) -> None:
        """Start the first batch of the feed now, in this loop pass."""
        if self._feed:
            self._feed_batch()

    def _schedule_feed(self) -> None:
        if not self._feeding:
            self._feeding = True
            self._loop.call_soon(self._feed_pass)

    def _feed_pass(self) -> None:
        self._feeding = False
        self._feed_batch()

    def _feed_batch(self) -> None:
        feed = self._feed
        start = self._start
        n = min(FEED_BATCH, len(feed))
        self.running += n
        for _ in range(n):
            start(feed.popleft())
        if feed:
            self._schedule_feed()

    # -- stopping ------------------------------------------------------------------------

    def drain(self) -> list[Any]:
        """Remove and return every entry still waiting (feed first, then by priority);
        queued pool waiters are woken with a cancellation."""
        out = list(self._feed)
        self._feed.clear()
        queues, self._queues = self._queues, {}
        self.queued = 0
        waiting = [e for q in queues.values() for e in q.drain()]
        waiting.sort(key=lambda e: (-e.priority, e.seq))
        for e in waiting:
            if type(e) is _Waiter:
                if not e.fut.done():
                    e.fut.cancel()
            else:
                out.append(e)
        return out
