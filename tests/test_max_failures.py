"""max_failures: stop a run once N tasks have failed for good, on every entry point."""

from __future__ import annotations

import asyncio
import operator
from typing import Any

import pytest

import forkjoin as fj

from .conftest import no_orphans


class Script:
    """Functions whose duration and ending are set per name or item; every call logged."""

    def __init__(self, plan: dict[Any, tuple[float, bool]]) -> None:
        self.plan = plan
        self.calls: list[Any] = []

    async def call(self, key: Any) -> Any:
        self.calls.append(key)
        seconds, ok = self.plan[key]
        await asyncio.sleep(seconds)
        if not ok:
            raise ConnectionError(key)
        return key

    def tasks(self, **options: Any) -> dict[str, fj.Task]:
        return {name: fj.task(self.call, name, **options) for name in self.plan}


def statuses(results: fj.Results) -> dict[str, tuple[str, str | None]]:
    return {n: (o.status.value, o.reason) for n, o in results.items()}


# -- gather, run, Fan ---------------------------------------------------------------------


def test_gather_stops_at_the_nth_failure(vrun: Any) -> None:
    script = Script(
        {
            "f1": (1, False),
            "long": (10, True),
            "f2": (3, False),
            "q1": (5, True),  # starts at 1, in f1's slot
            "q2": (1, True),  # still waiting at 3
            "q3": (1, True),
        }
    )

    async def main() -> fj.FanError:
        with pytest.raises(fj.FanError) as info:
            await fj.gather(script.tasks(), limit=3, max_failures=2)
        no_orphans()
        return info.value

    error = vrun(main())
    results = error.results
    assert list(results) == ["f1", "long", "f2", "q1", "q2", "q3"]
    assert statuses(results) == {
        "f1": ("failed", None),
        "long": ("cancelled", "max_failures"),
        "f2": ("failed", None),
        "q1": ("cancelled", "max_failures"),
        "q2": ("skipped", "max_failures"),
        "q3": ("skipped", "max_failures"),
    }
    assert results["long"].ended == results["q1"].ended == 3.0
    assert script.calls == ["f1", "long", "f2", "q1"]
    assert results["f1"].error in error.exceptions
    assert results["f2"].error in error.exceptions


def test_fewer_failures_than_the_limit_run_everything(vrun: Any) -> None:
    script = Script({"f1": (1, False), "ok": (5, True), "f2": (2, False), "late": (1, True)})
    results = vrun(fj.gather(script.tasks(), limit=2, max_failures=3))
    assert statuses(results) == {
        "f1": ("failed", None),
        "ok": ("ok", None),
        "f2": ("failed", None),
        "late": ("ok", None),
    }


def test_a_retried_task_counts_once_when_it_fails_for_good(vrun: Any) -> None:
    script = Script({"r": (1, False), "x": (2.5, False), "long": (10, True)})

    async def main() -> fj.Results:
        tasks = script.tasks()
        tasks["r"] = fj.task(script.call, "r", retry=fj.Retry(attempts=3, backoff=0))
        with pytest.raises(fj.FanError) as info:
            await fj.gather(tasks, max_failures=2)
        return info.value.results

    results = vrun(main())
    # r's calls fail at 1, 2 and 3; x fails at 2.5. Counting each call would stop at 2.
    assert results["r"].status is fj.Status.FAILED
    assert results["r"].attempts == 3
    assert results["r"].ended == 3.0
    assert results["x"].status is fj.Status.FAILED
    assert results["long"].status is fj.Status.CANCELLED
    assert results["long"].reason == "max_failures"
    assert results["long"].ended == 3.0


def test_timeouts_count_and_tasks_that_end_ok_or_skipped_do_not(vrun: Any) -> None:
    script = Script({"hang": (100, True), "fb": (1, False), "b1": (1, True), "b2": (1, True)})

    async def main() -> fj.Results:
        tasks = {
            "hang": fj.task(script.call, "hang", timeout=3),  # timed out at 3
            "fb": fj.task(script.call, "fb", fallback=lambda key: "fallback"),  # ok at 1
            "b1": fj.task(script.call, "b1", cost=0.8),
            "b2": fj.task(script.call, "b2", cost=0.8),  # skipped: over the budget
            "fail": fj.task(script.call, "fail"),
            "long": fj.task(script.call, "long"),
        }
        script.plan.update({"fail": (5, False), "long": (20, True)})
        with pytest.raises(fj.FanError) as info:
            await fj.gather(tasks, max_failures=2, budget=fj.Budget(usd=1.0))
        return info.value.results

    results = vrun(main())
    assert results["hang"].status is fj.Status.TIMED_OUT
    assert results["fb"].ok
    assert results["fb"].fallback
    assert results["b2"].status is fj.Status.SKIPPED
    assert results["b2"].reason == "budget"
    assert results["fail"].status is fj.Status.FAILED
    assert results["fail"].ended == 5.0  # the second failure for good: the timeout was first
    assert results["long"].status is fj.Status.CANCELLED
    assert results["long"].reason == "max_failures"
    assert results["long"].ended == 5.0


