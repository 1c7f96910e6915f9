"""OtelObserver: a span per run and per call, under the caller's span (SDK in-memory)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import forkjoin as fj

sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)


@pytest.fixture
def spans() -> Any:
    exporter = InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def _work(d: float, fail: bool = False) -> float:
    await asyncio.sleep(d)
    if fail:
        raise ValueError("broken")
    return d


def test_spans_for_the_run_and_each_call(vrun: Any, spans: Any) -> None:
    provider, exporter = spans
    tracer = provider.get_tracer("test")
    inner_parent: list[Any] = []

    async def traced() -> None:
        # a span made inside a task nests under that task's call span
        with tracer.start_as_current_span("inside") as s:
            inner_parent.append(s.parent.span_id)
        await asyncio.sleep(0.5)

    async def main() -> fj.Results:
        with tracer.start_as_current_span("caller"):
            return await fj.gather(
                {
                    "a": fj.task(_work, 1.0, cost=0.25, group="api"),
                    "b": fj.task(_work, 0.5, True, retry=fj.Retry(attempts=2, backoff=0)),
                    "t": traced,
                    "late": fj.task(_work, 9.0),
                },
                observers=[fj.OtelObserver(tracer_provider=provider)],
                deadline=3,
                limit=3,
            )

    vrun(main())
    finished = exporter.get_finished_spans()
    by_name: dict[str, list[Any]] = {}
    for s in finished:
        by_name.setdefault(s.name, []).append(s)
    (caller,) = by_name["caller"]
    (run,) = by_name["forkjoin.run"]
    assert run.parent.span_id == caller.context.span_id
    calls = by_name["forkjoin.task"]
    assert all(c.parent.span_id == run.context.span_id for c in calls)
    attrs = sorted(
        (
            c.attributes["forkjoin.task"],
            c.attributes["forkjoin.attempt"],
            c.attributes["forkjoin.status"],
        )
        for c in calls
    )
    assert attrs == [
        ("a", 1, "ok"),
        ("b", 1, "failed"),
        ("b", 2, "failed"),
        ("late", 1, "timed_out"),
        ("t", 1, "ok"),
    ]
    a = next(c for c in calls if c.attributes["forkjoin.task"] == "a")
    assert a.attributes["forkjoin.group"] == "api"
    assert a.attributes["forkjoin.cost"] == 0.25
    assert (a.end_time - a.start_time) / 1e9 == pytest.approx(1.0, abs=1e-6)
    b_fail = [c for c in calls if c.attributes["forkjoin.task"] == "b"]
    assert all(c.status.status_code is trace.StatusCode.ERROR for c in b_fail)
    assert all(c.events and c.events[0].name == "exception" for c in b_fail)
    late = next(c for c in calls if c.attributes["forkjoin.task"] == "late")
    assert late.attributes["forkjoin.reason"] == "deadline"
    t_span = next(c for c in calls if c.attributes["forkjoin.task"] == "t")
    assert inner_parent == [t_span.context.span_id]
    assert run.attributes["forkjoin.tasks"] == 4
    assert run.attributes["forkjoin.count.ok"] == 2
    assert run.attributes["forkjoin.deadline"] == 3


def test_skipped_tasks_and_hedges(vrun: Any, spans: Any) -> None:
    provider, exporter = spans
    n = {"calls": 0}

    async def slow_first() -> int:
        n["calls"] += 1
        await asyncio.sleep(5 if n["calls"] == 1 else 1)
        return n["calls"]

    async def main() -> fj.Results:
        return await fj.gather(
            {
                "h": fj.task(slow_first, hedge=fj.Hedge(after=0.5), idempotent=True),
                "x": fj.task(_work, 1.0),
            },
            observers=[fj.OtelObserver(tracer_provider=provider)],
            quorum=1,
            limit=1,
        )

    vrun(main())
    finished = exporter.get_finished_spans()
    run = next(s for s in finished if s.name == "forkjoin.run")
    assert [e.name for e in run.events] == ["forkjoin.task.skipped"]
    assert run.events[0].attributes["forkjoin.reason"] == "quorum"
    h = [s for s in finished if s.name == "forkjoin.task"]
    assert sorted(s.attributes["forkjoin.hedge"] for s in h) == [False, True]
    assert all(s.end_time is not None for s in finished)
