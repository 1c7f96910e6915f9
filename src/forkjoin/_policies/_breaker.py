"""CircuitBreaker: stop calling a dependency that keeps failing; try it again later.

After ``failures`` consecutive failed calls the circuit *opens*: the group's tasks then end
at once as FAILED with :class:`CircuitOpen` (reason ``"circuit_open"``) without their
function being called. ``reset`` seconds after it opened, one trial call is let through
(*half-open*): its success closes the circuit, its failure opens it again for another
``reset`` seconds. A cancelled call (deadline, fail-fast) is neither a success nor a failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from .. import _validate
from .._errors import ForkjoinError
from .._events import CircuitChanged
from .._values import FrozenValue, set_field
from ._base import PolicyState, RunContext

__all__ = ["BreakerState", "CircuitBreaker", "CircuitOpen"]


CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(slots=True, init=False, repr=False, eq=False)
class CircuitBreaker(FrozenValue):
    """Open the circuit after ``failures`` consecutive failed calls; let one trial call
    through ``reset`` seconds later. Per group (``fj.Group(breaker=...)``) or for a run
    (``breaker=``: every group, and the tasks without a group, get a circuit of their own)."""

    failures: int = 5
    reset: float = 30.0

    def __init__(
        self,
        failures: int = 5,
        reset: float = 30.0,
    ) -> None:
        set_field(self, "failures", failures)
        set_field(self, "reset", reset)
        self.__post_init__()

    def __post_init__(self) -> None:
        _validate.integer("CircuitBreaker", "failures", self.failures, minimum=1)
        _validate.number("CircuitBreaker", "reset", self.reset, minimum=0, strict=True)


class CircuitOpen(ForkjoinError):
    """The error of a task whose group's circuit was open: its function was not called."""

    def __init__(self, group: str | None, retry_in: float) -> None:
        where = f"group {group!r}" if group is not None else "the run"
        super().__init__(f"the circuit of {where} is open (next trial in {retry_in:.3g}s)")
        self.group = group
        self.retry_in = retry_in


class BreakerState(PolicyState):
    """One circuit: closed, open or half-open."""

    __slots__ = ("changes", "failed", "opened_at", "state", "trial")
    report_as = ("circuit", "circuits")
    order = 0

    def __init__(self, policy: CircuitBreaker, group: str | None, ctx: RunContext) -> None:
        super().__init__(policy, group, ctx)
        self.state = CLOSED
        self.failed = 0  # consecutive failed calls
        self.opened_at = 0.0
        self.trial: Any = None  # the task let through for the half-open trial
        self.changes: list[tuple[float, str]] = []

    def before(self, task: Any) -> Awaitable[Any] | None:
        state = self.state
        if state is CLOSED:
            return None
        now = self.ctx.clock()
        if state is OPEN:
            wait = self.opened_at + self.policy.reset - now
            if wait > 0:
                raise CircuitOpen(self.group, wait)
            self._change(HALF_OPEN, now)
        if self.trial is not None:  # half-open: one trial at a time; the others fail at once
            raise CircuitOpen(self.group, 0.0)
        self.trial = task
        return None

    def ended(self, task: Any, token: Any, error: BaseException | None, duration: float) -> None:
        state = self.state
        if state is CLOSED:
            if error is None:
                self.failed = 0
            elif not isinstance(error, asyncio.CancelledError | CircuitOpen):
                self.failed += 1
                if self.failed >= self.policy.failures:
                    self._open()
            return
        trial = task is self.trial
        if not trial:
            return  # a call from before the circuit opened: the trial decides
        self.trial = None
        if isinstance(error, asyncio.CancelledError | CircuitOpen):
            return  # the trial was stopped: the next call may try
        if error is None:
            self.failed = 0
            self._change(CLOSED, self.ctx.clock())
        else:
            self._open()

    def _open(self) -> None:
        now = self.ctx.clock()
        self.opened_at = now
        self._change(OPEN, now)

    def _change(self, state: str, now: float) -> None:
        self.state = state
        t = now - self.ctx.t0
        self.changes.append((t, state))
        ctx = self.ctx
        if ctx.listens("circuit_changed"):
            ctx.emit("circuit_changed", CircuitChanged(ctx.name, t, self.group, state))

    def report(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "opened": sum(1 for _, s in self.changes if s == OPEN),
            "changes": [[round(t, 6), s] for t, s in self.changes],
        }
