"""Property tests: random task sets on the virtual clock.

Durations are whole virtual seconds and deadlines end in .5, so a task's end never ties
with the deadline: each outcome is decidable from the virtual times alone.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

import forkjoin as fj
from forkjoin.testing import run

from .conftest import no_orphans

GROUPS = (None, "a", "b")


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


@dataclass
class Gauge:
    running: int = 0
    peak: int = 0
    group_running: dict[str | None, int] = field(default_factory=dict)
    group_peak: dict[str | None, int] = field(default_factory=dict)
    starts: list[str] = field(default_factory=list)

    async def work(self, name: str, spec: Spec) -> tuple[str, str]:
        self.starts.append(name)
        self.running += 1
        self.peak = max(self.peak, self.running)
        g = self.group_running[spec.group] = self.group_running.get(spec.group, 0) + 1
        self.group_peak[spec.group] = max(self.group_peak.get(spec.group, 0), g)
        try:
            await asyncio.sleep(spec.duration)
        finally:
            self.running -= 1
            self.group_running[spec.group] -= 1
        if spec.fails:
            raise Boom(name)
        return ("value of", name)


class Recorder:
    def __init__(self) -> None:
        self.finished: list[str] = []

    def on_event(self, event: fj.Event) -> None:
        if isinstance(event, fj.TaskFinished):
            self.finished.append(event.outcome.name)


specs = st.builds(
    Spec,
    duration=st.integers(0, 8),
    fails=st.booleans(),
    priority=st.integers(-2, 2),
    group=st.sampled_from(GROUPS),
)
task_lists = st.lists(specs, min_size=1, max_size=14)
limits = st.none() | st.integers(1, 5)
group_limits = st.dictionaries(st.sampled_from(["a", "b"]), st.integers(1, 3))
deadlines = st.none() | st.integers(0, 20).map(lambda n: n + 0.5)
observed = st.booleans()  # the engine takes a different path with observers


def build(gauge: Gauge, tasks: list[Spec]) -> dict[str, fj.Task]:
    # names that do not sort like their order, so "added order" is really tested
    return {
        f"{(i * 7919) % 1000:03d}-{i}": fj.task(
            gauge.work, f"{(i * 7919) % 1000:03d}-{i}", s, priority=s.priority, group=s.group
        )
        for i, s in enumerate(tasks)
    }


@settings(max_examples=80, deadline=None)
@given(tasks=task_lists, limit=limits, glimits=group_limits, deadline=deadlines, obs=observed)
def test_outcomes_limits_keys_and_deadline(
    tasks: list[Spec],
    limit: int | None,
    glimits: dict[str, int],
    deadline: float | None,
    obs: bool,
) -> None:
    gauge = Gauge()
    rec = Recorder()
    named = build(gauge, tasks)
    spec_of = dict(zip(named, tasks, strict=True))

    async def main() -> fj.Results:
        results = await fj.gather(
            named,
            limit=limit,
            limits=glimits or None,
            deadline=deadline,
            observers=[rec] if obs else (),
        )
        no_orphans()
        return results

    results = run(main())

    # exactly one Outcome per task, in the order added
    assert list(results) == list(named)
    if obs:
        assert sorted(rec.finished) == sorted(named)

    # limits held at every instant
    if limit is not None:
        assert gauge.peak <= limit
    for g, n in glimits.items():
        assert gauge.group_peak.get(g, 0) <= n
    assert results.report.peak_concurrency <= (limit or len(tasks))

    for name, o in results.items():
        spec = spec_of[name]
        assert o.name == name
        if o.started is None:
            assert o.status is fj.Status.SKIPPED
            assert deadline is not None
            assert o.reason == "deadline"
            continue
        assert o.started == int(o.started)  # starts happen when whole-second tasks end
        if deadline is None or o.started + spec.duration < deadline:
            # finished on its own: ok or failed as its spec says, with its own value
            assert o.ended == o.started + spec.duration
            if spec.fails:
                assert o.status is fj.Status.FAILED
                assert isinstance(o.error, Boom)
                assert o.error.name == name
            else:
                assert o.status is fj.Status.OK
                assert o.value == ("value of", name)
        else:
            assert o.status is fj.Status.TIMED_OUT
            assert o.reason == "deadline"
            assert o.ended == deadline
    if deadline is not None:
        assert results.report.wall <= deadline


halves = st.integers(0, 6).map(lambda n: n + 0.5)  # never ties with a whole-second duration


@settings(max_examples=80, deadline=None)
@given(
    tasks=task_lists,
    limit=limits,
    timeout=halves,
    own=st.lists(st.none() | halves, min_size=14, max_size=14),
    obs=observed,
)
def test_per_call_timeouts(
    tasks: list[Spec], limit: int | None, timeout: float, own: list[float | None], obs: bool
) -> None:
    """Each call ends at start + min(duration, its timeout), whichever timeouts share a
    deadline queue (the run's, or a task's own) and whatever ends in between."""
    gauge = Gauge()
    named = {
        f"t{i}": fj.task(gauge.work, f"t{i}", s, priority=s.priority, group=s.group, timeout=own[i])
        for i, s in enumerate(tasks)
    }
    spec_of = dict(zip(named, tasks, strict=True))
    own_of = dict(zip(named, own, strict=False))

    async def main() -> fj.Results:
        results = await fj.gather(
            named, limit=limit, timeout=timeout, observers=[Recorder()] if obs else ()
        )
        no_orphans()
        return results

    results = run(main())
    assert list(results) == list(named)
    if limit is not None:
        assert gauge.peak <= limit
    for name, o in results.items():
        spec = spec_of[name]
        limit_s = own_of[name] if own_of[name] is not None else timeout
        assert o.started is not None
        assert o.ended is not None
        if spec.duration > limit_s:
            assert o.status is fj.Status.TIMED_OUT
            assert o.reason == "timeout"
            assert isinstance(o.error, fj.TaskTimeout)
            assert o.ended == o.started + limit_s
        else:
            assert o.ended == o.started + spec.duration
            assert o.status is (fj.Status.FAILED if spec.fails else fj.Status.OK)


@settings(max_examples=60, deadline=None)
@given(tasks=task_lists, obs=observed)
def test_priority_order_under_limit_one(tasks: list[Spec], obs: bool) -> None:
    gauge = Gauge()
    named = build(gauge, tasks)
    rec = Recorder()
    run(fj.gather(named, limit=1, observers=[rec] if obs else ()))
    index = {name: i for i, name in enumerate(named)}
    expected = sorted(named, key=lambda n: (-named[n].priority, index[n]))
    assert gauge.starts == expected


@settings(max_examples=60, deadline=None)
@given(tasks=task_lists, glimits=group_limits)
def test_priority_order_within_a_limited_group(tasks: list[Spec], glimits: dict[str, int]) -> None:
    """Tasks of one group with limit 1 start by priority, FIFO among equals."""
    gauge = Gauge()
    single = [Spec(s.duration, s.fails, s.priority, "a") for s in tasks]
    named = build(gauge, single)
    run(fj.gather(named, limits={"a": 1}))
    index = {name: i for i, name in enumerate(named)}
    assert gauge.starts == sorted(named, key=lambda n: (-named[n].priority, index[n]))
    assert gauge.group_peak["a"] == 1


@settings(max_examples=60, deadline=None)
@given(tasks=task_lists, limit=limits)
def test_fail_fast_outcomes(tasks: list[Spec], limit: int | None) -> None:
    gauge = Gauge()
    named = build(gauge, tasks)
    spec_of = dict(zip(named, tasks, strict=True))

    async def main() -> tuple[fj.Results, bool]:
        try:
            results = await fj.gather(named, limit=limit, on_error="fail_fast")
        except fj.FanError as e:
            no_orphans()
            return e.results, True
        return results, False

    results, raised = run(main())
    assert list(results) == list(named)
    failed = [o for o in results.values() if o.status is fj.Status.FAILED]
    assert raised == bool(failed)
    if not failed:
        assert results.all_ok
        return
    first = min(o.ended for o in failed if o.ended is not None)
    for name, o in results.items():
        if o.status is fj.Status.OK:
            assert o.ended is not None
            assert o.ended <= first
            assert o.value == ("value of", name)
        elif o.status is fj.Status.FAILED:
            assert spec_of[name].fails
            assert o.ended == first
        else:
            assert o.status in (fj.Status.CANCELLED, fj.Status.SKIPPED)
            assert o.reason == "fail_fast"
            assert o.ended in (None, first)


@settings(max_examples=60, deadline=None)
@given(tasks=task_lists, limit=limits, data=st.data())
def test_quorum_outcomes(tasks: list[Spec], limit: int | None, data: st.DataObject) -> None:
    quorum = data.draw(st.integers(1, len(tasks)))
    gauge = Gauge()
    named = build(gauge, tasks)
    rec = Recorder()

    async def main() -> fj.Results:
        results = await fj.gather(named, limit=limit, quorum=quorum, observers=[rec])
        no_orphans()
        return results

    results = run(main())
    assert list(results) == list(named)
    assert sorted(rec.finished) == sorted(named)
    possible = sum(not s.fails for s in tasks)
    ok = results.ok_values()
    assert len(ok) == min(quorum, possible)
    assert all(v == ("value of", n) for n, v in ok.items())
    for o in results.values():
        if o.status in (fj.Status.CANCELLED, fj.Status.SKIPPED):
            assert o.reason == "quorum"


@settings(max_examples=40, deadline=None)
@given(
    durations=st.lists(st.integers(0, 6), min_size=1, max_size=40),
    limit=st.integers(1, 6),
    ordered=st.booleans(),
)
def test_imap_keys_and_limit(durations: list[int], limit: int, ordered: bool) -> None:
    running = [0, 0]

    async def work(i: int) -> int:
        running[0] += 1
        running[1] = max(running[1], running[0])
        try:
            await asyncio.sleep(durations[i])
        finally:
            running[0] -= 1
        return i * 10

    async def main() -> list[fj.Outcome]:
        out = [
            o
            async for o in fj.imap(work, iter(range(len(durations))), limit=limit, ordered=ordered)
        ]
        no_orphans()
        return out

    outcomes = run(main())
    assert sorted(o.index for o in outcomes) == list(range(len(durations)))
    assert all(o.value == o.index * 10 for o in outcomes)
    if ordered:
        assert [o.index for o in outcomes] == list(range(len(durations)))
    assert running[1] <= limit


@settings(max_examples=40, deadline=None)
@given(
    durations=st.lists(st.integers(0, 6), min_size=0, max_size=40),
    limit=st.none() | st.integers(1, 6),
)
def test_map_values_in_input_order(durations: list[int], limit: int | None) -> None:
    async def work(i: int) -> str:
        await asyncio.sleep(durations[i])
        return f"v{i}"

    values = run(fj.map(work, (i for i in range(len(durations))), limit=limit))
    assert values == [f"v{i}" for i in range(len(durations))]
