"""Events: every state change of a run, in one stream.

The engine emits; observers listen. An observer is any object with ``on_event(event)``.
The report, progress bar, logs, traces and journal are all observers of this stream, and
an absent observer costs nothing (the engine builds no event when nobody listens).
Times are seconds on the run's clock (0.0 = the run started).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ._outcome import Outcome, Results

__all__ = [
    "AttemptFailed",
    "Event",
    "LimitChanged",
    "Observer",
    "RunFinished",
    "RunStarted",
    "TaskFinished",
    "TaskQueued",
    "TaskStarted",
]


@dataclass(frozen=True, slots=True)
class Event:
    """Base of all events: ``run`` identifies the run, ``time`` is the run clock."""

    run: str
    time: float


@dataclass(frozen=True, slots=True)
class RunStarted(Event):
    """A run began. ``options`` holds its run-level settings (limit, deadline, ...)."""

    options: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TaskQueued(Event):
    """A task was added to the run and waits for admission."""

    name: str
    group: str | None
    priority: float


@dataclass(frozen=True, slots=True)
class TaskStarted(Event):
    """A call of a task began (``attempt`` 1 for the first call, 2 for the first retry...)."""

    name: str
    group: str | None
    attempt: int


@dataclass(frozen=True, slots=True)
class AttemptFailed(Event):
    """A call failed. ``delay`` is the wait before the next call, ``None`` if none follows."""

    name: str
    group: str | None
    attempt: int
    error: BaseException
    delay: float | None


@dataclass(frozen=True, slots=True)
class LimitChanged(Event):
    """A group's adaptive concurrency limit changed to ``limit`` (``why``: "grow" or
    "overload")."""

    group: str
    limit: int
    why: str


@dataclass(frozen=True, slots=True)
class TaskFinished(Event):
    """A task reached its terminal Outcome (exactly once per task)."""

    outcome: Outcome


@dataclass(frozen=True, slots=True)
class RunFinished(Event):
    """The run ended; ``results`` holds every task's Outcome (empty for map/imap runs)."""

    results: Results


@runtime_checkable
class Observer(Protocol):
    """Anything with ``on_event(event)``: receives every event of a run, in order."""

    def on_event(self, event: Event) -> None: ...
