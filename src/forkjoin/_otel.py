"""OpenTelemetry traces: a span per run and per task call (an observer).

Needs the ``forkjoin[otel]`` extra (opentelemetry-api); it is imported only when an
:class:`OtelObserver` is made, so the core never needs it. Without an SDK configured the
API's no-op tracer makes this nearly free.

Spans: ``forkjoin.run`` (parented under the caller's current span when the run starts),
and under it one ``forkjoin.task`` span per call of a task, with the attributes
``forkjoin.task``, ``forkjoin.group``, ``forkjoin.attempt``, ``forkjoin.status``,
``forkjoin.reason``, ``forkjoin.cost`` and ``forkjoin.hedge``. A task that never ran is an
event (``forkjoin.task.skipped``) on the run span, as is an adaptive limit's change
(``forkjoin.limit_changed``) and a circuit breaker's (``forkjoin.circuit_changed``). Times
come from the run's clock, so the
spans line up with the report.
"""

from __future__ import annotations

import time
from typing import Any

from ._errors import TaskCancelled
from ._events import (
    AttemptFailed,
    AttemptStarted,
    CircuitChanged,
    LimitChanged,
    RunFinished,
    RunStarted,
    TaskFinished,
)
from ._secrets import clip, scrub, secrets

__all__ = ["OtelObserver"]


