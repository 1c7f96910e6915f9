"""The policies through the engine, on the virtual clock (deterministic, no real sleeps)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import forkjoin as fj
from forkjoin.testing import run as vrun_
from tests.conftest import no_orphans

SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


class Recorder:
    def __init__(self) -> None:
        self.events: list[fj.Event] = []

    def on_event(self, event: fj.Event) -> None:
        self.events.append(event)


def _max_window(times: list[tuple[float, float]], per: float) -> float:
    """Most weight starting in any half-open window of ``per`` (times: (start, weight))."""
    times = sorted(times)
    best = 0.0
    for i, (t, _) in enumerate(times):
        total = sum(w for s, w in times[i:] if s < t + per - 1e-9)
        best = max(best, total)
    return best


# -- property tests --------------------------------------------------------------------


@SETTINGS
@given(
    fails=st.lists(st.integers(0, 6), min_size=1, max_size=12),
    attempts=st.integers(1, 5),
)
def test_attempts_never_exceed_the_bound(fails: list[int], attempts: int) -> None:
    calls: dict[str, int] = {}

    async def flaky(name: str, n: int) -> str:
        calls[name] = calls.get(name, 0) + 1
        await asyncio.sleep(0.01)
        if calls[name] <= n:
            raise fj.RetryAfter(0.5) if n % 2 else ConnectionError(name)
        return name

    async def main() -> fj.Results:
        return await fj.gather(
            {f"t{i}": fj.task(flaky, f"t{i}", n, group="g") for i, n in enumerate(fails)},
            retry=fj.Retry(attempts=attempts, backoff=0.1),
            limits={"g": fj.AdaptiveLimit(initial=2)},
        )

    results = vrun_(main())
    for i, n in enumerate(fails):
        o = results[f"t{i}"]
        assert calls[f"t{i}"] == o.attempts == min(n + 1, attempts)
        assert len(o.history) == o.attempts
        assert o.ok == (n < attempts)


@SETTINGS
@given(
    rate=st.integers(1, 20),
    per=st.sampled_from([0.5, 1.0, 60.0]),
    burst=st.one_of(st.none(), st.integers(0, 5)),
    weights=st.lists(st.integers(1, 3), min_size=1, max_size=40),
    limit=st.one_of(st.none(), st.integers(1, 8)),
)
def test_rate_windows_never_exceed_the_limit(
    rate: int, per: float, burst: int | None, weights: list[int], limit: int | None
) -> None:
    weights = [min(w, rate + (burst or 0)) for w in weights]
    starts: list[tuple[float, float]] = []

    async def work(w: int) -> None:
        starts.append((asyncio.get_running_loop().time(), w))
        await asyncio.sleep(0.05)

    async def main() -> fj.Results:
        return await fj.gather(
            {f"t{i}": fj.task(work, w, group="api", weight=w) for i, w in enumerate(weights)},
            limit=limit,
            rates={"api": fj.RateLimit(rate, per=per, burst=burst)},
        )

    results = vrun_(main())
    assert results.all_ok
    assert _max_window(starts, per) <= rate + (burst or 0)
    if not burst:
        assert _max_window(starts, per) <= rate


@SETTINGS
@given(
    script=st.lists(st.sampled_from(["ok", "slow", "429", "boom"]), min_size=1, max_size=60),
    initial=st.integers(1, 8),
    lo=st.integers(1, 3),
    hi=st.integers(8, 12),
)
def test_adaptive_limit_stays_within_bounds(
    script: list[str], initial: int, lo: int, hi: int
) -> None:
    initial = max(lo, min(initial, hi))
    policy = fj.AdaptiveLimit(initial=initial, min=lo, max=hi)
    running = {"now": 0, "peak_over": 0}
    rec = Recorder()
    limits_seen: list[int] = []

    async def call(kind: str) -> str:
        running["now"] += 1
        try:
            await asyncio.sleep(0.3 if kind == "slow" else 0.1)
            if kind == "429":
                raise fj.RetryAfter(0.05)
            if kind == "boom":
                raise ValueError(kind)
            return kind
        finally:
            running["now"] -= 1

    async def main() -> fj.Results:
        return await fj.gather(
            {f"t{i}": fj.task(call, k, group="g") for i, k in enumerate(script)},
            limits={"g": policy},
            observers=[rec],
        )

    results = vrun_(main())
    limits_seen = [e.limit for e in rec.events if isinstance(e, fj.LimitChanged)]
    assert all(lo <= v <= hi for v in limits_seen)
    started = [e for e in rec.events if isinstance(e, fj.TaskStarted)]
    assert len(started) == len(script)
    assert len(results) == len(script)


# -- behaviours ------------------------------------------------------------------------


def test_retry_after_pauses_the_whole_group(vrun: Any) -> None:
    starts: dict[str, float] = {}

    async def first() -> None:
        raise fj.RetryAfter(10)

    async def later(name: str) -> None:
        starts[name] = asyncio.get_running_loop().time()

    async def main() -> fj.Results:
        async with fj.Fan(
            retry=fj.Retry(attempts=2, backoff=0.01), rates={"api": fj.RateLimit(1000)}
        ) as fan:
            fan.spawn("first", first, group="api", retry=False)
            await asyncio.sleep(1)
            fan.spawn("same-group", later, "same-group", group="api")
            fan.spawn("other", later, "other")
        return fan.results

    results = vrun(main())
    assert results["first"].status is fj.Status.FAILED
    assert starts["other"] == pytest.approx(1.0)
    assert starts["same-group"] == pytest.approx(10.0)  # waited for the server's pause


def test_fallback_sync_and_async_gets_the_tasks_args(vrun: Any) -> None:
    async def broken(x: int) -> int:
        raise ConnectionError(x)

    async def async_fallback(x: int) -> str:
        return f"cached {x}"

    async def main() -> fj.Results:
        return await fj.gather(
            {
                "a": fj.task(broken, 1, fallback=async_fallback, retry=fj.Retry(attempts=2)),
                "s": fj.task(broken, 2, fallback=lambda x: f"default {x}"),
                "none": fj.task(broken, 3),
            },
            retry=fj.Retry(attempts=3, backoff=0.01),
        )

    results = vrun(main())
    assert results["a"].ok
    assert results["a"].value == "cached 1"
    assert results["a"].fallback
    assert results["a"].attempts == 2
    assert isinstance(results["a"].error, ConnectionError)  # why the fallback was used
    assert results["s"].value == "default 2"
    assert results["s"].fallback
    assert results["s"].attempts == 3  # the run's retry applied first
    assert not results["none"].ok
    assert not results["none"].fallback


def test_hedge_first_success_wins_loser_cancelled(vrun: Any) -> None:
    calls = {"n": 0}
    cancelled: list[int] = []

    async def lookup() -> int:
        calls["n"] += 1
        me = calls["n"]
        try:
            await asyncio.sleep(10 if me == 1 else 1)
        except asyncio.CancelledError:
            cancelled.append(me)
            raise
        return me

    async def main() -> fj.Results:
        results = await fj.gather(
            {"q": fj.task(lookup, idempotent=True, hedge=fj.Hedge(after=2), cost=0.5)}
        )
        no_orphans()
        return results

    results = vrun(main())
    o = results["q"]
    assert o.value == 2
    assert o.duration == pytest.approx(3.0)
    assert cancelled == [1]
    assert [(a.hedge, a.ok) for a in o.history] == [(False, False), (True, True)]
    assert o.cost == pytest.approx(1.0)  # both calls' estimates count
    assert o.attempts == 1


def test_hedge_needs_idempotent_when_the_task_is_built(vrun: Any) -> None:
    async def main() -> None:
        async with fj.Fan() as fan:
            with pytest.raises(fj.InvalidPolicy, match=r"task\.hedge"):
                fan.spawn("x", asyncio.sleep, 1, hedge=fj.Hedge(1))
            fan.spawn("y", asyncio.sleep, 0, hedge=fj.Hedge(1), idempotent=True)

    vrun(main())


def test_budget_skips_and_charge_replaces_the_estimate(vrun: Any) -> None:
    def sync_call(i: int) -> int:  # in a worker thread: charge() works there too
        fj.charge(usd=0.05)
        return i

    async def async_call(i: int) -> int:
        await asyncio.sleep(1)
        fj.charge(usd=0.2, tokens=100)
        return i

    async def main() -> fj.Results:
        async with fj.Fan(budget=fj.Budget(usd=1.0), limit=2) as fan:
            fan.spawn("s", sync_call, 0, cost=0.5)
            for i in range(1, 6):
                fan.spawn(f"a{i}", async_call, i, cost=0.3)
        return fan.results

    results = vrun(main())
    assert results["s"].cost == pytest.approx(0.05)
    skipped = [n for n, o in results.items() if o.reason == "budget"]
    assert skipped
    assert all(results[n].status is fj.Status.SKIPPED for n in skipped)
    budget = results.report.options["budget"]
    assert budget["skipped"] == len(skipped)
    assert budget["spent_usd"] <= 1.0
    ok = [o for o in results.values() if o.ok and o.name != "s"]
    assert all(o.cost == pytest.approx(0.2) and o.tokens == 100 for o in ok)


def test_most_specific_wins_task_over_group_over_run(vrun: Any) -> None:
    calls: dict[str, int] = {}

    async def fail(name: str) -> None:
        calls[name] = calls.get(name, 0) + 1
        await asyncio.sleep(3)

    async def main() -> fj.Results:
        return await fj.gather(
            {
                "run": fj.task(fail, "run"),
                "group": fj.task(fail, "group", group="g"),
                "task": fj.task(fail, "task", group="g", retry=False, timeout=2.5),
            },
            timeout=1,
            retry=fj.Retry(attempts=4, backoff=0.01),
            groups={"g": fj.Group(timeout=2, retry=fj.Retry(attempts=2, backoff=0.01))},
        )

    results = vrun(main())
    assert calls == {"run": 4, "group": 2, "task": 1}
    assert all(o.status is fj.Status.TIMED_OUT for o in results.values())
    assert results["group"].history[0].ended - results["group"].history[0].started == (
        pytest.approx(2.0)
    )
    assert results["task"].duration == pytest.approx(2.5)


def test_adaptive_limit_changes_are_events_and_hold(vrun: Any) -> None:
    rec = Recorder()
    running = {"now": 0, "peak": 0}

    async def call(i: int) -> int:
        running["now"] += 1
        running["peak"] = max(running["peak"], running["now"])
        try:
            await asyncio.sleep(1)
            if running["now"] > 6:  # the "server" rejects beyond 6 at once
                raise fj.RetryAfter(0.1)
            return i
        finally:
            running["now"] -= 1

    async def main() -> fj.Results:
        return await fj.gather(
            {f"t{i}": fj.task(call, i, group="api") for i in range(80)},
            limits={"api": fj.AdaptiveLimit(initial=2, max=16)},
            retry=fj.Retry(attempts=10, backoff=0.1),
            observers=[rec],
        )

    results = vrun(main())
    assert results.all_ok
    changes = [e for e in rec.events if isinstance(e, fj.LimitChanged)]
    assert any(e.why == "grow" for e in changes)
    assert any(e.why == "overload" for e in changes)
    assert running["peak"] <= 16
    assert results.report.options["adaptive"]["api"]["limit"] <= 16


def test_map_takes_the_run_level_policies(vrun: Any) -> None:
    seen: list[float] = []

    async def work(i: int) -> int:
        seen.append(asyncio.get_running_loop().time())
        fj.charge(usd=0.1)
        return i

    async def main() -> tuple[list[int], list[fj.Outcome]]:
        values = await fj.map(work, range(5), limit=5, rate=fj.RateLimit(2))
        outcomes = [o async for o in fj.imap(work, range(20), limit=2, budget=fj.Budget(usd=0.5))]
        return values, outcomes

    values, outcomes = vrun(main())
    assert values == [0, 1, 2, 3, 4]
    assert seen[:5] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])
    assert sum(o.ok for o in outcomes) <= 6
    assert any(o.reason == "budget" for o in outcomes)


def test_plain_tasks_are_not_wrapped(vrun: Any) -> None:
    """A task no policy touches is awaited by the engine itself: no wrapper frame between
    the engine's driver and the task (a policied task has its pipeline in between)."""
    callers: dict[str, str] = {}

    async def where(name: str) -> None:
        callers[name] = sys._getframe(1).f_code.co_name

    async def main() -> None:
        async with fj.Fan(limit=2) as fan:
            fan.spawn("plain", where, "plain")
            fan.spawn("timed", where, "timed", timeout=5)
        await fj.gather({"gathered": (where, "gathered")})

    vrun(main())
    assert callers["plain"] == callers["gathered"] == "_drive"
    assert callers["timed"] != "_drive"


def test_deadline_during_a_hedge_leaves_no_orphans(vrun: Any) -> None:
    async def slow() -> None:
        await asyncio.sleep(100)

    async def main() -> fj.Results:
        results = await fj.gather(
            {"h": fj.task(slow, idempotent=True, hedge=fj.Hedge(after=1, max_extra=2))},
            deadline=5,
        )
        no_orphans()
        return results

    o = vrun(main())["h"]
    assert o.status is fj.Status.TIMED_OUT
    assert o.reason == "deadline"
    assert [a.hedge for a in o.history] == [False, True, True]
    assert all(not a.ok for a in o.history)


def test_rate_wait_is_not_part_of_the_call_timeout(vrun: Any) -> None:
    async def quick(i: int) -> int:
        await asyncio.sleep(0.5)
        return i

    async def main() -> fj.Results:
        return await fj.gather(
            {f"t{i}": fj.task(quick, i, group="api", timeout=1) for i in range(6)},
            rates={"api": fj.RateLimit(1)},  # the last one waits 5 s for its turn
        )

    results = vrun(main())
    assert results.all_ok
    assert results["t5"].history[0].started == pytest.approx(5.0)
