"""Errors raised by forkjoin.

The hierarchy::

    ForkjoinError                 base of every forkjoin error
    ├── InvalidPolicy (ValueError)     a bad option or policy value; names the field
    ├── DuplicateTaskName (ValueError) a task name already used in this run
    ├── FanClosed (RuntimeError)       spawn() on a run that has ended
    ├── TaskTimeout (TimeoutError)     stored as Outcome.error of a timed-out task
    ├── TaskCancelled                  stored as Outcome.error of a cancelled task
    ├── TaskSkipped                    stored as Outcome.error of a task never started
    │   └── DependencyFailed           ... because a task it depends on did not end ok
    ├── JournalError                   a journal file that cannot be used; says what to do
    │   └── JournalLocked              another live process is running that journal run
    ├── TaskNotSerializable (TypeError) a call cannot be pickled to or from a worker
    ├── WorkerLost                     the worker running a call died (a failed attempt)
    ├── RetryAfter                     raised by a task: "retry after n seconds" (its group
    │                                  pauses too); defined in _policies/_retry_after.py
    ├── CircuitOpen                    stored as Outcome.error of a task its open circuit
    │                                  refused; defined in _policies/_breaker.py
    └── BudgetExceeded                 raised by fj.charge() when the budget refuses the
                                       charge; defined in _policies/_budget.py
    FanError (ExceptionGroup)          some tasks were not ok; carries .results
    Interrupted (KeyboardInterrupt)    Ctrl-C during fj.run(); carries the partial .results
    JournalWarning (UserWarning)       a journaled task runs again (its call changed), or
                                       its value cannot be stored
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._outcome import Results

__all__ = [
    "DependencyFailed",
    "DuplicateTaskName",
    "FanClosed",
    "FanError",
    "ForkjoinError",
    "Interrupted",
    "InvalidPolicy",
    "JournalError",
    "JournalLocked",
    "JournalWarning",
    "TaskCancelled",
    "TaskNotSerializable",
    "TaskSkipped",
    "TaskTimeout",
    "WorkerLost",
]


class ForkjoinError(Exception):
    """Base class of forkjoin's own errors."""


class InvalidPolicy(ForkjoinError, ValueError):
    """An option or policy value is invalid; the message names the field."""


class DuplicateTaskName(ForkjoinError, ValueError):
    """A task name is already used in this run."""


class JournalError(ForkjoinError):
    """A journal file cannot be used (not a journal, corrupt, a newer schema...): the
    message is one line saying which file, what is wrong and what to do. Nothing was
    written to the file."""


class JournalLocked(JournalError):
    """Another live process (``pid``) is running the same journal run."""

    def __init__(self, message: str, pid: int) -> None:
        super().__init__(message)
        self.pid = pid


class JournalWarning(UserWarning):
    """A journaled task runs again because what it calls changed, or its value could not
    be stored (it will run again next time)."""


class FanClosed(ForkjoinError, RuntimeError):
    """A task was spawned on a run that has already ended."""


class TaskTimeout(ForkjoinError, TimeoutError):
    """The error recorded for a task stopped by its timeout or by the run's deadline."""


class TaskCancelled(ForkjoinError):
    """The error recorded for a task that was cancelled; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__("cancelled" if reason == "cancelled" else f"cancelled ({reason})")
        self.reason = reason


class TaskSkipped(ForkjoinError):
    """The error recorded for a task that never started; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__("skipped" if reason == "skipped" else f"skipped ({reason})")
        self.reason = reason


class TaskNotSerializable(ForkjoinError, TypeError):
    """A task's function, an argument or its value cannot be pickled to or from the worker
    of a process or Dask backend; the message names which. Not retried by default (a second
    call fails the same way)."""


class WorkerLost(ForkjoinError):
    """The worker process running a call died (it crashed, exited or was killed by someone
    else): that call is one failed attempt, which a :class:`Retry` calls again on a fresh
    worker."""


class DependencyFailed(TaskSkipped):
    """The error of a task skipped because a task it depends on did not end ok (reason
    ``"dependency"``): ``dependency`` is that task's name and ``status`` how it ended (None:
    it was never spawned); ``root`` names the task whose failure started the chain of
    skips (``dependency`` itself unless that one was skipped for a dependency too)."""

    def __init__(
        self, dependency: str, status: str | None, root: str | None = None,
        root_status: str | None = None, detail: str | None = None,
    ) -> None:  # fmt: skip
        super().__init__("dependency")
        self.dependency = dependency
        self.status = status
        self.root = dependency if root is None else root
        self.root_status = status if root is None else root_status
        if status is None:
            how = f"dependency {dependency!r} was never spawned"
        else:
            how = f"dependency {dependency!r} {_ENDED.get(status, status)}"
        if self.root != dependency:
            how += f", because {self.root!r} {_ENDED.get(self.root_status or '', 'ended')}"
        elif detail:
            how += f" {detail}" if detail.startswith("(") else f": {detail}"
        self.args = (f"skipped ({how})",)

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> Any:
        return (
            DependencyFailed,
            (self.dependency, self.status, self.root, self.root_status),
            {"args": self.args},
        )


_ENDED = {
    "failed": "failed",
    "timed_out": "timed out",
    "cancelled": "was cancelled",
    "skipped": "was skipped",
    "never": "was never spawned",
}


class FanError(ExceptionGroup[Exception]):
    """Some tasks did not end ok.

    An ``ExceptionGroup`` of the failed tasks' errors (so ``except*`` works), which also
    carries the run's keyed ``results``.
    """

    results: Results

    def __new__(
        cls, message: str, exceptions: Sequence[Exception], results: Results | None = None
    ) -> FanError:
        self = super().__new__(cls, message, exceptions)
        if results is not None:
            self.results = results
        return self

    def __init__(
        self, message: str, exceptions: Sequence[Exception], results: Results | None = None
    ) -> None:
        super().__init__(message, exceptions)

    def derive(self, excs: Sequence[Exception]) -> FanError:  # type: ignore[override]
        return FanError(self.message, excs, getattr(self, "results", None))

    def __reduce__(self) -> Any:
        return (FanError, (self.message, list(self.exceptions), getattr(self, "results", None)))


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped a :func:`forkjoin.run`; ``results`` holds every task's Outcome."""

    def __init__(self, results: Results) -> None:
        super().__init__("interrupted")
        self.results = results


ABANDONED = " (abandoned: the call could not be stopped where it ran; its late result is ignored)"


def stopped_error(name: str, reason: str, abandoned: bool = False) -> BaseException:
    """The error recorded for a call the run stopped: TaskTimeout for its deadline,
    TaskCancelled (with the reason) otherwise; ``abandoned``: the call could not be stopped
    (a thread, a sync call on a Dask worker) and the error says so."""
    if reason == "deadline":
        return TaskTimeout(
            f"task {name!r} stopped by the run's deadline" + (ABANDONED if abandoned else "")
        )
    error = TaskCancelled(reason)
    if abandoned:
        error.args = (f"{error}{ABANDONED}",)
    return error