class OtelObserver:
    """Makes OpenTelemetry spans from a run's events.

    ``fj.gather(tasks, observers=[fj.OtelObserver()])``. ``tracer`` defaults to
    ``trace.get_tracer("forkjoin", tracer_provider=tracer_provider)``. A task's span is
    the current span while its call runs, so spans the task makes nest under it.
    One observer follows one run at a time.
    """

    def __init__(self, tracer: Any = None, *, tracer_provider: Any = None) -> None:
        try:
            from opentelemetry import context, trace
        except ImportError as e:  # pragma: no cover - exercised without the extra only
            raise ImportError(
                "fj.OtelObserver needs OpenTelemetry: pip install 'forkjoin[otel]'"
            ) from e
        self._trace = trace
        self._context = context
        if tracer is None:
            from ._version import __version__

            tracer = trace.get_tracer("forkjoin", __version__, tracer_provider=tracer_provider)
        self.tracer = tracer
        self._run_span: Any = None
        self._run_ctx: Any = None
        self._epoch_ns = 0
        self._open: dict[tuple[str, int], Any] = {}
        self._last: dict[str, int] = {}

    def _ns(self, t: float) -> int:
        return self._epoch_ns + int(t * 1e9)

    def _hedge_span(self, o: Any, call: Any) -> None:
        won = call.error is None
        span = self.tracer.start_span(
            "forkjoin.task",
            context=self._run_ctx,
            start_time=self._ns(call.started),
            attributes={
                "forkjoin.task": o.name,
                "forkjoin.group": o.group or "",
                "forkjoin.attempt": call.number,
                "forkjoin.hedge": True,
                "forkjoin.status": "ok"
                if won
                else ("cancelled" if isinstance(call.error, TaskCancelled) else "failed"),
            },
        )
        span.end(end_time=self._ns(call.ended))

    def on_attempt_started(self, event: AttemptStarted) -> None:
        if self._run_ctx is None:
            return
        trace = self._trace
        span = self.tracer.start_span(
            "forkjoin.task",
            context=self._run_ctx,
            start_time=self._ns(event.time),
            attributes={
                "forkjoin.task": event.name,
                "forkjoin.group": event.group or "",
                "forkjoin.attempt": event.attempt,
                "forkjoin.hedge": False,
            },
        )
        self._open[(event.name, event.attempt)] = span
        self._last[event.name] = event.attempt
        # the engine tells us this from inside the task's own asyncio Task (a context of
        # its own), so the task's spans nest under this one; that context dies with the
        # task or is overwritten by the next call, so nothing needs detaching
        self._context.attach(trace.set_span_in_context(span, self._run_ctx))

    def on_attempt_failed(self, event: AttemptFailed) -> None:
        span = self._open.pop((event.name, event.attempt), None)
        if span is None:
            return
        trace = self._trace
        span.set_attribute("forkjoin.status", "failed")
        _record_exception(span, event.error)
        span.set_status(trace.Status(trace.StatusCode.ERROR, clip(str(event.error), 200)))
        span.end(end_time=self._ns(event.time))

    def on_task_finished(self, event: TaskFinished) -> None:
        trace = self._trace
        o = event.outcome
        last = self._last.pop(o.name, None)
        if last is None:
            if self._run_span is not None:
                self._run_span.add_event(
                    "forkjoin.task.skipped",
                    {"forkjoin.task": o.name, "forkjoin.reason": o.reason or ""},
                    timestamp=self._ns(event.time),
                )
            return
        status = o.status.value
        calls = o.history
        lost = {c.number for c in calls if not c.hedge and c.error is not None}
        for attempt in range(1, last + 1):
            span = self._open.pop((o.name, attempt), None)
            if span is None:
                continue
            if status == "ok" and attempt in lost:
                # a hedge answered first and this call was cancelled
                span.set_attribute("forkjoin.status", "cancelled")
                span.end(end_time=self._ns(o.ended if o.ended is not None else event.time))
                continue
            span.set_attribute("forkjoin.status", status)
            if o.reason:
                span.set_attribute("forkjoin.reason", o.reason)
            if o.cost is not None:
                span.set_attribute("forkjoin.cost", float(o.cost))
            if status != "ok":
                if o.error is not None:
                    _record_exception(span, o.error)
                span.set_status(trace.Status(trace.StatusCode.ERROR, status))
            span.end(end_time=self._ns(o.ended if o.ended is not None else event.time))
        # a hedged call's span is drawn from the Outcome's history, once its end is known
        for c in calls:
            if c.hedge:
                self._hedge_span(o, c)

    def on_limit_changed(self, event: LimitChanged) -> None:
        if self._run_span is not None:
            self._run_span.add_event(
                "forkjoin.limit_changed",
                {
                    "forkjoin.group": event.group,
                    "forkjoin.limit": event.limit,
                    "forkjoin.why": event.why,
                },
                timestamp=self._ns(event.time),
            )

    def on_circuit_changed(self, event: CircuitChanged) -> None:
        if self._run_span is not None:
            self._run_span.add_event(
                "forkjoin.circuit_changed",
                {"forkjoin.group": event.group or "", "forkjoin.state": event.state},
                timestamp=self._ns(event.time),
            )

    def on_run_started(self, event: RunStarted) -> None:
        trace = self._trace
        self._epoch_ns = time.time_ns()
        opts = {
            f"forkjoin.{k}": v
            for k, v in event.options.items()
            if isinstance(v, bool | int | float | str)
        }
        # started in the caller's context: parented under its current span
        self._run_span = self.tracer.start_span(
            "forkjoin.run",
            start_time=self._epoch_ns,
            attributes={"forkjoin.run": event.run, **opts},
        )
        self._run_ctx = trace.set_span_in_context(self._run_span)

    def on_run_finished(self, event: RunFinished) -> None:
        span = self._run_span
        if span is None:
            return
        for s in self._open.values():  # never left open, whatever happened
            s.end(end_time=self._ns(event.time))
        self._open.clear()
        self._last.clear()
        report = event.report
        span.set_attribute("forkjoin.tasks", report.tasks)
        for k, v in report.counts.items():
            span.set_attribute(f"forkjoin.count.{k}", v)
        if report.cost:
            span.set_attribute("forkjoin.cost", float(report.cost))
        span.end(end_time=self._ns(event.time))
        self._run_span = self._run_ctx = None


def _record_exception(span: Any, error: BaseException) -> None:
    """The exception as a span event; its message and traceback redacted of the process's
    secrets first (a span is exported as it is: nothing redacts it afterwards)."""
    if not secrets():
        span.record_exception(error)
        return
    import traceback

    trace_text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    span.record_exception(
        error,
        attributes={
            "exception.message": scrub(str(error)),
            "exception.stacktrace": scrub(trace_text),
        },
    )
