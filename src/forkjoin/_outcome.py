"""Outcome (the terminal record of one task), Status and Results (the keyed run result)."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from ._errors import FanError, TaskSkipped
from ._values import FACTORY, Frozen, set_field

if TYPE_CHECKING:
    from ._report import RunReport

__all__ = ["Attempt", "Outcome", "Results", "RunInfo", "Status", "fan_error"]


class Status(enum.StrEnum):
    """How a task ended."""

    OK = "ok"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


class Attempt(NamedTuple):
    """One call of a task: when it started and ended (run clock), how it ended, and
    ``where`` it ran: ``"thread"``, ``"pid 4242"`` (a process-backend worker), a Dask
    worker's address; ``None`` is the run's event loop."""

    number: int
    started: float
    ended: float
    error: BaseException | None = None
    hedge: bool = False
    where: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


# Outcome and Attempt are NamedTuples: immutable values that CPython builds in ~0.35 µs,
# against ~2.2 µs for a frozen dataclass of the same fields — and one is built per task.
class _OutcomeFields(NamedTuple):
    name: str
    status: Status
    value: Any = None
    error: BaseException | None = None
    reason: str | None = None
    attempts: int = 0
    started: float | None = None
    ended: float | None = None
    cost: float | None = None
    group: str | None = None
    index: int = 0  # type: ignore[assignment]  # shadows tuple.index on purpose
    calls: tuple[Attempt, ...] = ()
    fallback: bool = False
    tokens: int | None = None
    waited: float | None = None
    resumed: bool = False


class Outcome(_OutcomeFields):
    """The terminal record of one task (an immutable value).

    ``started`` (when its first call started) and ``ended`` are seconds since the run
    started (the run's clock); both are ``None`` for a task that never called its function.
    ``waited`` is how long it waited before that first call (for a slot, a rate limit...;
    for a task that depends on others, from when they had all ended). ``reason`` says why
    a task was skipped, cancelled or timed out (``"deadline"``, ``"timeout"``,
    ``"fail_fast"``, ``"max_failures"``, ``"quorum"``, ``"budget"``, ``"circuit_open"``,
    ``"cancelled"``, ``"abandoned"``, ``"dependency"`` ...). ``history`` holds every call
    (:class:`Attempt`). ``index`` is the order the task was added (for ``map``/``imap``,
    the item's position in the input). ``resumed`` is True for a task that was not called
    because a :class:`Journal` held its ok Outcome (value, attempts and cost as recorded).
    """

    __slots__ = ()

    @property
    def history(self) -> tuple[Attempt, ...]:
        """Every call made, in order (empty if the task never started)."""
        if self.calls or self.started is None or self.ended is None:
            return self.calls
        # one call: derived on demand rather than built for every task on the hot path
        return (Attempt(1, self.started, self.ended, self.error),)

    @property
    def ok(self) -> bool:
        """True when the task succeeded (status ``ok``)."""
        return self.status is Status.OK

    @property
    def duration(self) -> float | None:
        """Seconds from the first call's start to the end (waiting for a slot or a rate
        limit before it is not counted); ``None`` if it never started."""
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started

    def unwrap(self) -> Any:
        """The value, or raise the task's error."""
        if self.status is Status.OK:
            return self.value
        if self.error is not None:
            raise self.error
        raise TaskSkipped(self.reason or str(self.status))  # pragma: no cover - error always set

    def __repr__(self) -> str:
        extra = f", reason={self.reason!r}" if self.reason else ""
        shown = f"value={self.value!r}" if self.ok else f"error={self.error!r}"
        return f"Outcome(name={self.name!r}, status={self.status.value!r}, {shown}{extra})"


@dataclass(slots=True, init=False, repr=False, eq=False)
class RunInfo(Frozen):
    """What the report needs beyond the outcomes: the run's clock, settings and policies."""

    wall: float
    started_at: float  # wall-clock epoch seconds when the run started
    limit: int | None = None
    limits: Mapping[str, Any] = field(default_factory=dict)
    run: str | None = None
    policies: Mapping[str, Any] = field(default_factory=dict)  # RunPolicies.report()
    # task name -> the names it waited for (tasks with dependencies only)
    dependencies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __init__(
        self,
        wall: float,
        started_at: float,
        limit: int | None = None,
        limits: Mapping[str, Any] = FACTORY,
        run: str | None = None,
        policies: Mapping[str, Any] = FACTORY,
        dependencies: Mapping[str, tuple[str, ...]] = FACTORY,
    ) -> None:
        set_field(self, "wall", wall)
        set_field(self, "started_at", started_at)
        set_field(self, "limit", limit)
        set_field(self, "limits", {} if limits is FACTORY else limits)
        set_field(self, "run", run)
        set_field(self, "policies", {} if policies is FACTORY else policies)
        set_field(self, "dependencies", {} if dependencies is FACTORY else dependencies)


class Results(Mapping[str, Outcome]):
    """A read-only mapping of task name to :class:`Outcome`, in the order tasks were added."""

    __slots__ = ("_counts", "_info", "_outcomes", "_report")

    def __init__(
        self,
        outcomes: Mapping[str, Outcome],
        info: RunInfo | None = None,
        report: RunReport | None = None,
    ) -> None:
        self._outcomes: dict[str, Outcome] = (
            outcomes if isinstance(outcomes, dict) else dict(outcomes)
        )
        self._info = info
        self._report = report  # given for runs that keep no Outcome per task (map)
        self._counts: dict[str, int] | None = None

    def __getitem__(self, name: str) -> Outcome:
        return self._outcomes[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._outcomes)

    def __len__(self) -> int:
        return len(self._outcomes)

    def __contains__(self, name: object) -> bool:
        return name in self._outcomes

    def counts(self) -> dict[str, int]:
        """How many tasks ended with each status, e.g. ``{"ok": 9, "failed": 1}``."""
        if self._counts is None:
            counts: dict[str, int] = {}
            for o in self._outcomes.values():
                counts[o.status.value] = counts.get(o.status.value, 0) + 1
            self._counts = counts
        return dict(self._counts)

    def __repr__(self) -> str:
        if len(self._outcomes) > 1000 and self._counts is None:
            return f"<Results {len(self)} tasks>"  # repr must stay cheap (asyncio calls it)
        shown = ", ".join(f"{k}={v}" for k, v in self.counts().items())
        return f"<Results {len(self)} tasks: {shown or 'none'}>"

    def ok_values(self) -> dict[str, Any]:
        """``{name: value}`` of the tasks that ended ok."""
        return {n: o.value for n, o in self._outcomes.items() if o.status is Status.OK}

    def failures(self) -> dict[str, Outcome]:
        """``{name: Outcome}`` of the tasks that did not end ok."""
        return {n: o for n, o in self._outcomes.items() if o.status is not Status.OK}

    @property
    def all_ok(self) -> bool:
        """True when every task ended ok (and vacuously for an empty run)."""
        return all(o.status is Status.OK for o in self._outcomes.values())

    def raise_for_failures(self) -> None:
        """Raise :class:`FanError` (carrying these results) if any task was not ok."""
        failed = self.failures()
        if failed:
            raise fan_error(self, failed)

    @property
    def report(self) -> RunReport:
        """The :class:`RunReport` of this run (computed once, on first use)."""
        if self._report is None:
            from ._report import RunReport

            self._report = RunReport.from_outcomes(self._outcomes.values(), self._info)
        return self._report


def fan_error(
    results: Results,
    failed: Mapping[str, Outcome],
    total: int | None = None,
    what: str = "tasks",
) -> FanError:
    """The FanError of a run whose ``failed`` tasks (of ``total``) were not ok."""
    errors: list[Exception] = []
    for o in failed.values():
        err = o.error
        if isinstance(err, Exception):
            errors.append(err)
        else:
            errors.append(TaskSkipped(o.reason or o.status.value))
    shown = []
    for name, o in list(failed.items())[:5]:
        # which one, and how it ended (the error's type: its text may hold a secret)
        how = type(o.error).__name__ if o.status is Status.FAILED and o.error else o.status.value
        label = f"item {name}" if what == "items" else name
        shown.append(f"{label} ({how})")
    names = ", ".join(shown) + (", ..." if len(failed) > 5 else "")
    of = len(results) if total is None else total
    return FanError(f"{len(failed)} of {of} {what} not ok: {names}", errors, results)
