"""Events: every state change of a run, in one stream, and the observers that hear them.

The engine emits; observers listen. An observer subscribes per event with a method named
after it (``on_task_finished(event)``, ``on_attempt_started(event)`` ... see
:data:`HOOKS`), or to every event with ``on_event(event)``. The engine builds an event only
when someone subscribes to it, so an absent observer costs nothing. Observers run on the
event loop, in order, and must be quick: one that blocks slows the tasks it watches (wrap
a slow one in a queue of your own). An observer that raises is disabled for the rest of
the run and the error is logged once. Times are seconds on the run's clock (0.0 = the run
started). Events are plain values: treat them as read-only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ._errors import InvalidPolicy
from ._values import Value

if TYPE_CHECKING:
    from ._outcome import Outcome, Results
    from ._report import RunReport

__all__ = [
    "HOOKS",
    "AttemptFailed",
    "AttemptStarted",
    "CircuitChanged",
    "Event",
    "HedgeStarted",
    "LimitChanged",
    "Observer",
    "Observers",
    "RunFinished",
    "RunStarted",
    "TaskFinished",
    "TaskQueued",
    "TaskStarted",
    "check_observer",
]

log = logging.getLogger("forkjoin")


# Plain slotted dataclasses: a frozen one sets each field through object.__setattr__ and
# costs ~4x as much to build, and the engine builds up to three events per task. Their
# methods are written out (see forkjoin._values: generated ones cost every run's start-up).
@dataclass(slots=True, init=False, repr=False, eq=False)
class Event(Value):
    """Base of all events: ``run`` identifies the run, ``time`` is the run clock."""

    run: str
    time: float

    def __init__(self, run: str, time: float) -> None:
        self.run = run
        self.time = time


@dataclass(slots=True, init=False, repr=False, eq=False)
class RunStarted(Event):
    """A run began. ``options`` holds its run-level settings (limit, deadline, ...)."""

    options: dict[str, Any]

    def __init__(self, run: str, time: float, options: dict[str, Any]) -> None:
        self.run = run
        self.time = time
        self.options = options


@dataclass(slots=True, init=False, repr=False, eq=False)
class TaskQueued(Event):
    """A task was added to the run and waits for admission."""

    name: str
    group: str | None
    priority: float

    def __init__(
        self,
        run: str,
        time: float,
        name: str,
        group: str | None,
        priority: float,
    ) -> None:
        self.run = run
        self.time = time
        self.name = name
        self.group = group
        self.priority = priority


@dataclass(slots=True, init=False, repr=False, eq=False)
class AttemptStarted(Event):
    """A call of a task began (``attempt`` 1 for the first call, 2 for the first retry...)."""

    name: str
    group: str | None
    attempt: int

    def __init__(self, run: str, time: float, name: str, group: str | None, attempt: int) -> None:
        self.run = run
        self.time = time
        self.name = name
        self.group = group
        self.attempt = attempt


TaskStarted = AttemptStarted  # the name of this event before duplicates had one of their own


@dataclass(slots=True, init=False, repr=False, eq=False)
class HedgeStarted(Event):
    """A duplicate of a slow call began (a :class:`~forkjoin.Hedge`): the ``number``-th
    duplicate of call ``attempt``."""

    name: str
    group: str | None
    attempt: int
    number: int

    def __init__(
        self,
        run: str,
        time: float,
        name: str,
        group: str | None,
        attempt: int,
        number: int,
    ) -> None:
        self.run = run
        self.time = time
        self.name = name
        self.group = group
        self.attempt = attempt
        self.number = number


@dataclass(slots=True, init=False, repr=False, eq=False)
class AttemptFailed(Event):
    """A call failed. ``delay`` is the wait before the next call, ``None`` if none follows."""

    name: str
    group: str | None
    attempt: int
    error: BaseException
    delay: float | None

    def __init__(
        self,
        run: str,
        time: float,
        name: str,
        group: str | None,
        attempt: int,
        error: BaseException,
        delay: float | None,
    ) -> None:
        self.run = run
        self.time = time
        self.name = name
        self.group = group
        self.attempt = attempt
        self.error = error
        self.delay = delay


@dataclass(slots=True, init=False, repr=False, eq=False)
class LimitChanged(Event):
    """A group's adaptive concurrency limit changed to ``limit`` (``why``: "grow" or
    "overload")."""

    group: str
    limit: int
    why: str

    def __init__(self, run: str, time: float, group: str, limit: int, why: str) -> None:
        self.run = run
        self.time = time
        self.group = group
        self.limit = limit
        self.why = why


@dataclass(slots=True, init=False, repr=False, eq=False)
class CircuitChanged(Event):
    """A circuit breaker changed ``state`` (``"open"``, ``"half_open"`` or ``"closed"``);
    ``group`` is None for the circuit of the tasks without a group."""

    group: str | None
    state: str

    def __init__(self, run: str, time: float, group: str | None, state: str) -> None:
        self.run = run
        self.time = time
        self.group = group
        self.state = state


@dataclass(slots=True, init=False, repr=False, eq=False)
class TaskFinished(Event):
    """A task reached its terminal Outcome (exactly once per task)."""

    outcome: Outcome

    def __init__(self, run: str, time: float, outcome: Outcome) -> None:
        self.run = run
        self.time = time
        self.outcome = outcome

    @property
    def name(self) -> str:
        """The task's name."""
        return self.outcome.name


