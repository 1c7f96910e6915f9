"""Recording: the one path every Outcome takes.

:meth:`Recorder.record` is called exactly once per task, whatever happened to it. It
writes the Outcome to the run's journal first (when it has one: before anything below can
show it to your code), keeps it (``gather``, ``Fan``) or folds it into streaming figures
(``map``, ``imap``: O(1) memory in the number of items), feeds the ``as_completed`` stream,
tells the observers, and decides the run's early stops that depend on outcomes
(``quorum``, ``max_failures`` / fail-fast).
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ._events import Observers, TaskFinished
from ._outcome import Outcome, Status

if TYPE_CHECKING:
    from ._journal import JournalSession

__all__ = ["Aggregate", "Busy", "Recorder"]

_OK: Final = Status.OK
_FAILED: Final = Status.FAILED
_TIMED_OUT: Final = Status.TIMED_OUT

SLOWEST: Final = 10  # how many slowest calls a map run's report names


class Busy:
    """Calls running now and the most at once: what a run that keeps no Outcome per task
    reports as its peak concurrency (the call pipeline counts the calls it makes wait)."""

    __slots__ = ("now", "peak")

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def enter(self) -> None:
        self.now += 1
        if self.now > self.peak:
            self.peak = self.now

    def leave(self) -> None:
        self.now -= 1


class Aggregate:
    """The figures of a run that keeps no Outcome per task: counts by status and reason,
    the sum of call durations, attempts, cost, the slowest calls and the peak number of
    calls running at once. Memory is O(1) in the number of tasks."""

    __slots__ = (
        "attempts",
        "busy",
        "cost",
        "cost_saved",
        "counts",
        "fallbacks",
        "first",
        "hedged",
        "last",
        "ok",
        "peak",
        "reasons",
        "resumed",
        "retries",
        "sampled",
        "skipped_for_budget",
        "slowest",
        "tokens",
        "total",
        "waited",
        "where",
    )

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}  # by status, but for the ok ones counted by add()
        self.ok = 0  # ok tasks of one call counted by add()'s short path
        self.reasons: dict[str, int] = {}
        self.total = 0.0  # seconds spent in calls
        self.waited = 0.0
        self.attempts = 0
        self.retries = 0
        self.hedged = 0
        self.fallbacks = 0
        self.cost = 0.0
        self.tokens: float | None = None
        self.slowest: list[tuple[float, str]] = []  # a min-heap of the SLOWEST longest
        self.peak = 0
        self.busy = 0  # calls running now (map pools count them)
        self.first: float | None = None
        self.last: float | None = None
        self.skipped_for_budget: list[str] = []
        self.sampled = 0  # the slowest calls and the peak were taken from 1 call in this
        self.resumed = 0  # tasks a journal answered (not called)
        self.cost_saved = 0.0  # their recorded cost
        self.where: dict[str, int] = {}  # calls by where they ran

    def add(self, o: Outcome) -> None:
        if o.status is _OK and o.attempts == 1 and not o.calls and o.cost is None:
            # the common case (one ok call, nothing to account): counted in a few steps
            started, ended = o.started, o.ended
            if started is not None and ended is not None:
                self.ok += 1
                self.attempts += 1
                d = ended - started
                self.total += d
                if self.first is None:
                    self.first = started
                if self.last is None or ended > self.last:
                    self.last = ended
                slowest = self.slowest
                if len(slowest) < SLOWEST:
                    heapq.heappush(slowest, (d, o.name))
                elif d > slowest[0][0]:
                    heapq.heapreplace(slowest, (d, o.name))
                if o.waited:
                    self.waited += o.waited
                return
        status = o.status.value
        if o.resumed:
            self.resumed += 1
            if o.cost is not None:
                self.cost_saved += o.cost
        self.counts[status] = self.counts.get(status, 0) + 1
        if o.reason:
            self.reasons[o.reason] = self.reasons.get(o.reason, 0) + 1
            if o.reason == "budget" and status == "skipped" and len(self.skipped_for_budget) < 100:
                self.skipped_for_budget.append(o.name)
        self.attempts += o.attempts
        if o.fallback:
            self.fallbacks += 1
        if o.cost is not None:
            self.cost += o.cost
        if o.tokens is not None:
            self.tokens = (self.tokens or 0) + o.tokens
        if o.waited:
            self.waited += o.waited
        calls = o.calls
        spent: float | None
        where = self.where
        if calls:
            numbers = {c.number for c in calls if not c.hedge}
            self.hedged += sum(1 for c in calls if c.hedge)
            self.retries += max(0, len(numbers) - 1)
            spent = math.fsum(c.ended - c.started for c in calls)
            for c in calls:
                place = c.where or "loop"
                where[place] = where.get(place, 0) + 1
        else:
            self.retries += max(0, o.attempts - 1)
            spent = None
            if o.started is not None and o.ended is not None:
                spent = o.ended - o.started
                where["loop"] = where.get("loop", 0) + max(1, o.attempts)
        if spent is not None and o.started is not None and o.ended is not None:
            self.span(o.name, spent, o.started, o.ended)

    def span(self, name: str, spent: float, started: float, ended: float) -> None:
        """A task that spent ``spent`` seconds in calls between ``started`` and ``ended``."""
        self.total += spent
        if self.first is None or started < self.first:
            self.first = started
        if self.last is None or ended > self.last:
            self.last = ended
        slowest = self.slowest
        if len(slowest) < SLOWEST:
            heapq.heappush(slowest, (spent, name))
        elif spent > slowest[0][0]:
            heapq.heapreplace(slowest, (spent, name))

    def add_ok(self, n: int, spent: float, slow: list[tuple[float, str]], first: float,
               last: float, where: str = "loop") -> None:  # fmt: skip
        """``n`` ok calls of one attempt each from a map worker, summed by the worker."""
        if not n:
            return
        self.where[where] = self.where.get(where, 0) + n
        self.counts["ok"] = self.counts.get("ok", 0) + n
        self.attempts += n
        self.total += spent
        if self.first is None or first < self.first:
            self.first = first
        if self.last is None or last > self.last:
            self.last = last
        for item in slow:
            if len(self.slowest) < SLOWEST:
                heapq.heappush(self.slowest, item)
            elif item[0] > self.slowest[0][0]:
                heapq.heapreplace(self.slowest, item)

    @property
    def tasks(self) -> int:
        return sum(self.counts.values()) + self.ok

    def all_counts(self) -> dict[str, int]:
        """Tasks by status."""
        counts = dict(self.counts)
        if self.ok:
            counts["ok"] = counts.get("ok", 0) + self.ok
        return counts


class Recorder:
    """Where every Outcome of a run goes (see the module's docstring)."""

    __slots__ = (
        "_events",
        "_finished",
        "_journal",
        "_now",
        "_run",
        "after",
        "aggregate",
        "deliver",
        "failures",
        "ok",
        "on_stop",
        "quorum",
        "record",
        "stop_after",
        "stop_outcome",
        "stop_reason",
        "stream",
        "stream_waiter",
        "tasks",
    )

    def __init__(
        self,
        run: str,
        events: Observers,
        now: Callable[[], float],
        on_stop: Callable[[str], None],
        *,
        keep: bool,
        quorum: int | None,
        stop_after: int | None,
        fail_fast: bool,
    ) -> None:
        # gather, Fan: name -> the task's state while it runs, its Outcome once recorded
        self.tasks: dict[str, Any] = {}
        self.aggregate: Aggregate | None = None if keep else Aggregate()
        self.deliver: Callable[[Outcome], Any] | None = None  # map, imap: the consumer
        self.stream: deque[Outcome] | None = None  # Fan.as_completed
        self.stream_waiter: asyncio.Future[None] | None = None
        self.quorum = quorum
        self.stop_after = stop_after
        self.stop_reason = "fail_fast" if fail_fast else "max_failures"
        self.ok = 0
        self.failures = 0
        self.stop_outcome: Outcome | None = None  # the failure that reached stop_after
        self.on_stop = on_stop
        # told of every Outcome once it is recorded (the dependency graph), if set
        self.after: Callable[[Outcome], None] | None = None
        self._run = run
        self._events = events
        self._finished = events.task_finished
        self._now = now
        self._journal: JournalSession | None = None
        self.record: Callable[[Outcome], Any] = self._record
        self._choose()

    def _choose(self) -> None:
        """``record`` is the full path, or only the keyed store (and the journal, when the
        run has one) when nothing else wants the Outcome (no stream, observer, consumer or
        early stop): one dict store per task."""
        if (
            self.aggregate is None
            and self.stream is None
            and self.deliver is None
            and self.quorum is None
            and self.stop_after is None
            and (self._journal is None or not self._finished)
        ):
            tasks = self.tasks
            finished = self._finished
            after = self.after
            if after is not None and (finished or self._journal is not None):
                self.record = self._record
                return
            if after is not None:

                def record(outcome: Outcome) -> None:
                    tasks[outcome.name] = outcome
                    after(outcome)

            elif self._journal is not None:
                write = self._journal.add

                def record(outcome: Outcome) -> None:
                    write(outcome)  # durable ("sync") before the run can show it
                    tasks[outcome.name] = outcome

            elif not finished:

                def record(outcome: Outcome) -> None:
                    tasks[outcome.name] = outcome

            else:
                run = self._run
                now = self._now
                events = self._events

                def record(outcome: Outcome) -> None:
                    tasks[outcome.name] = outcome
                    event = TaskFinished(run, now(), outcome)
                    for observer, method in finished:
                        try:
                            method(event)
                        except Exception:
                            events.failed(observer, event)

            self.record = record
        else:
            self.record = self._record

    def set_journal(self, journal: JournalSession) -> None:
        """Write every Outcome to ``journal`` first."""
        self._journal = journal
        self._choose()

    def set_after(self, after: Callable[[Outcome], None]) -> None:
        """Tell ``after`` of every Outcome, once it is recorded (the dependency graph)."""
        self.after = after
        self._choose()

    def wake_stream(self) -> None:
        """Wake the ``as_completed`` stream's reader (to look at the run again)."""
        w = self.stream_waiter
        if w is not None and not w.done():
            w.set_result(None)

    def set_deliver(self, deliver: Callable[[Outcome], Any]) -> None:
        """Hand every Outcome to ``deliver`` too (the consumer of a map run)."""
        self.deliver = deliver
        self._choose()

    def _record(self, outcome: Outcome) -> Any:
        """Record a task's Outcome (exactly once per task). Returns what the consumer of a
        map run returned (an awaitable when it wants the producer to wait)."""
        journal = self._journal
        if journal is not None:
            journal.add(outcome)  # durable ("sync") before anything below shows it
        aggregate = self.aggregate
        if aggregate is None:
            self.tasks[outcome.name] = outcome
        else:
            aggregate.add(outcome)
        finished = self._finished
        if finished:
            event = TaskFinished(self._run, self._now(), outcome)
            for observer, method in finished:
                try:
                    method(event)
                except Exception:
                    self._events.failed(observer, event)
        stream = self.stream
        if stream is not None:
            stream.append(outcome)
            w = self.stream_waiter
            if w is not None and not w.done():
                w.set_result(None)
        deliver = self.deliver
        # delivered before the early stops it causes: what they cancel comes after it
        r = deliver(outcome) if deliver is not None else None
        status = outcome.status
        if status is _OK:
            if self.quorum is not None:
                self.ok += 1
                if self.ok >= self.quorum:
                    self.on_stop("quorum")
        elif (status is _FAILED or status is _TIMED_OUT) and self.stop_after is not None:
            self.failures += 1
            if self.failures == self.stop_after:
                self.stop_outcome = outcome
                self.on_stop(self.stop_reason)
        after = self.after
        if after is not None:
            after(outcome)  # last: what it releases or skips is recorded after this one
        return r

    def open_stream(self) -> deque[Outcome]:
        """Start streaming: the Outcomes recorded so far first, then each as it comes."""
        if self.stream is None:
            self.stream = deque(o for o in self.tasks.values() if isinstance(o, Outcome))
            self._choose()
        return self.stream

    @property
    def stopped_by_failures(self) -> bool:
        """Whether the run was stopped because too many tasks failed."""
        return self.stop_after is not None and self.failures >= self.stop_after
