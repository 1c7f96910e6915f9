"""Property tests: random task sets on the virtual clock.

Durations are whole virtual seconds and deadlines end in .5, so a task's end never ties
with the deadline: each outcome is decidable from the virtual times alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

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


# -- map in a group ------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    latencies=st.lists(st.integers(0, 6), min_size=0, max_size=30),
    glimit=st.integers(1, 4),
    limit=limits,
    via=st.sampled_from(["map", "imap", "map_reduce"]),
    lazy=st.booleans(),
    obs=observed,
)
def test_map_in_a_group_keeps_to_the_limits(
    latencies: list[int], glimit: int, limit: int | None, via: str, lazy: bool, obs: bool
) -> None:
    running = [0, 0]
    calls: list[int] = []

    async def work(i: int) -> tuple[str, int]:
        calls.append(i)
        running[0] += 1
        running[1] = max(running[1], running[0])
        try:
            await asyncio.sleep(latencies[i])
        finally:
            running[0] -= 1
        return ("value of", i)

    rec = Recorder()
    n = len(latencies)
    options: dict[str, Any] = {
        "group": "x",
        "groups": {"x": fj.Group(limit=glimit)},
        "limit": limit,
        "observers": [rec] if obs else (),
    }

    def items() -> Iterable[int]:
        return (i for i in range(n)) if lazy else range(n)

    async def main() -> object:
        out: object
        if via == "map":
            out = await fj.map(work, items(), **options)
        elif via == "imap":
            out = [o async for o in fj.imap(work, items(), **options)]
        else:
            out = await fj.map_reduce(work, items(), lambda acc, v: [*acc, v], [], **options)
        no_orphans()
        return out

    out = run(main())
    assert running[1] <= min(glimit, limit or glimit)
    assert sorted(calls) == list(range(n))  # each item called once
    if via == "map":
        assert out == [("value of", i) for i in range(n)]
    elif via == "imap":
        outcomes = out
        assert isinstance(outcomes, list)
        assert sorted(o.index for o in outcomes) == list(range(n))
        assert all(o.ok and o.value == ("value of", o.index) and o.group == "x" for o in outcomes)
    else:
        assert isinstance(out, list)
        assert sorted(out) == [("value of", i) for i in range(n)]
    if obs:
        assert sorted(int(name) for name in rec.finished) == list(range(n))


# -- max_failures --------------------------------------------------------------------------


class Timeline:
    """One ordered log of what happened: calls starting, calls failing (as the function
    sees it) and tasks finishing (as an observer of TaskFinished hears it)."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, fj.Status | None]] = []

    def on_task_finished(self, event: fj.TaskFinished) -> None:
        self.log.append(("end", event.outcome.name, event.outcome.status))

    def finished(self) -> list[str]:
        return [k for what, k, _ in self.log if what == "end"]

    def stop_point(self, n: int, observed: bool) -> int | None:
        """Where in the log the n-th failure for good was recorded (None: never)."""
        seen = 0
        for i, (what, _, status) in enumerate(self.log):
            if observed:
                failed = what == "end" and status in (fj.Status.FAILED, fj.Status.TIMED_OUT)
            else:
                failed = what == "fail"
            if failed:
                seen += 1
                if seen == n:
                    return i
        return None


FAILING = (fj.Status.FAILED, fj.Status.TIMED_OUT)


