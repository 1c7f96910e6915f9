"""Where the engine's seams meet the façades: map groups and reports, call time against
wait time, adaptive limits in the report, error messages, the retry predicate,
cancellation, validation, observers and the public names."""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import logging
import math
import operator
from collections import Counter
from typing import Any

import pytest

import forkjoin as fj

from .conftest import no_orphans


class Gauge:
    """Calls running at once, as the called function sees them."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.starts: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.starts.append(asyncio.get_running_loop().time())
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.running -= 1


class Recorder:
    def __init__(self) -> None:
        self.events: list[fj.Event] = []

    def on_event(self, event: fj.Event) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [type(e).__name__ for e in self.events]


# -- (1) the map family honours group= ----------------------------------------------------


def test_map_family_keeps_to_the_groups_limit(vrun: Any) -> None:
    gauges = [Gauge() for _ in range(4)]

    def work(gauge: Gauge) -> Any:
        async def call(i: int) -> int:
            await gauge.sleep(0.1 * (i % 3 + 1))
            return i * 2

        return call

    groups = {"x": fj.Group(limit=2)}

    async def main() -> tuple[list[int], list[int], list[fj.Outcome], int]:
        a = await fj.map(work(gauges[0]), range(20), group="x", groups=groups)
        b = await fj.map(work(gauges[1]), iter(range(20)), group="x", groups=groups, limit=5)
        c = [o async for o in fj.imap(work(gauges[2]), range(20), group="x", groups=groups)]
        d = await fj.map_reduce(work(gauges[3]), range(20), operator.add, 0, group="x",
                                groups=groups)  # fmt: skip
        no_orphans()
        return a, b, c, d

    a, b, c, d = vrun(main())
    assert a == b == [i * 2 for i in range(20)]
    assert sorted(o.index for o in c) == list(range(20))
    assert all(o.ok and o.value == o.index * 2 and o.group == "x" for o in c)
    assert d == sum(i * 2 for i in range(20))
    assert [g.peak for g in gauges] == [2, 2, 2, 2]


def test_map_group_limit_below_the_runs(vrun: Any) -> None:
    gauge = Gauge()

    async def call(i: int) -> int:
        await gauge.sleep(1)
        return i

    values = vrun(fj.map(call, range(12), group="x", limits={"x": 3}, limit=10))
    assert values == list(range(12))
    assert gauge.peak == 3
    assert values.report.wall == pytest.approx(4.0)


@pytest.mark.parametrize("how", ["rates", "group"])
def test_map_group_rate_applies(vrun: Any, how: str) -> None:
    gauge = Gauge()

    async def call(i: int) -> int:
        await gauge.sleep(0)
        return i

    rate = fj.RateLimit(2)
    options: dict[str, Any] = (
        {"rates": {"x": rate}} if how == "rates" else {"groups": {"x": fj.Group(rate=rate)}}
    )
    assert vrun(fj.map(call, range(6), group="x", **options)) == list(range(6))
    first = gauge.starts[0]
    assert [t - first for t in gauge.starts] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])


@pytest.mark.parametrize(
    "options",
    [
        {"groups": {"x": fj.Group(limit=2)}},
        {"limits": {"x": 2}},
        {"rates": {"x": fj.RateLimit(5)}},
        {"groups": {"x": fj.Group(limit=2)}, "group": "y"},
    ],
)
def test_map_group_entry_no_item_can_reach_is_invalid(vrun: Any, options: dict[str, Any]) -> None:
    called: list[int] = []

    async def call(i: int) -> int:
        called.append(i)
        return i

    async def main() -> None:
        with pytest.raises(fj.InvalidPolicy, match="'x'"):
            await fj.map(call, range(5), **options)
        with pytest.raises(fj.InvalidPolicy, match="'x'"):
            fj.imap(call, range(5), **options)
        with pytest.raises(fj.InvalidPolicy, match="'x'"):
            await fj.map_reduce(call, range(5), operator.add, 0, **options)

    vrun(main())
    assert called == []


# -- (2) map runs have a report -----------------------------------------------------------


def test_map_values_carry_the_runs_report(vrun: Any) -> None:
    gauge = Gauge()

    async def call(i: int) -> int:
        await gauge.sleep((i % 4 + 1) * 0.1)
        fj.charge(usd=0.01)
        return i

    values = vrun(fj.map(call, range(12), limit=3, budget=fj.Budget(usd=10)))
    report = values.report
    assert isinstance(report, fj.RunReport)
    assert report.tasks == 12
    assert report.counts == {"ok": 12}
    assert report.attempts == 12
    assert report.total_duration == pytest.approx(sum((i % 4 + 1) * 0.1 for i in range(12)))
    assert report.peak_concurrency == gauge.peak == 3
    assert report.cost == pytest.approx(0.12)
    assert len(report.slowest) == 5
    assert [d for _, d in report.slowest] == pytest.approx([0.4, 0.4, 0.4, 0.3, 0.3])
    assert {n for n, _ in report.slowest[:3]} == {"3", "7", "11"}


def test_map_report_of_a_plain_run(vrun: Any) -> None:
    async def call(i: int) -> int:
        await asyncio.sleep(1)
        return i

    values = vrun(fj.map(call, range(10), limit=5))
    report = values.report
    assert report is not None
    assert report.counts == {"ok": 10}
    assert report.total_duration == pytest.approx(10.0)
    assert report.wall == pytest.approx(2.0)
    assert report.peak_concurrency == 5
    assert report.speedup == pytest.approx(5.0)
    assert report.utilisation == pytest.approx(1.0)


def test_imap_report_is_set_once_exhausted(vrun: Any) -> None:
    async def call(i: int) -> int:
        await asyncio.sleep(0.5)
        if i == 4:
            raise ValueError(i)
        return i

    async def main() -> tuple[fj.RunReport | None, fj.RunReport | None, int]:
        stream = fj.imap(call, range(8), limit=2)
        before = stream.report
        n = 0
        async for _ in stream:
            n += 1
        return before, stream.report, n

    before, after, n = vrun(main())
    assert before is None
    assert n == 8
    assert isinstance(after, fj.RunReport)
    assert after.counts == {"ok": 7, "failed": 1}
    assert after.tasks == 8
    assert after.total_duration == pytest.approx(4.0)
    assert after.peak_concurrency == 2


def test_run_finished_of_a_large_map_has_the_counts(vrun: Any) -> None:
    finished: list[fj.RunFinished] = []

    class OnFinish:
        def on_run_finished(self, event: fj.RunFinished) -> None:
            finished.append(event)

    async def call(i: int) -> int:
        if i % 1000 == 7:
            raise ValueError(i)
        return i

    async def main() -> None:
        with pytest.raises(fj.FanError):
            await fj.map(call, range(10_000), observers=[OnFinish()], on_error="collect")
        await fj.map(call, range(10_000), observers=[OnFinish()], limit=50, on_error="collect")

    with pytest.raises(fj.FanError):
        vrun(main())
    assert len(finished) == 2
    for event in finished:
        assert isinstance(event.report, fj.RunReport)
        assert event.report.counts == {"ok": 9990, "failed": 10}
        assert event.report.tasks == 10_000


def test_log_observer_counts_a_map_runs_items(vrun: Any, caplog: pytest.LogCaptureFixture) -> None:
    async def call(i: int) -> int:
        await asyncio.sleep(0.1)
        if i == 3:
            raise ValueError(i)
        return i

    async def main() -> None:
        with pytest.raises(fj.FanError):
            await fj.map(
                call, range(10), limit=3, on_error="collect", observers=[fj.LogObserver()],
                name="items",
            )  # fmt: skip

    with caplog.at_level(logging.INFO, logger="forkjoin.tasks"):
        vrun(main())
    done = [r for r in caplog.records if getattr(r, "event", None) == "run_finished"]
    assert len(done) == 1
    text = done[0].getMessage()
    assert text.startswith("run items finished")
    assert "no tasks" not in text
    assert "ok 9" in text
    assert "failed 1" in text
    assert done[0].counts == {"ok": 9, "failed": 1}  # type: ignore[attr-defined]


# -- (3) waiting for admission or a rate is not task time ---------------------------------


def test_gather_waits_for_slots_and_rate_are_not_task_time(vrun: Any) -> None:
    gauge = Gauge()

    async def call(i: int) -> int:
        await gauge.sleep(0.30)
        return i

    results = vrun(
        fj.gather({f"t{i}": (call, i) for i in range(30)}, limit=10, rate=fj.RateLimit(20))
    )
    assert results.all_ok
    assert all(o.duration == pytest.approx(0.30) for o in results.values())
    report = results.report
    assert report.total_duration == pytest.approx(30 * 0.30)
    assert gauge.peak <= 7
    assert report.peak_concurrency == gauge.peak
    waited = [o.waited for o in results.values()]
    assert waited[0] == 0.0
    assert all(w is not None and w > 0 for w in waited[1:])
    assert waited == sorted(waited)  # one start every 0.05 s, in order
    assert report.waited == pytest.approx(sum(waited))  # type: ignore[arg-type]


def test_gather_waits_for_a_slot_only(vrun: Any) -> None:
    async def call(i: int) -> int:
        await asyncio.sleep(0.30)
        return i

    results = vrun(fj.gather({f"t{i}": (call, i) for i in range(30)}, limit=10))
    assert all(o.duration == pytest.approx(0.30) for o in results.values())
    assert [o.waited for o in results.values()] == pytest.approx(
        [0.0] * 10 + [0.30] * 10 + [0.60] * 10
    )
    assert results.report.total_duration == pytest.approx(9.0)
    assert results.report.peak_concurrency == 10


def test_map_waits_for_a_rate_are_not_task_time(vrun: Any) -> None:
    gauge = Gauge()

    async def call(i: int) -> int:
        await gauge.sleep(0.30)
        return i

    async def main() -> tuple[fj.Values[int], list[fj.Outcome], fj.RunReport | None]:
        values = await fj.map(call, range(30), limit=10, rate=fj.RateLimit(20))
        stream = fj.imap(call, range(30), limit=10, rate=fj.RateLimit(20))
        outcomes = [o async for o in stream]
        return values, outcomes, stream.report

    values, outcomes, streamed = vrun(main())
    assert gauge.peak <= 7
    assert all(o.duration == pytest.approx(0.30) for o in outcomes)
    assert any(o.waited is not None and o.waited > 0 for o in outcomes)
    for report in (values.report, streamed):
        assert report is not None
        assert report.total_duration == pytest.approx(30 * 0.30)
        assert report.peak_concurrency <= 7


# -- (4) an adaptive limit in the report --------------------------------------------------


def test_adaptive_limit_in_the_report(vrun: Any) -> None:
    async def call(i: int) -> int:
        await asyncio.sleep(0.1)
        return i

    results = vrun(
        fj.gather(
            {f"t{i}": fj.task(call, i, group="api") for i in range(200)},
            groups={"api": fj.Group(limit=fj.AdaptiveLimit(initial=2, max=8))},
        )
    )
    assert results.all_ok
    d = results.report.to_dict()
    assert d["limits"] == {"api": 2}
    adaptive = d["options"]["adaptive"]["api"]
    assert adaptive["limit"] == 8  # it grew
    # the time-weighted mean of the limit over the run, from its changes
    changes = [(float(t), float(n)) for t, n in adaptive["changes"]]
    ends = [t for t, _ in changes[1:]] + [max(d["wall"], changes[-1][0])]
    span = ends[-1] - changes[0][0]
    mean = math.fsum(n * (end - t) for (t, n), end in zip(changes, ends, strict=True)) / span
    group = d["groups"]["api"]
    assert 2 < group["limit"] < 8
    assert group["limit"] == pytest.approx(mean)
    assert group["limit_initial"] == 2
    assert group["limit_final"] == 8
    assert group["utilisation"] <= 1.0
    assert group["utilisation"] == pytest.approx(group["mean"] / group["limit"])
    assert group["peak"] <= 8


def test_a_fixed_group_limit_in_the_report(vrun: Any) -> None:
    async def call(i: int) -> int:
        await asyncio.sleep(1)
        return i

    results = vrun(
        fj.gather({f"t{i}": fj.task(call, i, group="db") for i in range(8)}, limits={"db": 4})
    )
    d = results.report.to_dict()
    assert d["limits"] == {"db": 4}
    group = d["groups"]["db"]
    assert group["limit"] == 4
    assert "limit_initial" not in group
    assert "limit_final" not in group
    assert group["utilisation"] == pytest.approx(1.0)


# -- (5) map's error message counts items -------------------------------------------------


@pytest.mark.parametrize("on_error", ["collect", "fail_fast"])
def test_map_error_message_counts_against_the_items(vrun: Any, on_error: str) -> None:
    async def call(i: int) -> int:
        await asyncio.sleep(2 if i == 3 else 1)  # the failure ends last
        if i == 3:
            raise ValueError("item three")
        return i

    async def main() -> fj.FanError:
        with pytest.raises(fj.FanError) as info:
            await fj.map(call, range(10), on_error=on_error)
        return info.value

    error = vrun(main())
    assert str(error).startswith("1 of 10 items not ok: item 3 (ValueError)")
    assert list(error.results) == ["3"]
    assert [str(e) for e in error.exceptions] == ["item three"]


# -- (6) the default retry predicate ------------------------------------------------------

PROGRAMMING = [
    TypeError,
    NameError,
    AttributeError,
    ImportError,
    ModuleNotFoundError,
    AssertionError,
    NotImplementedError,
    SyntaxError,
]


def raising(kind: type[BaseException], calls: Counter[str]) -> Any:
    async def call() -> None:
        calls[kind.__name__] += 1
        raise kind("boom")

    return call


def test_programming_errors_are_not_retried_by_default(vrun: Any) -> None:
    calls: Counter[str] = Counter()
    kinds = [*PROGRAMMING, ConnectionError, ValueError, TimeoutError]
    results = vrun(
        fj.gather(
            {k.__name__: raising(k, calls) for k in kinds},
            retry=fj.Retry(attempts=3, backoff=0),
        )
    )
    for kind in PROGRAMMING:
        assert results[kind.__name__].attempts == 1, kind
        assert calls[kind.__name__] == 1, kind
        assert isinstance(results[kind.__name__].error, kind)
    for kind in (ConnectionError, ValueError, TimeoutError):
        assert results[kind.__name__].attempts == 3, kind
        assert calls[kind.__name__] == 3, kind
    assert not fj.Retry().retries(TypeError())
    assert fj.Retry().retries(ConnectionError())


def test_retry_on_exception_retries_programming_errors_too(vrun: Any) -> None:
    calls: Counter[str] = Counter()
    results = vrun(
        fj.gather(
            {k.__name__: raising(k, calls) for k in (TypeError, AttributeError)},
            retry=fj.Retry(attempts=3, backoff=0, on=(Exception,)),
        )
    )
    assert results["TypeError"].attempts == 3
    assert results["AttributeError"].attempts == 3
    assert calls == {"TypeError": 3, "AttributeError": 3}


def test_the_default_predicate_applies_to_a_tasks_own_retry_and_map(vrun: Any) -> None:
    calls: Counter[str] = Counter()

    async def raise_one(kind: type[BaseException]) -> None:
        await raising(kind, calls)()

    async def main() -> tuple[fj.Results, list[fj.Outcome]]:
        results = await fj.gather(
            {
                "own": fj.task(raising(TypeError, calls), retry=fj.Retry(attempts=4, backoff=0)),
                "flag": fj.task(raising(NameError, calls), retry=True),
            }
        )
        outcomes = [
            o
            async for o in fj.imap(
                raise_one,
                [AttributeError, ConnectionError],
                retry=fj.Retry(attempts=2, backoff=0),
            )
        ]
        return results, outcomes

    results, outcomes = vrun(main())
    assert results["own"].attempts == 1
    assert results["flag"].attempts == 1
    assert {o.index: o.attempts for o in outcomes} == {0: 1, 1: 2}
    assert calls == {"TypeError": 1, "NameError": 1, "AttributeError": 1, "ConnectionError": 2}


# -- (7) an outer cancellation keeps its message ------------------------------------------


async def hang(*_: Any) -> None:
    await asyncio.sleep(1000)


async def via_gather() -> None:
    await fj.gather({"a": (hang,), "b": (hang,)}, limit=1)


async def via_fan() -> None:
    async with fj.Fan() as fan:
        fan.spawn("a", hang)
        await asyncio.sleep(500)


async def via_fan_waiting_on_exit() -> None:
    async with fj.Fan() as fan:
        fan.spawn("a", hang)


async def via_map() -> None:
    await fj.map(hang, range(5), limit=2)


async def via_imap() -> None:
    async for _ in fj.imap(hang, range(5), limit=2):
        pass


async def via_map_reduce() -> None:
    await fj.map_reduce(hang, range(5), operator.add, 0, limit=2)


@pytest.mark.parametrize(
    "body", [via_gather, via_fan, via_fan_waiting_on_exit, via_map, via_imap, via_map_reduce]
)
def test_outer_cancellation_keeps_its_message(vrun: Any, body: Any) -> None:
    async def main() -> tuple[Any, ...]:
        task = asyncio.create_task(body())
        await asyncio.sleep(1)
        task.cancel("shutting down")
        with pytest.raises(asyncio.CancelledError) as info:
            await task
        no_orphans()
        return info.value.args

    assert vrun(main()) == ("shutting down",)


def test_outer_cancellation_records_the_tasks_as_cancelled(vrun: Any) -> None:
    fans: list[fj.Fan] = []

    async def body() -> None:
        async with fj.Fan(limit=1) as fan:
            fans.append(fan)
            fan.spawn("running", hang)
            fan.spawn("waiting", hang)

    async def main() -> None:
        task = asyncio.create_task(body())
        await asyncio.sleep(1)
        task.cancel("shutting down")
        with pytest.raises(asyncio.CancelledError):
            await task

    vrun(main())
    results = fans[0].results
    assert (results["running"].status, results["running"].reason) == (
        fj.Status.CANCELLED,
        "cancelled",
    )
    assert (results["waiting"].status, results["waiting"].reason) == (
        fj.Status.SKIPPED,
        "cancelled",
    )


# -- (8) one coroutine object under two names ---------------------------------------------


def test_the_same_coroutine_twice_is_invalid_and_nothing_runs(vrun: Any) -> None:
    ran: list[str] = []

    async def work(name: str) -> str:
        ran.append(name)
        return name

    shared = work("shared")
    other = work("other")

    async def main() -> None:
        with pytest.raises(fj.InvalidPolicy) as info:
            await fj.gather({"first": shared, "before": (work, "tuple"), "second": shared,
                             "other": other})  # fmt: skip
        message = str(info.value)
        assert "'first'" in message
        assert "'second'" in message
        await asyncio.sleep(1)

    vrun(main())
    assert ran == []
    assert inspect.getcoroutinestate(shared) == inspect.CORO_CLOSED
    assert inspect.getcoroutinestate(other) == inspect.CORO_CLOSED


# -- (9) a raising observer ---------------------------------------------------------------


def test_a_raising_observer_is_disabled_logged_once_and_others_hear_all(
    vrun: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def __init__(self) -> None:
            self.calls = 0

        def on_event(self, event: fj.Event) -> None:
            self.calls += 1
            raise RuntimeError("observer bug")

    async def flaky_once(state: dict[str, int]) -> str:
        state["n"] = state.get("n", 0) + 1
        await asyncio.sleep(1)
        if state["n"] == 1:
            raise ConnectionError("once")
        return "ok"

    def tasks() -> dict[str, Any]:
        return {
            "a": (asyncio.sleep, 1, "A"),
            "b": fj.task(flaky_once, {}, retry=fj.Retry(attempts=2, backoff=0)),
            "c": (asyncio.sleep, 2, "C"),
        }

    def seen(rec: Recorder) -> list[tuple[str, str | None]]:
        return [(type(e).__name__, getattr(e, "name", None)) for e in rec.events]

    alone = Recorder()
    vrun(fj.gather(tasks(), limit=2, observers=[alone]))

    before, after, broken = Recorder(), Recorder(), Broken()
    with caplog.at_level(logging.DEBUG, logger="forkjoin"):
        results = vrun(fj.gather(tasks(), limit=2, observers=[before, broken, after]))
    assert results.all_ok
    assert broken.calls == 1
    mine = [r for r in caplog.records if r.name == "forkjoin"]
    assert len(mine) == 1
    assert mine[0].levelno == logging.ERROR
    assert "RunStarted" in mine[0].getMessage()
    assert seen(before) == seen(alone)
    assert seen(after) == seen(alone)  # also the event the broken observer failed on


# -- (10) an observer gets only what it subscribes to -------------------------------------

EVENT_KINDS = [
    fj.RunStarted,
    fj.TaskQueued,
    fj.AttemptStarted,
    fj.HedgeStarted,
    fj.AttemptFailed,
    fj.LimitChanged,
    fj.CircuitChanged,
    fj.TaskFinished,
    fj.RunFinished,
]


def count_built(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count every event the engine builds, by kind."""
    built: Counter[str] = Counter()
    for kind in EVENT_KINDS:
        init = kind.__init__

        def counting(self: Any, *args: Any, __init: Any = init, **kwargs: Any) -> None:
            built[type(self).__name__] += 1
            __init(self, *args, **kwargs)

        monkeypatch.setattr(kind, "__init__", counting)
    return built


