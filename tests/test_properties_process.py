"""The engine's properties (tests/test_properties.py) on the process backend: random task
sets whose calls run in worker processes, with smaller examples.

Calls take real time here (a few milliseconds each), so each property is stated so that
it holds whatever the timing: one Outcome per task in the order added, each value or error
its own, limits held at every instant (from the caller's view, the calls' spans, and from
the workers', the intervals they measured on the machine's one monotonic clock), the
deadline, fail-fast and quorum ending exactly the tasks they should, priorities followed,
per-call timeouts ending the stuck calls (a timeout either no call meets or every stuck one
does), and fj.imap / fj.map giving one Outcome or value per item.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import forkjoin as fj

from .conftest import Children

UNIT = 0.004  # seconds per unit of a task's duration
GROUPS = (None, "a", "b")
SETTINGS = settings(max_examples=20, deadline=None)


@dataclass(frozen=True)
class Spec:
    duration: int
    fails: bool
    priority: int
    group: str | None


class Boom(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def work(name: str, spec: Spec) -> tuple[str, str, float, float]:
    began = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process of the machine
    time.sleep(spec.duration * UNIT)
    if spec.fails:
        raise Boom(name)
    return ("value of", name, began, time.monotonic())


specs = st.builds(
    Spec,
    duration=st.integers(0, 8),
    fails=st.booleans(),
    priority=st.integers(-2, 2),
    group=st.sampled_from(GROUPS),
)
task_lists = st.lists(specs, min_size=1, max_size=8)
limits = st.none() | st.integers(1, 3)
group_limits = st.dictionaries(st.sampled_from(["a", "b"]), st.integers(1, 2))
BACKEND = fj.ProcessBackend(workers=3)


def build(tasks: list[Spec]) -> dict[str, fj.Task]:
    return {
        f"{(i * 7919) % 1000:03d}-{i}": fj.task(
            work, f"{(i * 7919) % 1000:03d}-{i}", s, priority=s.priority, group=s.group
        )
        for i, s in enumerate(tasks)
    }


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    now = peak = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


def worker_intervals(results: fj.Results, group: Any = all) -> list[tuple[float, float]]:
    return [
        (o.value[2], o.value[3])
        for o in results.values()
        if o.ok and (group is all or o.group == group)
    ]


@SETTINGS
@given(
    tasks=task_lists,
    limit=limits,
    glimits=group_limits,
    deadline=st.none() | st.integers(2, 12).map(lambda n: n * UNIT * 2),
)
def test_outcomes_limits_keys_and_deadline(
    tasks: list[Spec],
    limit: int | None,
    glimits: dict[str, int],
    deadline: float | None,
) -> None:
    named = build(tasks)
    spec_of = dict(zip(named, tasks, strict=True))
    watch = Children()
    results = fj.run(named, limit=limit, limits=glimits or None, deadline=deadline, backend=BACKEND)
    assert not watch.left()
    assert list(results) == list(named)
    report = results.report
    if limit is not None:
        assert report.peak_concurrency <= limit
        assert most_at_once(worker_intervals(results)) <= limit
    for g, n in glimits.items():
        if g in report.groups:
            assert report.groups[g]["peak"] <= n
        assert most_at_once(worker_intervals(results, g)) <= n
    for name, o in results.items():
        spec = spec_of[name]
        if o.status is fj.Status.OK:
            assert not spec.fails
            assert o.value[:2] == ("value of", name)
            assert o.history[-1].where
            assert o.history[-1].where.startswith("pid ")
        elif o.status is fj.Status.FAILED:
            assert spec.fails
            assert isinstance(o.error, Boom)
            assert o.error.name == name
        else:
            assert deadline is not None
            assert o.reason == "deadline"
            assert o.status in (fj.Status.TIMED_OUT, fj.Status.SKIPPED)
            assert (o.started is None) is (o.status is fj.Status.SKIPPED)
    if deadline is not None:
        assert report.wall < deadline + 5  # stopped, not waited for
    assert os.getpid() not in {int(w[4:]) for w in report.where if w.startswith("pid ")}


@SETTINGS
@given(tasks=task_lists)
def test_priority_order_under_limit_one(tasks: list[Spec]) -> None:
    named = build(tasks)
    watch = Children()
    results = fj.run(named, limit=1, backend=BACKEND)
    assert not watch.left()
    index = {name: i for i, name in enumerate(named)}
    expected = sorted(named, key=lambda n: (-named[n].priority, index[n]))
    started = sorted(named, key=lambda n: results[n].history[0].started)
    assert started == expected
    assert most_at_once(worker_intervals(results)) <= 1


@SETTINGS
@given(tasks=task_lists, limit=limits)
def test_fail_fast_outcomes(tasks: list[Spec], limit: int | None) -> None:
    named = build(tasks)
    spec_of = dict(zip(named, tasks, strict=True))
    watch = Children()
    try:
        results = fj.run(named, limit=limit, on_error="fail_fast", backend=BACKEND)
        raised = False
    except fj.FanError as e:
        results, raised = e.results, True
    assert not watch.left()
    assert list(results) == list(named)
    failed = [o for o in results.values() if o.status is fj.Status.FAILED]
    assert raised == bool(failed)
    if not failed:
        assert results.all_ok
        return
    (first,) = failed  # the first failure stops the rest: every other call is stopped
    for name, o in results.items():
        if o.status is fj.Status.OK:
            assert o.value[:2] == ("value of", name)
            assert o.ended is not None
            assert first.ended is not None
            assert o.ended <= first.ended
        elif o.status is fj.Status.FAILED:
            assert spec_of[name].fails
        else:
            assert o.status in (fj.Status.CANCELLED, fj.Status.SKIPPED)
            assert o.reason == "fail_fast"


@SETTINGS
@given(tasks=task_lists, limit=limits, data=st.data())
def test_quorum_outcomes(tasks: list[Spec], limit: int | None, data: st.DataObject) -> None:
    quorum = data.draw(st.integers(1, len(tasks)))
    named = build(tasks)
    watch = Children()
    results = fj.run(named, limit=limit, quorum=quorum, backend=BACKEND)
    assert not watch.left()
    assert list(results) == list(named)
    possible = sum(not s.fails for s in tasks)
    ok = results.ok_values()
    assert len(ok) == min(quorum, possible)
    assert all(v[:2] == ("value of", n) for n, v in ok.items())
    for o in results.values():
        if o.status in (fj.Status.CANCELLED, fj.Status.SKIPPED):
            assert o.reason == "quorum"


SHORT = 0.2  # a timeout no quick call meets and every stuck call does
LONG = 30.0  # a timeout no quick call meets, even on a loaded machine


def quick_or_stuck(name: str, stuck: bool, fails: bool) -> str:
    if stuck:
        time.sleep(60)  # only its timeout ends it: the worker running it is killed
    if fails:
        raise Boom(name)
    return f"value of {name}"


@dataclass(frozen=True)
class Timed:
    stuck: bool
    fails: bool
    own: float | None  # the task's own timeout; None: the run's


@SETTINGS
@given(limit=limits, run_timeout=st.sampled_from([SHORT, LONG]), data=st.data())
def test_per_call_timeouts(limit: int | None, run_timeout: float, data: st.DataObject) -> None:
    """Each call ends by its own timeout, or the run's when it has none: a stuck call is
    timed out (its worker killed) no sooner than that timeout, a quick one returns or
    raises its own; one Outcome per task, in the order added, whatever ends between."""

    def timed(stuck: bool) -> st.SearchStrategy[Timed]:
        # a stuck call's timeout is always SHORT, a quick call's always LONG
        want = SHORT if stuck else LONG
        owns = [want] if run_timeout != want else [None, want]
        return st.builds(Timed, st.just(stuck), st.booleans(), st.sampled_from(owns))

    tasks = data.draw(st.lists(st.booleans().flatmap(timed), min_size=1, max_size=5))
    named = {
        f"t{i}": fj.task(quick_or_stuck, f"t{i}", t.stuck, t.fails, timeout=t.own)
        for i, t in enumerate(tasks)
    }
    watch = Children()
    results = fj.run(named, limit=limit, timeout=run_timeout, backend=BACKEND)
    assert not watch.left()
    assert list(results) == list(named)
    if limit is not None:
        assert results.report.peak_concurrency <= limit
    for (name, o), t in zip(results.items(), tasks, strict=True):
        assert o.started is not None
        assert o.ended is not None
        if t.stuck:
            assert o.status is fj.Status.TIMED_OUT
            assert o.reason == "timeout"
            assert isinstance(o.error, fj.TaskTimeout)
            assert o.ended - o.started >= SHORT - 1e-3
            assert o.ended - o.started < 30  # stopped, not waited for
        elif t.fails:
            assert o.status is fj.Status.FAILED
            assert isinstance(o.error, Boom)
            assert o.error.name == name
        else:
            assert o.status is fj.Status.OK
            assert o.value == f"value of {name}"


def tenfold(i: int, duration: int, fails: bool) -> tuple[int, int, float, float]:
    began = time.monotonic()
    time.sleep(duration * UNIT)
    if fails:
        raise Boom(str(i))
    return i * 10, os.getpid(), began, time.monotonic()


@SETTINGS
@given(
    items=st.lists(st.tuples(st.integers(0, 6), st.booleans()), min_size=0, max_size=24),
    limit=limits,
    ordered=st.booleans(),
)
def test_imap_one_outcome_per_item_and_limit(
    items: list[tuple[int, bool]], limit: int | None, ordered: bool
) -> None:
    """fj.imap over a lazy iterator: exactly one Outcome per item, its index and value or
    error its own, in input order when asked, the limit held from the workers' view; and
    fj.map's values, in input order, are the same ones."""

    async def outcomes() -> list[fj.Outcome]:
        return [
            o
            async for o in fj.imap(
                lambda i: tenfold(i, *items[i]),
                iter(range(len(items))),
                limit=limit,
                ordered=ordered,
                backend=BACKEND,
            )
        ]

    watch = Children()
    out = asyncio.run(outcomes())
    assert sorted(o.index for o in out) == list(range(len(items)))
    if ordered:
        assert [o.index for o in out] == list(range(len(items)))
    for o in out:
        if items[o.index][1]:
            assert o.status is fj.Status.FAILED
            assert isinstance(o.error, Boom)
            assert o.error.name == str(o.index)
        else:
            assert o.status is fj.Status.OK
            assert o.value[0] == o.index * 10
            assert o.value[1] != os.getpid()
    if limit is not None:
        assert most_at_once([(o.value[2], o.value[3]) for o in out if o.ok]) <= limit
    quiet = [(d, False) for d, _ in items]
    values = asyncio.run(
        fj.map(lambda i: tenfold(i, *quiet[i])[0], iter(range(len(items))), backend=BACKEND)
    )
    assert values == [i * 10 for i in range(len(items))]
    assert not watch.left()