@dataclass(slots=True, init=False, repr=False, eq=False)
class RunFinished(Event):
    """The run ended; ``results`` holds every task's Outcome (for ``map``/``imap`` runs, which
    keep no Outcome per item, it is empty) and ``report`` the run's report."""

    results: Results

    def __init__(self, run: str, time: float, results: Results) -> None:
        self.run = run
        self.time = time
        self.results = results

    @property
    def report(self) -> RunReport:
        """The run's :class:`~forkjoin.RunReport` (for map runs too)."""
        return self.results.report


# hook name -> event class; an observer method ``on_<hook>`` subscribes to that event
HOOKS: dict[str, type[Event]] = {
    "run_started": RunStarted,
    "task_queued": TaskQueued,
    "attempt_started": AttemptStarted,
    "hedge_started": HedgeStarted,
    "attempt_failed": AttemptFailed,
    "limit_changed": LimitChanged,
    "circuit_changed": CircuitChanged,
    "task_finished": TaskFinished,
    "run_finished": RunFinished,
}


@runtime_checkable
class Observer(Protocol):
    """Anything with ``on_event(event)`` (every event) or some ``on_<hook>(event)``
    methods (those events only; see :data:`HOOKS`)."""

    def on_event(self, event: Event) -> None: ...


def check_observer(where: str, observer: Any) -> None:
    """InvalidPolicy unless ``observer`` has ``on_event`` or an ``on_<hook>`` method."""
    if callable(getattr(observer, "on_event", None)):
        return
    if any(callable(getattr(observer, "on_" + hook, None)) for hook in HOOKS):
        return
    raise InvalidPolicy(f"{where}: {observer!r} has no on_event(event) or on_<event>(event) method")


Subscriber = tuple[Any, Callable[[Any], None]]


class Observers:
    """The observers of one run, by hook: ``observers.task_finished`` is the list of those
    subscribed to :class:`TaskFinished` (empty: build no such event)."""

    __slots__ = ("_broken", *HOOKS)

    run_started: list[Subscriber]
    task_queued: list[Subscriber]
    attempt_started: list[Subscriber]
    hedge_started: list[Subscriber]
    attempt_failed: list[Subscriber]
    limit_changed: list[Subscriber]
    circuit_changed: list[Subscriber]
    task_finished: list[Subscriber]
    run_finished: list[Subscriber]

    def __init__(self, observers: Iterable[Any] = ()) -> None:
        self._broken: set[int] = set()
        for hook in HOOKS:
            setattr(self, hook, [])
        for o in observers:
            catch_all = getattr(o, "on_event", None)
            for hook in HOOKS:
                method = getattr(o, "on_" + hook, None)
                if not callable(method):
                    method = catch_all if callable(catch_all) else None
                if method is not None:
                    getattr(self, hook).append((o, method))

    def __bool__(self) -> bool:
        return any(getattr(self, hook) for hook in HOOKS)

    def listens(self, hook: str) -> bool:
        subscribers: list[Subscriber] = getattr(self, hook)
        return bool(subscribers)

    def emit(self, hook: str, event: Event) -> None:
        """Tell every subscriber of ``hook``, in order."""
        self.send(getattr(self, hook), event)

    def send(self, subscribers: list[Subscriber], event: Event) -> None:
        """Tell ``subscribers`` (one of this object's per-hook lists) about ``event``. The
        engine inlines this loop where it counts; both call :meth:`failed` on an error."""
        for observer, method in subscribers:
            try:
                method(event)
            except Exception:
                self.failed(observer, event)

    def failed(self, observer: Any, event: Event) -> None:
        """``observer`` raised on ``event`` (in an ``except`` block): log it once and
        disable it for the rest of the run."""
        # one log record, then silence: a broken observer must neither break the run nor
        # flood the log with a traceback per event
        if id(observer) in self._broken:
            return
        self._broken.add(id(observer))
        log.exception(
            "forkjoin observer %r failed on %s; it is disabled for the rest of the run",
            observer,
            type(event).__name__,
        )
        # silenced in place at once (a loop may be iterating these lists right now, and
        # removing an entry would skip the next observer), dropped on the next loop pass
        for hook in HOOKS:
            subscribers: list[Subscriber] = getattr(self, hook)
            for k, (o, _) in enumerate(subscribers):
                if o is observer:
                    subscribers[k] = (observer, _ignore)
        try:
            asyncio.get_running_loop().call_soon(self._remove, observer)
        except RuntimeError:
            self._remove(observer)

    def _remove(self, observer: Any) -> None:
        for hook in HOOKS:
            subscribers: list[Subscriber] = getattr(self, hook)
            subscribers[:] = [s for s in subscribers if s[0] is not observer]


def _ignore(event: Event) -> None:
    """What a disabled observer is told until it is dropped."""