def busy_run(observer: Any) -> Any:
    """A run that has every kind of event to tell: queueing, retries, a hedge, an adaptive
    limit that grows and a circuit that opens."""
    state = {"n": 0}

    async def flaky() -> str:
        state["n"] += 1
        await asyncio.sleep(1)
        if state["n"] == 1:
            raise ConnectionError("once")
        return "ok"

    async def hedged() -> str:
        state["h"] = state.get("h", 0) + 1
        await asyncio.sleep(10 if state["h"] == 1 else 0.1)
        return "fast"

    async def broken() -> None:
        raise ConnectionError("down")

    tasks: dict[str, Any] = {
        "flaky": fj.task(flaky, retry=fj.Retry(attempts=2, backoff=0)),
        "hedged": fj.task(hedged, idempotent=True, hedge=fj.Hedge(after=0.5)),
        "cb1": fj.task(broken, group="cb"),
        "cb2": fj.task(broken, group="cb"),
    }
    for i in range(6):
        tasks[f"api{i}"] = fj.task(asyncio.sleep, 0.1, group="api")
    return fj.gather(
        tasks,
        limit=3,
        groups={
            "api": fj.Group(limit=fj.AdaptiveLimit(initial=1, max=4)),
            "cb": fj.Group(breaker=fj.CircuitBreaker(failures=1, reset=60)),
        },
        observers=[observer],
    )