def test_run_raises_fan_error_carrying_the_results() -> None:
    blocked: list[str] = []

    async def fail(name: str) -> None:
        raise ValueError(name)

    async def forever(name: str) -> None:
        blocked.append(name)
        await asyncio.Event().wait()

    with pytest.raises(fj.FanError) as info:
        fj.run(
            {"wait": (forever, "wait"), "a": (fail, "a"), "b": (fail, "b"), "c": (fail, "c")},
            max_failures=2,
        )
    results = info.value.results
    assert blocked == ["wait"]
    assert results["wait"].status is fj.Status.CANCELLED
    assert results["wait"].reason == "max_failures"
    failed = [n for n, o in results.items() if o.status is fj.Status.FAILED]
    assert failed == ["a", "b"]
    assert results["c"].reason == "max_failures"
    assert results["c"].status in (fj.Status.CANCELLED, fj.Status.SKIPPED)


def test_fan_raises_on_exit_and_skips_what_is_spawned_after_the_stop(vrun: Any) -> None:
    script = Script({"f1": (1, False), "f2": (2, False), "long": (10, True), "late": (1, True)})

    async def main() -> fj.Fan:
        fan = fj.Fan(max_failures=2)
        seen: list[str] = []

        async def body() -> None:
            async with fan:
                for name in ("f1", "f2", "long"):
                    fan.spawn(name, script.call, name)
                async for o in fan.as_completed():
                    seen.append(o.name)
                await asyncio.sleep(1)
                fan.spawn("late", script.call, "late")

        with pytest.raises(fj.FanError) as info:
            await body()
        no_orphans()
        assert info.value.results is fan.results
        assert seen == ["f1", "f2", "long"]
        return fan

    results = vrun(main()).results
    assert statuses(results) == {
        "f1": ("failed", None),
        "f2": ("failed", None),
        "long": ("cancelled", "max_failures"),
        "late": ("skipped", "max_failures"),
    }
    assert script.calls == ["f1", "f2", "long"]


def test_fail_fast_is_max_failures_one_with_its_own_reason(vrun: Any) -> None:
    script = Script({"f": (1, False), "long": (10, True), "queued": (1, True)})

    async def main(**options: Any) -> fj.Results:
        with pytest.raises(fj.FanError) as info:
            await fj.gather(script.tasks(), limit=2, **options)
        return info.value.results

    by_count = vrun(main(max_failures=1))
    fast = vrun(main(on_error="fail_fast"))
    assert statuses(by_count) == {
        "f": ("failed", None),
        "long": ("cancelled", "max_failures"),
        "queued": ("skipped", "max_failures"),
    }
    assert statuses(fast) == {
        "f": ("failed", None),
        "long": ("cancelled", "fail_fast"),
        "queued": ("skipped", "fail_fast"),
    }


# -- the map family -----------------------------------------------------------------------

# item: (seconds, ok) under limit=3; failures end at 1 (item 0), 2 (item 3), 3.2 (item 5);
# items 2 and 6 are still running at 3.2, items 7.. are never pulled
ITEMS: dict[Any, tuple[float, bool]] = {
    0: (1, False),
    1: (2.5, True),
    2: (10, True),
    3: (1, False),
    4: (0.2, True),
    5: (1, False),
    6: (5, True),
    7: (1, True),
    8: (1, False),
    9: (1, True),
}


def check_stopped_at_item_5(results: fj.Results, calls: list[Any], reason: str) -> None:
    assert calls == [0, 1, 2, 3, 4, 5, 6]
    assert statuses(results) == {
        "0": ("failed", None),
        "2": ("cancelled", reason),
        "3": ("failed", None),
        "5": ("failed", None),
        "6": ("cancelled", reason),
    }
    assert results["2"].ended == results["6"].ended == pytest.approx(3.2)


@pytest.mark.parametrize("on_error", [None, "collect"])
def test_map_stops_at_the_nth_failure(vrun: Any, on_error: str | None) -> None:
    script = Script(dict(ITEMS))
    options: dict[str, Any] = {} if on_error is None else {"on_error": on_error}

    async def main() -> fj.Results:
        with pytest.raises(fj.FanError) as info:
            await fj.map(script.call, range(10), limit=3, max_failures=3, **options)
        no_orphans()
        return info.value.results

    check_stopped_at_item_5(vrun(main()), script.calls, "max_failures")


@pytest.mark.parametrize("on_error", [None, "collect"])
def test_map_reduce_stops_at_the_nth_failure(vrun: Any, on_error: str | None) -> None:
    script = Script(dict(ITEMS))
    options: dict[str, Any] = {} if on_error is None else {"on_error": on_error}

    async def main() -> fj.Results:
        with pytest.raises(fj.FanError) as info:
            await fj.map_reduce(
                script.call, range(10), operator.add, 0, limit=3, max_failures=3, **options
            )
        no_orphans()
        return info.value.results

    check_stopped_at_item_5(vrun(main()), script.calls, "max_failures")