@settings(max_examples=100, deadline=None)
@given(
    tasks=st.lists(st.tuples(st.integers(0, 6), st.booleans()), min_size=1, max_size=14),
    limit=limits,
    via=st.sampled_from(["gather", "map", "imap"]),
    obs=observed,
    timed=st.booleans(),
    data=st.data(),
)
def test_max_failures_stops_at_the_nth_failure(
    tasks: list[tuple[int, bool]],
    limit: int | None,
    via: str,
    obs: bool,
    timed: bool,
    data: st.DataObject,
) -> None:
    n = data.draw(st.integers(1, len(tasks)), label="max_failures")
    timeout = 4.5 if timed and obs else None  # calls of 5 or 6 s time out
    timeline = Timeline()
    keys = [str(i) for i in range(len(tasks))]

    async def work(i: int) -> tuple[str, int]:
        timeline.log.append(("start", str(i), None))
        seconds, fails = tasks[i]
        await asyncio.sleep(seconds)
        if fails:
            timeline.log.append(("fail", str(i), None))
            raise Boom(str(i))
        return ("value of", i)

    options: dict[str, Any] = {
        "limit": limit,
        "max_failures": n,
        "timeout": timeout,
        "observers": [timeline] if obs else (),
    }

    async def main() -> tuple[dict[str, fj.Outcome], bool]:
        outcomes: dict[str, fj.Outcome] = {}
        raised = False
        try:
            if via == "gather":
                results = await fj.gather(
                    {k: fj.task(work, i) for i, k in enumerate(keys)}, **options
                )
                outcomes = dict(results)
            elif via == "map":
                await fj.map(work, range(len(tasks)), on_error="collect", **options)
            else:
                async for o in fj.imap(work, range(len(tasks)), **options):
                    assert o.name not in outcomes
                    outcomes[o.name] = o
        except fj.FanError as e:
            raised = True
            if via == "gather":
                outcomes = dict(e.results)
            else:
                outcomes.update(e.results)
        no_orphans()
        return outcomes, raised

    outcomes, raised = run(main())
    would_fail = sum(fails or (timeout is not None and s > timeout) for s, fails in tasks)
    stopped = would_fail >= n
    started = [k for what, k, _ in timeline.log if what == "start"]
    assert len(started) == len(set(started))  # no call twice (no retry here)

    # exactly one Outcome per task that ran; gather has one for every task
    if obs:
        assert len(timeline.finished()) == len(set(timeline.finished()))
        assert set(started) <= set(timeline.finished())
    if via == "gather":
        assert list(outcomes) == keys
    if not stopped:
        assert sorted(started, key=int) == keys  # everything ran
        if obs:
            assert sorted(timeline.finished(), key=int) == keys

    failed = [k for k, o in outcomes.items() if o.status in FAILING]
    if stopped:
        # the run stopped at the n-th failure: nothing started after it
        point = timeline.stop_point(n, obs)
        assert point is not None
        assert all(what != "start" for what, _, _ in timeline.log[point + 1 :])
        if obs:
            recorded = [k for what, k, s in timeline.log if what == "end" and s in FAILING]
            assert len(recorded) == n
        assert len(failed) == n
        for o in outcomes.values():
            if o.status in (fj.Status.CANCELLED, fj.Status.SKIPPED):
                assert o.reason == "max_failures"
        if via == "imap":
            assert list(outcomes.values())[-1].status in FAILING
    else:
        assert len(failed) == would_fail
        assert all(o.status in (fj.Status.OK, *FAILING) for o in outcomes.values())

    # FanError iff the run stopped (gather, imap never raises); map raises for any failure
    if via == "gather":
        assert raised == stopped
    elif via == "map":
        assert raised == (would_fail > 0)
    else:
        assert not raised


# -- circuit breaker -----------------------------------------------------------------------


@dataclass
class Circuit:
    """The calls of a breaker's group and the circuit's changes, in one ordered log."""

    log: list[tuple[str, str, float]] = field(default_factory=list)

    def on_circuit_changed(self, event: fj.CircuitChanged) -> None:
        assert event.group == "g"
        self.log.append(("change", event.state, event.time))

    async def call(self, name: str, seconds: int, ok: bool) -> str:
        self.log.append(("call", name, asyncio.get_running_loop().time()))
        await asyncio.sleep(seconds)
        if not ok:
            raise Boom(name)
        return name

    def changes(self) -> list[tuple[float, str]]:
        return [(t, s) for what, s, t in self.log if what == "change"]


steps = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["ok", "fail"]), st.integers(1, 3)),
        st.tuples(st.just("gap"), st.integers(1, 12)),
    ),
    min_size=1,
    max_size=30,
)
resets = st.integers(1, 12).map(lambda n: n + 0.5)  # never ties with whole-second calls


def build_circuit(circuit: Circuit, script: list[tuple[str, int]]) -> dict[str, fj.Task]:
    tasks = {}
    for i, (kind, seconds) in enumerate(script):
        name = f"{kind}{i}"
        if kind == "gap":  # ungrouped: lets time pass, no circuit of its own
            tasks[name] = fj.task(asyncio.sleep, seconds)
        else:
            tasks[name] = fj.task(circuit.call, name, seconds, kind == "ok", group="g")
    return tasks


