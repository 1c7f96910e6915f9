"""RateLimit: at most ``rate`` weight starts per ``per`` seconds (a leaky bucket, no burst).

The value class only describes the limit. The engine keeps one :class:`RateMeter` per
run or group; the meter decides *when* a call may start given the clock (pure, testable
without sleeping) and the engine sleeps.

Why not ``aiolimiter.AsyncLimiter(rate, per)`` as it is: its bucket starts empty, so the
first window lets about 2x ``rate`` through, and after any idle period it bursts again;
``AsyncLimiter(1, per/rate)`` avoids the burst but drops the leak of every late wake-up
(92–97% of the rate). The meter is the same leaky bucket in its virtual-scheduling form
(GCRA): each reservation is placed on a schedule computed from the previous reservation,
not from when the waiter happened to wake, so late wake-ups are credited; a log of the
actual start times then guarantees that no window of ``per`` seconds ever sees more
than ``rate + burst`` weight, even when wake-ups are late by different amounts.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from .. import _validate
from .._errors import InvalidPolicy
from .._values import FrozenValue, set_field
from ._base import PolicyState, RunContext

__all__ = ["RateLimit", "RateLimitState", "RateMeter"]


@dataclass(slots=True, init=False, repr=False, eq=False)
class RateLimit(FrozenValue):
    """At most ``rate`` starts (or weight: a task's ``weight=``) per ``per`` seconds.

    Starts are spread evenly (one every ``per / rate`` seconds); ``burst`` allows that many
    extra starts at once after a quiet spell. No window of ``per`` seconds ever sees more
    than ``rate + burst`` weight start, including the first.
    """

    rate: float
    per: float = 1.0
    burst: float | None = None

    def __init__(
        self,
        rate: float,
        per: float = 1.0,
        burst: float | None = None,
    ) -> None:
        set_field(self, "rate", rate)
        set_field(self, "per", per)
        set_field(self, "burst", burst)
        self.__post_init__()

    def __post_init__(self) -> None:
        _validate.number("RateLimit", "rate", self.rate, minimum=0, strict=True)
        _validate.number("RateLimit", "per", self.per, minimum=0, strict=True)
        if self.burst is not None:
            _validate.number("RateLimit", "burst", self.burst, minimum=0, strict=False)

    @property
    def capacity(self) -> float:
        """Most weight that may start in any window of ``per`` seconds."""
        return self.rate + (self.burst or 0.0)

    def check_weight(self, where: str, weight: float) -> None:
        """A weight this limit can ever admit, or InvalidPolicy."""
        if weight > self.capacity:
            raise InvalidPolicy(
                f"{where}: weight {weight:g} is more than {self!r} can ever admit "
                f"(rate + burst = {self.capacity:g})"
            )


class RateMeter:
    """The state of one RateLimit in one run (or group). The clock is passed in."""

    __slots__ = ("_interval", "_log", "_logged", "_tat", "_tolerance", "policy")

    def __init__(self, policy: RateLimit) -> None:
        self.policy = policy
        self._interval = policy.per / policy.rate  # seconds per unit of weight
        self._tolerance = (policy.burst or 0.0) * self._interval
        self._tat: float | None = None  # theoretical arrival time of the next unit
        self._log: deque[list[float]] = deque()  # [start, weight] in the last window
        self._logged = 0.0

    def reserve(self, now: float, weight: float = 1.0) -> float:
        """Reserve a start for ``weight``; return the time it may start (>= ``now``).

        The schedule continues from the previous reservation, so a waiter that wakes late
        does not push back the ones after it.
        """
        tat = now if self._tat is None or self._tat < now else self._tat
        start = max(now, tat - self._tolerance)
        self._tat = max(tat, start) + weight * self._interval
        return start

    def give_back(self, weight: float) -> float:
        """A reservation of ``weight`` that was not used: the schedule moves back by it.
        Returns the seconds every later reservation may start earlier."""
        shift = weight * self._interval
        if self._tat is not None:
            self._tat -= shift
        return shift

    def wait_for_window(self, now: float, weight: float = 1.0) -> float:
        """Seconds to wait so that starting ``weight`` at ``now`` keeps every window of
        ``per`` within ``rate + burst`` (0.0: start now)."""
        log, per = self._log, self.policy.per
        while log and log[0][0] <= now - per:
            self._logged -= log.popleft()[1]
        excess = self._logged + weight - self.policy.capacity
        if excess <= 1e-9:
            return 0.0
        freed = 0.0
        for t, w in log:
            freed += w
            if freed >= excess - 1e-9:
                return max(t + per - now, 1e-6)
        return per  # pragma: no cover - unreachable: weight <= capacity is checked first

    def record(self, now: float, weight: float = 1.0) -> list[float]:
        """A call of ``weight`` started at ``now``; its entry, for :meth:`moved`."""
        entry = [now, weight]
        self._log.append(entry)
        self._logged += weight
        return entry

    @staticmethod
    def moved(entry: list[float], start: float) -> None:
        """The call of ``entry`` really started at ``start`` (later than recorded): the
        windows are then counted from the same instant as its reported start. Only ever
        later, so no window holds more than it was allowed when the call was let go."""
        if start > entry[0]:
            entry[0] = start

    async def acquire(self, loop: asyncio.AbstractEventLoop, weight: float = 1.0) -> float:
        """Wait until ``weight`` may start, record it, and return its start time."""
        start = self.reserve(loop.time(), weight)
        delay = start - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        for _ in range(1000):  # bounded: each pass waits for the oldest start to age out
            extra = self.wait_for_window(loop.time(), weight)
            if extra <= 0:
                break
            await asyncio.sleep(extra)
        now = loop.time()
        self.record(now, weight)
        return now


class _Turn:
    """A call waiting for its reserved start."""

    __slots__ = ("fut", "start", "timer", "weight")

    def __init__(self, start: float, weight: float, fut: asyncio.Future[None]) -> None:
        self.start = start
        self.weight = weight
        self.fut = fut
        self.timer: asyncio.TimerHandle | None = None


class RateLimitState(PolicyState):
    """A RateLimit in a run (or one group of it): each call waits for its turn.

    A call whose turn is not now waits for a future its own timer resolves at its start.
    If it is cancelled while waiting (a stop, a timeout, a hedge that lost), its turn is
    given back: every call queued after it starts that much earlier.
    """

    __slots__ = ("meter", "turns", "unbegun")
    report_as = ("rate", "rates")
    waits = True
    order = 2

    def __init__(self, policy: RateLimit, group: str | None, ctx: RunContext) -> None:
        super().__init__(policy, group, ctx)
        self.meter = RateMeter(policy)
        self.turns: deque[_Turn] = deque()  # waiting, in start order
        # (task, its entry): let go, and not yet begun (another limit may still hold it)
        self.unbegun: deque[tuple[Any, list[float]]] = deque()

    def before(self, task: Any) -> Awaitable[Any] | None:
        meter = self.meter
        weight = task.weight
        now = self.ctx.clock()
        start = meter.reserve(now, weight)
        if start <= now and meter.wait_for_window(now, weight) <= 0:
            # its turn is now: no coroutine, no sleep
            self.unbegun.append((task, meter.record(now, weight)))
            return None
        loop = asyncio.get_running_loop()
        turn = _Turn(start, weight, loop.create_future())
        self.turns.append(turn)
        turn.timer = loop.call_at(start, _due, turn)
        turn.fut.add_done_callback(functools.partial(self._left, turn))
        return self._wait(turn, task)

    def begins(self, task: Any, now: float) -> None:
        # the call's start, as its attempt reports it: the meter counts from the same
        # instant (a second reading of the clock, later by a GC pause or a preemption,
        # could put 51 reported starts in one window of a limit of 50)
        unbegun = self.unbegun
        for i in range(len(unbegun) - 1, -1, -1):
            if unbegun[i][0] is task:
                self.meter.moved(unbegun[i][1], now)
                del unbegun[i]
                break
        # a call stopped before it began keeps the start it was let go at
        old = now - self.policy.per
        while unbegun and unbegun[0][1][0] <= old:
            unbegun.popleft()

    async def _wait(self, turn: _Turn, task: Any) -> None:
        await turn.fut  # cancelled with its caller: _left gives the turn back
        clock = self.ctx.clock
        meter = self.meter
        for _ in range(1000):  # bounded: each pass waits for the oldest start to age out
            extra = meter.wait_for_window(clock(), turn.weight)
            if extra <= 0:
                break
            await asyncio.sleep(extra)
        self.unbegun.append((task, meter.record(clock(), turn.weight)))

    def _left(self, turn: _Turn, _fut: asyncio.Future[None]) -> None:
        """A waiting call got its turn, or was cancelled: then the calls after it move up."""
        turns = self.turns
        try:
            index = turns.index(turn)
        except ValueError:  # pragma: no cover - each turn leaves once
            return
        del turns[index]
        if not turn.fut.cancelled():
            return
        if turn.timer is not None:
            turn.timer.cancel()
        shift = self.meter.give_back(turn.weight)
        loop = asyncio.get_running_loop()
        for later in list(turns)[index:]:
            later.start -= shift
            if later.timer is not None:
                later.timer.cancel()
            later.timer = loop.call_at(later.start, _due, later)

    def report(self) -> dict[str, Any]:
        return {"rate": self.policy.rate, "per": self.policy.per}


def _due(turn: _Turn) -> None:
    if not turn.fut.done():
        turn.fut.set_result(None)
