"""Logs: one stdlib ``logging`` record per state change of a run (an observer).

Records go to the ``forkjoin.tasks`` logger (under ``forkjoin``), which has a
NullHandler: quiet unless the application configures logging. As with httpx and urllib3,
enabling that logger (``logging.basicConfig(level=logging.INFO)``, or INFO/DEBUG on
``forkjoin`` or ``forkjoin.tasks``) is all it takes: each run checks once, when it is
made, and then logs with no observer given; with logging off a run pays nothing. An
explicit :class:`LogObserver` is for a logger of your own. Each record carries its
fields in ``extra`` (``event``, ``run``, ``task``, ``group``, ``attempt``, ``status``,
``reason``, ``duration``, ``cost``, ``error``, ``delay``; ``limit`` and ``why`` when an
adaptive limit changes), so structured formatters can use
them. Task values and arguments are never logged — they may hold secrets — unless
``log_values=True`` (then an ok task's value is in ``extra["value"]``, as its repr).
"""

from __future__ import annotations

import logging
from typing import Any

from ._events import (
    AttemptFailed,
    AttemptStarted,
    CircuitChanged,
    HedgeStarted,
    LimitChanged,
    RunFinished,
    RunStarted,
    TaskFinished,
    TaskQueued,
)
from ._secrets import clip, scrub

__all__ = ["LogObserver", "with_logging"]

# quiet unless the application configures logging (the engine's own "forkjoin" logger, which
# reports broken observers, keeps logging's last-resort output)
_TASKS = logging.getLogger("forkjoin.tasks")
_TASKS.addHandler(logging.NullHandler())

# the hooks a LogObserver logs at DEBUG only: not subscribed to when DEBUG is off
_DEBUG_HOOKS = ("on_task_queued", "on_attempt_started", "on_hedge_started")
_OTHER_HOOKS = ("on_run_started", "on_attempt_failed", "on_limit_changed",
                "on_circuit_changed", "on_task_finished", "on_run_finished")  # fmt: skip

_VALUE_CHARS = 500


def _error_text(error: BaseException | None) -> str | None:
    if error is None:
        return None
    text = str(error)
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return scrub(text, cut=True)  # a message may hold a secret (or its maker cut one)