@settings(max_examples=100, deadline=None)
@given(script=steps, failures=st.integers(1, 3), reset=resets)
def test_breaker_sequential_calls_follow_the_model(
    script: list[tuple[str, int]], failures: int, reset: float
) -> None:
    """One call at a time: the circuit's every decision is predictable."""
    circuit = Circuit()
    tasks = build_circuit(circuit, script)

    async def main() -> fj.Results:
        return await fj.gather(
            tasks,
            limit=1,
            groups={"g": fj.Group(breaker=fj.CircuitBreaker(failures=failures, reset=reset))},
            observers=[circuit],
        )

    results = run(main())

    # the model: closed -> (failures in a row) -> open -> (reset) -> half-open -> one trial
    t = 0.0
    state, failed, opened = "closed", 0, 0.0
    expected: dict[str, str] = {}
    calls: list[tuple[str, float]] = []
    changes: list[tuple[float, str]] = []
    for name, (kind, seconds) in zip(tasks, script, strict=True):
        if kind == "gap":
            t += seconds
            expected[name] = "ok"
            continue
        if state == "open":
            if t < opened + reset:
                expected[name] = "refused"
                continue
            state = "half_open"
            changes.append((t, state))
        calls.append((name, t))
        t += seconds
        if kind == "fail":
            expected[name] = "failed"
            failed += 1
            if state == "half_open" or failed >= failures:
                state, opened = "open", t
                changes.append((t, state))
        else:
            expected[name] = "ok"
            failed = 0
            if state == "half_open":
                state = "closed"
                changes.append((t, state))

    assert [(n, t) for what, n, t in circuit.log if what == "call"] == calls
    assert circuit.changes() == changes
    for name, o in results.items():
        if expected[name] == "refused":
            assert o.status is fj.Status.FAILED
            assert o.reason == "circuit_open"
            assert isinstance(o.error, fj.CircuitOpen)
            assert o.started is None
        else:
            assert o.status.value == expected[name]
    report = results.report.options.get("circuits", {}).get("g")
    if any(kind != "gap" for kind, _ in script):
        assert report is not None
        assert report["state"] == state
        assert report["changes"] == [[t, s] for t, s in changes]


@settings(max_examples=100, deadline=None)
@given(
    script=steps,
    failures=st.integers(1, 3),
    reset=resets,
    limit=st.none() | st.integers(2, 4),
)
def test_breaker_never_calls_while_open(
    script: list[tuple[str, int]], failures: int, reset: float, limit: int | None
) -> None:
    """Concurrent calls: whatever the order, no call while the circuit is open, none
    before ``reset`` has passed since it opened, one trial per half-open spell."""
    circuit = Circuit()
    tasks = build_circuit(circuit, script)

    async def main() -> fj.Results:
        results = await fj.gather(
            tasks,
            limit=limit,
            groups={"g": fj.Group(breaker=fj.CircuitBreaker(failures=failures, reset=reset))},
            observers=[circuit],
        )
        no_orphans()
        return results

    results = run(main())
    legal = {
        "closed": {"open"},
        "open": {"half_open"},
        "half_open": {"closed", "open"},
    }
    state, opened = "closed", 0.0
    trial_calls = 0
    called: set[str] = set()
    for i, (what, value, t) in enumerate(circuit.log):
        if what == "change":
            assert value in legal[state], (state, value)
            if state == "half_open":
                assert trial_calls == 1  # exactly the one trial
            state = value
            if state == "open":
                opened = t
            elif state == "half_open":
                assert t >= opened + reset - 1e-9
                trial_calls = 0
                # the trial is the call granted right then
                assert circuit.log[i + 1][0] == "call"
        else:
            called.add(value)
            assert state != "open", f"{value} called while the circuit was open"
            if state == "half_open":
                trial_calls += 1
                assert trial_calls == 1, "a second call while half-open"
                assert t >= opened + reset - 1e-9
    for name, o in results.items():
        if name.startswith("gap"):
            assert o.ok
        elif name in called:
            assert o.status is (fj.Status.OK if name.startswith("ok") else fj.Status.FAILED)
            assert o.reason is None
        else:
            assert o.status is fj.Status.FAILED
            assert o.reason == "circuit_open"
            assert isinstance(o.error, fj.CircuitOpen)
    report = results.report.options.get("circuits", {}).get("g")
    if report is not None:
        assert report["changes"] == [[round(t, 6), s] for t, s in circuit.changes()]
        assert report["opened"] == sum(1 for _, s in circuit.changes() if s == "open")
