"""CircuitBreaker: per group and per run, through the engine on the virtual clock, and its
state class on its own (driven by a fake run context)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import forkjoin as fj
from forkjoin._policies._breaker import BreakerState

from .conftest import no_orphans


class Calls:
    """The calls the functions really received: (name, virtual time)."""

    def __init__(self) -> None:
        self.log: list[tuple[str, float]] = []

    def names(self) -> list[str]:
        return [n for n, _ in self.log]

    async def call(self, name: str, seconds: float, ok: bool) -> str:
        self.log.append((name, asyncio.get_running_loop().time()))
        await asyncio.sleep(seconds)
        if not ok:
            raise ConnectionError(name)
        return name


class Changes:
    """Every CircuitChanged event (subscribed to that event only)."""

    def __init__(self) -> None:
        self.events: list[fj.CircuitChanged] = []

    def on_circuit_changed(self, event: fj.CircuitChanged) -> None:
        self.events.append(event)

    def states(self) -> list[tuple[str | None, str, float]]:
        return [(e.group, e.state, e.time) for e in self.events]


def refused(o: fj.Outcome) -> bool:
    """The task ended at once because its circuit was open: its function was not called."""
    return (
        o.status is fj.Status.FAILED
        and o.reason == "circuit_open"
        and isinstance(o.error, fj.CircuitOpen)
        and o.attempts == 0
        and o.started is None
    )


def in_group(breaker: fj.CircuitBreaker) -> dict[str, fj.Group]:
    return {"g": fj.Group(breaker=breaker)}


# -- through the engine -------------------------------------------------------------------


def test_opens_after_consecutive_failures_and_refuses_without_calling(vrun: Any) -> None:
    calls = Calls()
    changes = Changes()

    async def main() -> fj.Results:
        results = await fj.gather(
            {
                "f1": fj.task(calls.call, "f1", 1, False, group="g"),
                "ok": fj.task(calls.call, "ok", 1, True, group="g"),  # resets the count
                "f2": fj.task(calls.call, "f2", 1, False, group="g"),
                "f3": fj.task(calls.call, "f3", 1, False, group="g"),
                "f4": fj.task(calls.call, "f4", 1, False, group="g"),
                "r1": fj.task(calls.call, "r1", 1, True, group="g"),
                "r2": fj.task(calls.call, "r2", 1, True, group="g"),
                "free": fj.task(calls.call, "free", 1, True),  # no group: no circuit
            },
            limit=1,
            groups=in_group(fj.CircuitBreaker(failures=3, reset=30)),
            observers=[changes],
        )
        no_orphans()
        return results

    results = vrun(main())
    assert calls.names() == ["f1", "ok", "f2", "f3", "f4", "free"]
    assert [results[n].status for n in ("f1", "f2", "f3", "f4")] == [fj.Status.FAILED] * 4
    assert results["ok"].ok
    assert results["free"].ok
    assert refused(results["r1"])
    assert refused(results["r2"])
    assert results["r1"].error.group == "g"  # type: ignore[union-attr]
    assert changes.states() == [("g", "open", 5.0)]


def test_half_open_trial_success_closes_the_circuit(vrun: Any) -> None:
    calls = Calls()
    changes = Changes()

    async def main() -> fj.Results:
        breaker = fj.CircuitBreaker(failures=2, reset=10)
        async with fj.Fan(groups=in_group(breaker), observers=[changes]) as fan:
            fan.spawn("f1", calls.call, "f1", 1, False, group="g")
            fan.spawn("f2", calls.call, "f2", 2, False, group="g")  # opens at 2
            await asyncio.sleep(5)
            fan.spawn("early", calls.call, "early", 1, True, group="g")  # open until 12
            await asyncio.sleep(7)  # t = 12
            fan.spawn("trial", calls.call, "trial", 3, True, group="g")
            await asyncio.sleep(1)  # t = 13: the trial is in flight
            fan.spawn("during", calls.call, "during", 1, True, group="g")
            await asyncio.sleep(3)  # t = 16: the trial closed the circuit at 15
            fan.spawn("after", calls.call, "after", 1, True, group="g")
        no_orphans()
        return fan.results

    results = vrun(main())
    assert calls.log == [("f1", 0.0), ("f2", 0.0), ("trial", 12.0), ("after", 16.0)]
    assert refused(results["early"])
    assert refused(results["during"])  # one trial at a time
    assert results["trial"].ok
    assert results["after"].ok
    assert changes.states() == [("g", "open", 2.0), ("g", "half_open", 12.0), ("g", "closed", 15.0)]


def test_half_open_trial_failure_opens_it_again_for_another_reset(vrun: Any) -> None:
    calls = Calls()
    changes = Changes()

    async def main() -> fj.Results:
        breaker = fj.CircuitBreaker(failures=2, reset=10)
        async with fj.Fan(groups=in_group(breaker), observers=[changes]) as fan:
            fan.spawn("f1", calls.call, "f1", 1, False, group="g")
            fan.spawn("f2", calls.call, "f2", 2, False, group="g")  # opens at 2
            await asyncio.sleep(12)
            fan.spawn("trial1", calls.call, "trial1", 1, False, group="g")  # reopens at 13
            await asyncio.sleep(8)  # t = 20: 13 + 10 not reached
            fan.spawn("early", calls.call, "early", 1, True, group="g")
            await asyncio.sleep(4)  # t = 24
            fan.spawn("trial2", calls.call, "trial2", 1, True, group="g")
        no_orphans()
        return fan.results

    results = vrun(main())
    assert calls.names() == ["f1", "f2", "trial1", "trial2"]
    assert results["trial1"].status is fj.Status.FAILED
    assert isinstance(results["trial1"].error, ConnectionError)
    assert refused(results["early"])
    assert results["trial2"].ok
    assert changes.states() == [
        ("g", "open", 2.0),
        ("g", "half_open", 12.0),
        ("g", "open", 13.0),
        ("g", "half_open", 24.0),
        ("g", "closed", 25.0),
    ]
    report = results.report.options["circuits"]["g"]
    assert report["state"] == "closed"
    assert report["opened"] == 2
    assert report["changes"] == [
        [2.0, "open"],
        [12.0, "half_open"],
        [13.0, "open"],
        [24.0, "half_open"],
        [25.0, "closed"],
    ]


@pytest.mark.parametrize(
    "retry",
    [fj.Retry(attempts=5, backoff=0), fj.Retry(attempts=5, backoff=0, on=(Exception,))],
    ids=["default", "on-every-exception"],
)
def test_retries_of_an_open_circuit_call_nothing(vrun: Any, retry: fj.Retry) -> None:
    calls = Calls()
    seen: dict[str, int] = {}

    async def flaky(name: str) -> None:
        seen[name] = seen.get(name, 0) + 1
        await calls.call(name, 1, False)

    async def main() -> fj.Results:
        return await fj.gather(
            {"a": fj.task(flaky, "a", group="g"), "b": fj.task(flaky, "b", group="g")},
            limit=1,
            retry=retry,
            groups=in_group(fj.CircuitBreaker(failures=2, reset=30)),
        )

    results = vrun(main())
    # a: two calls open the circuit; its third is refused and not retried; b: refused
    assert seen == {"a": 2}
    a = results["a"]
    assert a.status is fj.Status.FAILED
    assert a.reason == "circuit_open"
    assert isinstance(a.error, fj.CircuitOpen)
    assert a.attempts == 2
    assert [type(c.error) for c in a.history] == [ConnectionError, ConnectionError]
    assert refused(results["b"])


def test_a_cancelled_call_counts_neither_way(vrun: Any) -> None:
    """A hedge's losing call is cancelled: with failures=1 it would open the circuit if it
    counted as a failure."""
    calls = Calls()
    changes = Changes()
    number = {"n": 0}

    async def lookup() -> int:
        number["n"] += 1
        me = number["n"]
        await calls.call(f"call{me}", 10 if me == 1 else 0.1, True)
        return me

    async def main() -> fj.Results:
        async with fj.Fan(
            groups=in_group(fj.CircuitBreaker(failures=1, reset=30)), observers=[changes]
        ) as fan:
            fan.spawn("hedged", lookup, group="g", idempotent=True, hedge=fj.Hedge(after=0.5))
            await asyncio.sleep(2)
            fan.spawn("next", calls.call, "next", 1, True, group="g")
        return fan.results

    results = vrun(main())
    assert results["hedged"].value == 2
    assert [a.hedge for a in results["hedged"].history] == [False, True]
    assert results["next"].ok  # the circuit stayed closed
    assert calls.names() == ["call1", "call2", "next"]
    assert changes.events == []
    assert results.report.options["circuits"]["g"] == {
        "state": "closed",
        "opened": 0,
        "changes": [],
    }


def test_a_run_stop_cancelling_calls_does_not_open_the_circuit(vrun: Any) -> None:
    calls = Calls()

    async def main() -> fj.Results:
        return await fj.gather(
            {
                "quick": fj.task(calls.call, "quick", 1, True, group="g"),
                "slow1": fj.task(calls.call, "slow1", 10, False, group="g"),
                "slow2": fj.task(calls.call, "slow2", 10, False, group="g"),
            },
            quorum=1,
            groups=in_group(fj.CircuitBreaker(failures=1, reset=30)),
        )

    results = vrun(main())
    assert results["slow1"].status is fj.Status.CANCELLED
    assert results["slow2"].status is fj.Status.CANCELLED
    circuit = results.report.options["circuits"]["g"]
    assert circuit["state"] == "closed"
    assert circuit["opened"] == 0


def test_run_level_breaker_gives_every_group_its_own_circuit(vrun: Any) -> None:
    calls = Calls()
    changes = Changes()

    async def main() -> fj.Results:
        tasks: dict[str, Any] = {}
        for i in range(3):
            tasks[f"a{i}"] = fj.task(calls.call, f"a{i}", 1, False, group="a")
        for i in range(3):
            tasks[f"b{i}"] = fj.task(calls.call, f"b{i}", 1, i != 0, group="b")
        for i in range(3):
            tasks[f"u{i}"] = fj.task(calls.call, f"u{i}", 1, False)
        return await fj.gather(
            tasks, limit=1, breaker=fj.CircuitBreaker(failures=2, reset=60), observers=[changes]
        )

    results = vrun(main())
    assert calls.names() == ["a0", "a1", "b0", "b1", "b2", "u0", "u1"]
    assert refused(results["a2"])
    assert refused(results["u2"])
    assert results["b1"].ok
    assert results["b2"].ok
    assert [(g, s) for g, s, _ in changes.states()] == [("a", "open"), (None, "open")]
    assert results["u2"].error.group is None  # type: ignore[union-attr]
    circuits = results.report.options["circuits"]
    assert circuits["a"]["state"] == "open"
    assert circuits["b"]["state"] == "closed"
    assert circuits[""]["state"] == "open"  # the tasks without a group
    assert circuits["a"]["opened"] == circuits[""]["opened"] == 1
    assert circuits["b"]["opened"] == 0


def test_a_groups_own_breaker_wins_over_the_runs(vrun: Any) -> None:
    calls = Calls()

    async def main() -> fj.Results:
        return await fj.gather(
            {f"t{i}": fj.task(calls.call, f"t{i}", 1, i < 2, group="g") for i in range(5)},
            limit=1,
            breaker=fj.CircuitBreaker(failures=1, reset=60),
            groups=in_group(fj.CircuitBreaker(failures=4, reset=60)),
        )

    # t0, t1 ok; t2, t3, t4 fail: three failures, the group's circuit needs four
    results = vrun(main())
    assert calls.names() == ["t0", "t1", "t2", "t3", "t4"]
    assert results.report.options["circuits"]["g"]["state"] == "closed"


def test_map_items_in_a_group_with_a_breaker(vrun: Any) -> None:
    called: list[int] = []

    async def work(i: int) -> int:
        called.append(i)
        await asyncio.sleep(1)
        raise ConnectionError(i)

    async def main() -> list[fj.Outcome]:
        stream = fj.imap(
            work,
            range(6),
            group="g",
            limit=1,
            groups=in_group(fj.CircuitBreaker(failures=2, reset=60)),
        )
        out = [o async for o in stream]
        no_orphans()
        return out

    outcomes = sorted(vrun(main()), key=lambda o: o.index)
    assert called == [0, 1]
    assert [o.reason for o in outcomes] == [None, None] + ["circuit_open"] * 4
    assert all(refused(o) for o in outcomes[2:])


def test_circuit_changed_events_carry_the_run_and_the_run_clock(vrun: Any) -> None:
    calls = Calls()
    changes = Changes()

    async def main() -> fj.Results:
        await asyncio.sleep(100)  # the run's clock starts at 0 whatever the loop's says
        return await fj.gather(
            {"f": fj.task(calls.call, "f", 2, False, group="g")},
            groups=in_group(fj.CircuitBreaker(failures=1, reset=5)),
            observers=[changes],
            name="svc",
        )

    vrun(main())
    assert len(changes.events) == 1
    e = changes.events[0]
    assert isinstance(e, fj.CircuitChanged)
    assert (e.run, e.time, e.group, e.state) == ("svc", 2.0, "g", "open")


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: fj.CircuitBreaker(failures=0), "CircuitBreaker.failures"),
        (lambda: fj.CircuitBreaker(failures=-3), "CircuitBreaker.failures"),
        (lambda: fj.CircuitBreaker(failures=True), "CircuitBreaker.failures"),
        (lambda: fj.CircuitBreaker(failures=2.5), "CircuitBreaker.failures"),
        (lambda: fj.CircuitBreaker(reset=-1), "CircuitBreaker.reset"),
        (lambda: fj.CircuitBreaker(reset=0), "CircuitBreaker.reset"),
        (lambda: fj.CircuitBreaker(reset=float("nan")), "CircuitBreaker.reset"),
        (lambda: fj.CircuitBreaker(reset=float("inf")), "CircuitBreaker.reset"),
        (lambda: fj.Group(breaker="x"), "Group.breaker"),  # type: ignore[arg-type]
        (lambda: fj.Fan(breaker="x"), "breaker"),  # type: ignore[arg-type]
        (lambda: fj.Fan(breaker=fj.Group()), "breaker"),  # type: ignore[arg-type]
    ],
)
def test_bad_values_name_the_field(build: Any, field: str) -> None:
    with pytest.raises(fj.InvalidPolicy, match=rf"^{field}: "):
        build()


def test_defaults() -> None:
    assert fj.CircuitBreaker() == fj.CircuitBreaker(failures=5, reset=30.0)
    assert issubclass(fj.CircuitOpen, fj.ForkjoinError)


# -- the state on its own -----------------------------------------------------------------


class FakeRun:
    """What a policy state may use of its run (see _policies._base.RunContext)."""

    def __init__(self, *, listening: bool = True) -> None:
        self.name = "fake-run"
        self.t0 = 1000.0
        self.now = 1000.0
        self.listening = listening
        self.emitted: list[tuple[str, Any]] = []

    def clock(self) -> float:
        return self.now

    def listens(self, hook: str) -> bool:
        return self.listening

    def emit(self, hook: str, event: Any) -> None:
        self.emitted.append((hook, event))

    def states(self) -> list[tuple[float, str]]:
        return [(e.time, e.state) for _, e in self.emitted]


def breaker(failures: int = 3, reset: float = 10.0, **kw: Any) -> tuple[BreakerState, FakeRun]:
    ctx = FakeRun(**kw)
    return BreakerState(fj.CircuitBreaker(failures=failures, reset=reset), "g", ctx), ctx


class Call:
    """One call of its own task through the state's hooks: before, started, ended."""

    def __init__(self, state: BreakerState) -> None:
        self.state = state
        self.task = object()
        self.token: Any = None

    def begin(self) -> Call:
        """Let the call through (CircuitOpen if the circuit refuses it)."""
        assert self.state.before(self.task) is None
        self.token = self.state.started(self.task)
        return self

    def end(self, error: BaseException | None = None, duration: float = 0.1) -> None:
        self.state.ended(self.task, self.token, error, duration)