class LogObserver:
    """Logs every state change of a run through stdlib logging.

    ``fj.gather(tasks, observers=[fj.LogObserver()])``. Levels: run start/end and task ends
    at ``level`` (INFO), a task that did not end ok and a failed call at WARNING, queued and
    started at DEBUG. ``logger`` defaults to ``logging.getLogger("forkjoin.tasks")``. A
    record is built only when the logger is enabled for its level.
    """

    def __init__(
        self,
        logger: logging.Logger | str | None = None,
        *,
        level: int = logging.INFO,
        log_values: bool = False,
    ) -> None:
        if logger is None:
            logger = "forkjoin.tasks"
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.level = level
        self.log_values = log_values

    # one method per event it logs: the engine builds no other event for it

    def on_task_finished(self, event: TaskFinished) -> None:
        log = self.logger
        o = event.outcome
        bad = o.status.value != "ok"
        level = logging.WARNING if bad else self.level
        if not log.isEnabledFor(level):
            return
        extra: dict[str, Any] = {
            "event": "task_finished",
            "run": event.run,
            "task": o.name,
            "group": o.group,
            "attempt": o.attempts,
            "status": o.status.value,
            "reason": o.reason,
            "duration": o.duration,
            "cost": o.cost,
            "error": _error_text(o.error) if bad else None,
        }
        if self.log_values and not bad:
            extra["value"] = clip(repr(o.value), _VALUE_CHARS)
        if bad:
            log.log(
                level,
                "task %s %s%s after %d attempt(s): %s",
                o.name,
                o.status.value,
                f" ({o.reason})" if o.reason else "",
                o.attempts,
                extra["error"],
                extra=extra,
            )
        else:
            log.log(
                level,
                "task %s ok in %.3fs (%d attempt(s))",
                o.name,
                o.duration or 0.0,
                o.attempts,
                extra=extra,
            )

    def on_attempt_started(self, event: AttemptStarted) -> None:
        log = self.logger
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "task %s started (attempt %d)",
                event.name,
                event.attempt,
                extra={
                    "event": "task_started",
                    "run": event.run,
                    "task": event.name,
                    "group": event.group,
                    "attempt": event.attempt,
                    "status": "running",
                },
            )

    def on_hedge_started(self, event: HedgeStarted) -> None:
        log = self.logger
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "task %s: duplicate call %d of attempt %d",
                event.name,
                event.number,
                event.attempt,
                extra={
                    "event": "hedge_started",
                    "run": event.run,
                    "task": event.name,
                    "group": event.group,
                    "attempt": event.attempt,
                    "status": "running",
                },
            )

    def on_attempt_failed(self, event: AttemptFailed) -> None:
        log = self.logger
        if log.isEnabledFor(logging.WARNING):
            err = _error_text(event.error)
            then = "no retry" if event.delay is None else f"retry in {event.delay:.3f}s"
            log.warning(
                "task %s attempt %d failed: %s; %s",
                event.name,
                event.attempt,
                err,
                then,
                extra={
                    "event": "attempt_failed",
                    "run": event.run,
                    "task": event.name,
                    "group": event.group,
                    "attempt": event.attempt,
                    "status": "retrying" if event.delay is not None else "failed",
                    "error": err,
                    "delay": event.delay,
                },
            )

    def on_task_queued(self, event: TaskQueued) -> None:
        log = self.logger
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "task %s queued",
                event.name,
                extra={
                    "event": "task_queued",
                    "run": event.run,
                    "task": event.name,
                    "group": event.group,
                    "status": "queued",
                },
            )

    def on_run_started(self, event: RunStarted) -> None:
        log = self.logger
        if log.isEnabledFor(self.level):
            options = {k: v for k, v in event.options.items() if v not in (None, {}, ())}
            log.log(
                self.level,
                "run %s started %s",
                event.run,
                options,
                extra={"event": "run_started", "run": event.run, "status": "running"},
            )

    def on_limit_changed(self, event: LimitChanged) -> None:
        log = self.logger
        if log.isEnabledFor(self.level):
            log.log(
                self.level,
                "group %s limit now %d (%s)",
                event.group,
                event.limit,
                event.why,
                extra={
                    "event": "limit_changed",
                    "run": event.run,
                    "group": event.group,
                    "limit": event.limit,
                    "why": event.why,
                },
            )

    def on_circuit_changed(self, event: CircuitChanged) -> None:
        log = self.logger
        level = logging.WARNING if event.state == "open" else self.level
        if log.isEnabledFor(level):
            log.log(
                level,
                "circuit of %s %s",
                f"group {event.group}" if event.group is not None else "the ungrouped tasks",
                event.state.replace("_", "-"),
                extra={
                    "event": "circuit_changed",
                    "run": event.run,
                    "group": event.group,
                    "state": event.state,
                },
            )

    def on_run_finished(self, event: RunFinished) -> None:
        log = self.logger
        if not log.isEnabledFor(self.level):
            return
        counts = event.report.counts  # map runs too: the report counts every item
        log.log(
            self.level,
            "run %s finished in %.3fs: %s",
            event.run,
            event.time,
            ", ".join(f"{k} {v}" for k, v in counts.items()) or "no tasks",
            extra={
                "event": "run_finished",
                "run": event.run,
                "status": "finished",
                "duration": event.time,
                "counts": counts,
            },
        )


def with_logging(observers: tuple[Any, ...]) -> tuple[Any, ...]:
    """``observers``, plus the run's log when the application has enabled INFO or DEBUG on
    ``forkjoin.tasks`` (or above it); checked once per run. The log subscribes only to the
    events whose records its logger keeps, so DEBUG off builds no queued/started events;
    a LogObserver already given for that logger is not doubled."""
    if not _TASKS.isEnabledFor(logging.INFO):
        return observers
    if any(isinstance(o, LogObserver) and o.logger is _TASKS for o in observers):
        return observers
    obs = LogObserver()
    hooks = _OTHER_HOOKS + (_DEBUG_HOOKS if _TASKS.isEnabledFor(logging.DEBUG) else ())
    return (*observers, _Hooks({name: getattr(obs, name) for name in hooks}))


class _Hooks:
    """Some of an observer's methods, as an observer (what the engine subscribes to)."""

    def __init__(self, methods: dict[str, Any]) -> None:
        self.__dict__.update(methods)

    def __repr__(self) -> str:
        return "<forkjoin's log of the run (logger 'forkjoin.tasks')>"