def test_map_fail_fast_default_is_max_failures_one(vrun: Any) -> None:
    script = Script(dict(ITEMS))

    async def main() -> fj.Results:
        with pytest.raises(fj.FanError) as info:
            await fj.map(script.call, range(10), limit=3)
        return info.value.results

    results = vrun(main())
    assert script.calls == [0, 1, 2]
    assert statuses(results) == {
        "0": ("failed", None),
        "1": ("cancelled", "fail_fast"),
        "2": ("cancelled", "fail_fast"),
    }


def test_map_under_the_limit_returns_the_values(vrun: Any) -> None:
    async def work(i: int) -> int:
        await asyncio.sleep(1)
        if i in (3, 7):
            raise ValueError(i)
        return i

    async def main() -> fj.FanError:
        with pytest.raises(fj.FanError) as info:
            await fj.map(work, range(10), limit=4, max_failures=3, on_error="collect")
        return info.value

    error = vrun(main())
    # both failures are reported but nothing was stopped
    assert statuses(error.results) == {"3": ("failed", None), "7": ("failed", None)}
    assert str(error).startswith("2 of 10 items not ok")


def test_imap_ends_with_the_outcome_that_reached_the_limit(vrun: Any) -> None:
    script = Script(dict(ITEMS))

    async def main() -> list[fj.Outcome]:
        out = [o async for o in fj.imap(script.call, range(10), limit=3, max_failures=3)]
        no_orphans()
        return out

    outcomes = vrun(main())
    assert [(o.index, o.status.value) for o in outcomes] == [
        (0, "failed"),
        (3, "failed"),
        (4, "ok"),
        (1, "ok"),
        (5, "failed"),
    ]
    assert script.calls == [0, 1, 2, 3, 4, 5, 6]


def test_imap_ordered_ends_with_the_outcome_that_reached_the_limit(vrun: Any) -> None:
    # item 2 is done (at 0.5) before item 1 fails (at 1); item 0 is still running then
    script = Script({0: (5, True), 1: (1, False), 2: (0.5, True), 3: (10, True), 4: (1, True)})

    async def main() -> list[fj.Outcome]:
        stream = fj.imap(script.call, range(5), limit=3, max_failures=1, ordered=True)
        out = [o async for o in stream]
        no_orphans()
        return out

    outcomes = vrun(main())
    assert outcomes[-1].index == 1
    assert outcomes[-1].status is fj.Status.FAILED
    assert all(o.index < 1 for o in outcomes[:-1])


def test_imap_stops_with_a_slow_consumer(vrun: Any) -> None:
    async def work(i: int) -> int:
        await asyncio.sleep(0.1)
        if i % 3 == 2:
            raise ValueError(i)
        return i

    async def main() -> tuple[list[fj.Outcome], fj.RunReport | None]:
        out: list[fj.Outcome] = []
        stream = fj.imap(work, range(100), limit=4, max_failures=4)
        async for o in stream:
            out.append(o)
            await asyncio.sleep(1)  # the workers are ahead: outcomes wait for the consumer
        return out, stream.report

    outcomes, report = vrun(main())
    failed = [o for o in outcomes if o.status is fj.Status.FAILED]
    assert len(failed) == 4
    assert outcomes[-1] is failed[-1]
    assert all(o.status in (fj.Status.OK, fj.Status.FAILED) for o in outcomes)
    assert report is not None
    assert report.counts["failed"] == 4


# -- bad values ---------------------------------------------------------------------------

BAD = [0, -1, True, 1.5, "2"]


async def never(x: Any = None) -> None:
    raise AssertionError("nothing may run when the options are invalid")


@pytest.mark.parametrize("bad", BAD)
def test_bad_max_failures_is_invalid_everywhere(vrun: Any, bad: Any) -> None:
    tasks = {"a": (never,)}
    match = r"^max_failures: "

    async def main() -> None:
        with pytest.raises(fj.InvalidPolicy, match=match):
            await fj.gather(tasks, max_failures=bad)
        with pytest.raises(fj.InvalidPolicy, match=match):
            fj.Fan(max_failures=bad)
        with pytest.raises(fj.InvalidPolicy, match=match):
            await fj.map(never, range(3), max_failures=bad)
        with pytest.raises(fj.InvalidPolicy, match=match):
            fj.imap(never, range(3), max_failures=bad)
        with pytest.raises(fj.InvalidPolicy, match=match):
            await fj.map_reduce(never, range(3), operator.add, 0, max_failures=bad)

    vrun(main())
    with pytest.raises(fj.InvalidPolicy, match=match):
        fj.run(tasks, max_failures=bad)