def test_an_observer_of_task_finished_only_gets_only_those_built(
    vrun: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Finished:
        def __init__(self) -> None:
            self.events: list[Any] = []

        def on_task_finished(self, event: fj.TaskFinished) -> None:
            self.events.append(event)

    built = count_built(monkeypatch)
    only = Finished()
    results = vrun(busy_run(only))
    assert len(results) == 10
    assert {type(e) for e in only.events} == {fj.TaskFinished}
    assert sorted(e.name for e in only.events) == sorted(results)
    assert built == {"TaskFinished": 10}

    built.clear()
    every = Recorder()
    vrun(busy_run(every))
    kinds = Counter(every.kinds())
    assert set(kinds) == {k.__name__ for k in EVENT_KINDS}
    assert built == kinds  # built only to be told, each once


def test_nobody_listening_builds_no_event(vrun: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    class Nothing:
        def on_limit_changed(self, event: fj.LimitChanged) -> None:
            raise AssertionError("no adaptive limit in this run")

    built = count_built(monkeypatch)
    results = vrun(fj.gather({f"t{i}": (asyncio.sleep, 0.1) for i in range(20)}, limit=5,
                             observers=[Nothing()]))  # fmt: skip
    assert results.all_ok
    assert built == {}


# -- (11) public names --------------------------------------------------------------------


def test_public_names_say_they_are_forkjoins() -> None:
    for name in fj.__all__:
        if name == "__version__":
            continue
        obj = getattr(fj, name)
        assert inspect.isclass(obj) or inspect.isfunction(obj), name
        assert obj.__module__ == "forkjoin", name
    assert repr(fj.Status.OK).startswith("<Status.OK")
    assert fj.Outcome.__module__ == fj.Outcome("a", fj.Status.OK).__class__.__module__


def test_the_version_is_the_installed_packages() -> None:
    assert isinstance(fj.__version__, str)
    assert fj.__version__ == importlib.metadata.version("forkjoin")


# -- (12) attempt and hedge events --------------------------------------------------------


def test_task_started_is_attempt_started() -> None:
    assert fj.TaskStarted is fj.AttemptStarted


def test_a_hedged_duplicate_is_announced(vrun: Any) -> None:
    calls = {"n": 0}
    rec = Recorder()

    async def lookup() -> int:
        calls["n"] += 1
        me = calls["n"]
        await asyncio.sleep(10 if me == 1 else 0.1)
        return me

    results = vrun(
        fj.gather(
            {"q": fj.task(lookup, idempotent=True, hedge=fj.Hedge(after=0.5))},
            observers=[rec],
            name="search",
        )
    )
    assert results["q"].value == 2
    hedges = [e for e in rec.events if isinstance(e, fj.HedgeStarted)]
    assert len(hedges) == 1
    h = hedges[0]
    assert (h.run, h.name, h.group, h.attempt, h.number) == ("search", "q", None, 1, 1)
    assert h.time == pytest.approx(0.5)
    started = [e for e in rec.events if isinstance(e, fj.AttemptStarted)]
    assert [(e.name, e.attempt, e.time) for e in started] == [("q", 1, 0.0)]
    assert rec.kinds() == [
        "RunStarted",
        "TaskQueued",
        "AttemptStarted",
        "HedgeStarted",
        "TaskFinished",
        "RunFinished",
    ]


# -- (13) task events have a name ---------------------------------------------------------


def test_task_finished_events_have_the_tasks_name(vrun: Any) -> None:
    rec = Recorder()

    async def call(i: int) -> int:
        await asyncio.sleep(0.1)
        return i

    async def main() -> None:
        await fj.gather({"alpha": (call, 1), "beta": (call, 2)}, observers=[rec])
        await fj.map(call, range(3), observers=[rec])

    vrun(main())
    finished = [e for e in rec.events if isinstance(e, fj.TaskFinished)]
    assert [e.name for e in finished] == [e.outcome.name for e in finished]
    assert sorted(e.name for e in finished) == ["0", "1", "2", "alpha", "beta"]
    for e in rec.events:
        if isinstance(e, fj.TaskQueued | fj.AttemptStarted):
            assert e.name in ("alpha", "beta", "0", "1", "2")