def call(state: BreakerState, error: BaseException | None = None) -> None:
    """One whole call (it raises CircuitOpen if refused)."""
    Call(state).begin().end(error)


def refusal(state: BreakerState) -> fj.CircuitOpen:
    """The error a new call gets from the circuit (it must refuse it)."""
    with pytest.raises(fj.CircuitOpen) as info:
        Call(state).begin()
    return info.value


def test_state_opens_after_consecutive_failures_only() -> None:
    state, ctx = breaker(failures=3)
    call(state, ValueError())
    call(state, ValueError())
    call(state)  # a success resets the count
    call(state, ValueError())
    call(state, ValueError())
    assert state.state == "closed"
    ctx.now += 4
    call(state, ValueError())
    assert state.state == "open"
    assert ctx.states() == [(4.0, "open")]
    hook, event = ctx.emitted[0]
    assert hook == "circuit_changed"
    assert isinstance(event, fj.CircuitChanged)
    assert (event.run, event.group) == ("fake-run", "g")


def test_state_refuses_while_open_saying_when_it_retries() -> None:
    state, ctx = breaker(failures=1, reset=10)
    call(state, ValueError())
    ctx.now += 4
    error = refusal(state)
    assert error.group == "g"
    assert error.retry_in == pytest.approx(6.0)
    ctx.now += 5.999
    refusal(state)
    assert state.state == "open"
    assert len(ctx.emitted) == 1  # refusals change nothing


def test_state_half_open_lets_one_trial_through() -> None:
    state, ctx = breaker(failures=1, reset=10)
    call(state, ValueError())
    ctx.now += 10
    trial = Call(state).begin()
    assert state.state == "half_open"
    assert refusal(state).retry_in == 0.0  # a second call while the trial is in flight
    ctx.now += 1
    trial.end(None, 1.0)
    assert state.state == "closed"
    assert ctx.states() == [(0.0, "open"), (10.0, "half_open"), (11.0, "closed")]
    call(state)  # closed: calls go through
    call(state)
    assert state.state == "closed"


def test_state_trial_failure_reopens_for_a_full_reset() -> None:
    state, ctx = breaker(failures=3, reset=10)
    for _ in range(3):
        call(state, ValueError())
    ctx.now += 12
    trial = Call(state).begin()
    ctx.now += 1
    trial.end(ValueError(), 1.0)  # one failure is enough when half-open
    assert state.state == "open"
    assert state.opened_at == ctx.now
    ctx.now += 9.5
    refusal(state)
    ctx.now += 0.5
    call(state)
    assert ctx.states() == [(0.0, "open"), (12.0, "half_open"), (13.0, "open"),
                            (23.0, "half_open"), (23.0, "closed")]  # fmt: skip
    report = state.report()
    assert report["state"] == "closed"
    assert report["opened"] == 2
    assert report["changes"] == [[t, s] for t, s in ctx.states()]


def test_state_after_closing_it_takes_failures_in_a_row_again() -> None:
    state, ctx = breaker(failures=2, reset=10)
    call(state, ValueError())
    call(state, ValueError())
    ctx.now += 10
    call(state)  # the trial closes it
    call(state, ValueError())
    assert state.state == "closed"  # one failure after closing is not two in a row
    call(state, ValueError())
    assert state.state == "open"


def test_state_cancelled_calls_count_neither_way() -> None:
    state, _ = breaker(failures=2)
    call(state, ValueError())
    call(state, asyncio.CancelledError())  # not a success: the count stays
    call(state, ValueError())
    assert state.state == "open"

    state, _ = breaker(failures=1)
    for _ in range(5):
        call(state, asyncio.CancelledError())  # not a failure either
    assert state.state == "closed"
    call(state, ValueError())
    assert state.state == "open"


def test_state_a_cancelled_trial_lets_the_next_call_try() -> None:
    state, ctx = breaker(failures=1, reset=10)
    call(state, ValueError())
    ctx.now += 10
    Call(state).begin().end(asyncio.CancelledError(), 0.5)
    assert state.state == "half_open"  # no verdict
    call(state)  # the next call is the trial
    assert state.state == "closed"


def test_state_refusals_passed_back_count_neither_way() -> None:
    state, _ = breaker(failures=1)
    Call(state).begin().end(fj.CircuitOpen("g", 1.0), 0.0)
    assert state.state == "closed"
    call(state)
    assert state.state == "closed"


def test_state_calls_from_before_the_open_are_ignored() -> None:
    """Calls in flight when the circuit opens report back later: only the trial decides."""
    state, ctx = breaker(failures=1, reset=10)
    old_ok = Call(state).begin()
    old_bad = Call(state).begin()
    call(state, ValueError())  # opens
    old_ok.end(None, 1.0)  # a success while open does not close it
    assert state.state == "open"
    refusal(state)
    ctx.now += 10
    trial = Call(state).begin()
    old_bad.end(ValueError(), 1.0)  # an old failure during the trial decides nothing
    assert state.state == "half_open"
    trial.end(None, 1.0)
    assert state.state == "closed"


def test_state_builds_no_event_when_nobody_listens() -> None:
    state, ctx = breaker(failures=1, listening=False)
    call(state, ValueError())
    assert state.state == "open"
    assert ctx.emitted == []
    assert state.report()["changes"] == [[0.0, "open"]]


def test_state_of_the_ungrouped_tasks() -> None:
    ctx = FakeRun()
    state = BreakerState(fj.CircuitBreaker(failures=1), None, ctx)
    call(state, ValueError())
    assert ctx.emitted[0][1].group is None
    error = refusal(state)
    assert error.group is None
    assert "the run" in str(error)
