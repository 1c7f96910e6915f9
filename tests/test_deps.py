"""Dependencies: after=, fj.ref, fj.each, on the virtual clock (sleeps take no real time)."""

from __future__ import annotations

import asyncio
import functools
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest

import forkjoin as fj

from .conftest import no_orphans


@dataclass
class Log:
    """When each task's function started and ended (virtual seconds)."""

    starts: dict[str, float] = field(default_factory=dict)
    ends: dict[str, float] = field(default_factory=dict)
    running: int = 0
    peak: int = 0

    def work(self, name: str, seconds: float = 1.0, value: Any = None, fail: bool = False) -> Any:
        async def call(*args: Any) -> Any:
            loop = asyncio.get_running_loop()
            self.starts[name] = loop.time()
            self.running += 1
            self.peak = max(self.peak, self.running)
            try:
                await asyncio.sleep(seconds)
            finally:
                self.running -= 1
            self.ends[name] = loop.time()
            if fail:
                raise ConnectionError(f"{name} is down")
            return value if value is not None else (name, args)

        return call


def test_diamond_runs_both_branches_at_once_and_joins(vrun: Any) -> None:
    log = Log()

    async def add(*xs: int) -> int:
        await asyncio.sleep(1)
        return sum(xs)

    async def main() -> fj.Results:
        results = await fj.gather(
            {
                "d": fj.task(add, fj.ref("b"), fj.ref("c")),  # listed first: order is not the plan
                "a": fj.task(log.work("a", 1, value=1)),
                "b": fj.task(add, fj.ref("a"), 10),
                "c": fj.task(add, fj.ref("a"), 100),
            }
        )
        no_orphans()
        return results

    results = vrun(main())
    assert results.ok_values() == {"d": 112, "a": 1, "b": 11, "c": 101}
    assert list(results) == ["d", "a", "b", "c"]  # keyed in the order given
    o = results
    assert o["a"].started == 0
    assert o["a"].ended == 1
    assert o["b"].started == 1
    assert o["c"].started == 1
    assert o["d"].started == 2
    assert o["d"].ended == 3
    assert results.report.wall == 3
    report = results.report
    assert report.critical_path[0] == "a"
    assert report.critical_path[-1] == "d"
    assert report.critical_path_duration == 3
    assert report.critical_path_speedup == pytest.approx(4 / 3)


def test_a_chain_passes_values_along_and_takes_the_sum_of_its_links(vrun: Any) -> None:
    async def step(x: int) -> int:
        await asyncio.sleep(0.5)
        return x + 1

    n = 200
    tasks: dict[str, Any] = {"0": (step, 0)}
    for i in range(1, n):
        tasks[str(i)] = fj.task(step, fj.ref(str(i - 1)))
    results = vrun(fj.gather(tasks, limit=10))
    assert results[str(n - 1)].value == n
    assert results.report.wall == pytest.approx(n * 0.5)
    assert len(results.report.critical_path) == n
    assert results.report.critical_path_speedup == pytest.approx(1.0)


def test_after_without_a_reference_only_orders(vrun: Any) -> None:
    log = Log()
    results = vrun(
        fj.gather(
            {
                "migrate": fj.task(log.work("migrate", 2)),
                "serve": fj.task(log.work("serve", 1), after=["migrate"]),
                "other": fj.task(log.work("other", 1)),
            }
        )
    )
    assert results.all_ok
    assert log.starts == {"migrate": 0, "other": 0, "serve": 2}
    assert results["serve"].value == ("serve", ())


def test_references_reach_into_values_containers_and_partials(vrun: Any) -> None:
    seen: list[Any] = []

    async def search() -> dict[str, Any]:
        return {"urls": ["u0", "u1"], "meta": {"n": 2}}

    def use(a: Any, b: Any, *, k: Any = None) -> str:  # sync: runs in a thread
        seen.append((a, b, k))
        return "done"

    results = vrun(
        fj.gather(
            {
                "search": search,
                "use": fj.task(
                    functools.partial(use, k=fj.ref("search", "meta", "n")),
                    [fj.ref("search", "urls", 1), {"x": (fj.ref("search", "urls", 0),)}],
                    fj.ref("search"),
                ),
            }
        )
    )
    assert results["use"].value == "done"
    assert seen == [(["u1", {"x": ("u0",)}], {"urls": ["u0", "u1"], "meta": {"n": 2}}, 2)]


def test_a_reference_into_a_missing_key_fails_the_task_clearly(vrun: Any) -> None:
    async def search() -> dict[str, Any]:
        return {"urls": []}

    async def use(x: Any) -> Any:
        raise AssertionError("never called")

    results = vrun(
        fj.gather(
            {
                "search": search,
                "use": fj.task(use, fj.ref("search", "links")),
                "after_use": fj.task(use, 1, after=["use"]),
            }
        )
    )
    use_o = results["use"]
    assert use_o.status is fj.Status.FAILED
    assert isinstance(use_o.error, LookupError)
    assert "fj.ref('search', 'links')" in str(use_o.error)
    assert "'urls'" in str(use_o.error)  # says what is there
    assert results["after_use"].reason == "dependency"


def test_failure_skips_dependents_transitively_naming_the_root(vrun: Any) -> None:
    log = Log()
    results = vrun(
        fj.gather(
            {
                "a": fj.task(log.work("a", 1, fail=True)),
                "b": fj.task(log.work("b"), after=["a"]),
                "c": fj.task(log.work("c"), fj.ref("b")),
                "x": fj.task(log.work("x")),
                "y": fj.task(log.work("y"), after=["x", "c"]),
            }
        )
    )
    assert results["a"].status is fj.Status.FAILED
    assert results["x"].ok
    for name in "bcy":
        o = results[name]
        assert o.status is fj.Status.SKIPPED
        assert o.reason == "dependency"
        assert isinstance(o.error, fj.DependencyFailed)
        assert isinstance(o.error, fj.TaskSkipped)
        assert o.error.root == "a"
        assert o.error.root_status == "failed"
        assert o.attempts == 0
        assert o.started is None
    assert results["b"].error.dependency == "a"
    assert "dependency 'a' failed: ConnectionError: a is down" in str(results["b"].error)
    assert results["c"].error.dependency == "b"
    assert results["c"].error.status == "skipped"
    assert str(results["c"].error) == "skipped (dependency 'b' was skipped, because 'a' failed)"
    assert results["y"].error.dependency == "c"
    assert set(log.starts) == {"a", "x"}  # nothing downstream of the failure was called


def test_a_long_chain_of_skips_does_not_recurse(vrun: Any) -> None:
    async def boom() -> None:
        raise ValueError("first link")

    async def link(x: Any) -> Any:
        return x

    n = sys.getrecursionlimit() * 3
    tasks: dict[str, Any] = {"0": boom}
    for i in range(1, n):
        tasks[str(i)] = fj.task(link, fj.ref(str(i - 1)))
    results = vrun(fj.gather(tasks))
    assert results.counts() == {"failed": 1, "skipped": n - 1}
    assert results[str(n - 1)].error.root == "0"
    assert len(str(results[str(n - 1)].error)) < 200  # the message does not grow with the chain


def test_on_dependency_failure_run_gets_the_default(vrun: Any) -> None:
    log = Log()

    async def report(a: Any, b: Any) -> tuple[Any, Any]:
        return a, b

    results = vrun(
        fj.gather(
            {
                "a": fj.task(log.work("a", fail=True)),
                "b": fj.task(log.work("b", value="B")),
                "r": fj.task(
                    report,
                    fj.ref("a", default="no a"),
                    fj.ref("b", default="no b"),
                    on_dependency_failure="run",
                ),
                "r2": fj.task(report, fj.ref("a"), 0, on_dependency_failure="run"),
            }
        )
    )
    assert results["r"].value == ("no a", "B")
    assert results["r2"].value == (None, 0)
    assert results["r"].started == 1  # it still waited for both


def test_unknown_names_and_cycles_are_refused_before_anything_runs(vrun: Any) -> None:
    called: list[str] = []

    async def f(x: Any = None) -> None:
        called.append("f")

    cases = [
        (
            {
                "a": fj.task(f, after=["b"]),
                "b": fj.task(f, fj.ref("c")),
                "c": fj.task(f, after="a"),
            },
            "dependency cycle: 'a' waits for 'b', which waits for 'c', which waits for 'a'",
        ),
        ({"a": fj.task(f, after=["a"])}, "dependency cycle: 'a' waits for 'a'"),
        (
            {"alpha": (f,), "b": fj.task(f, fj.ref("alpah"))},
            "tasks['b']: waits for 'alpah', which is not a task of this run (did you mean "
            "'alpha'?)",
        ),
        (
            {"a": (f,), "b": fj.task(f, fj.item())},
            "task 'b': fj.item() stands for an element in a task of fj.each(...)",
        ),
    ]
    for tasks, message in cases:
        with pytest.raises(fj.InvalidPolicy) as e:
            vrun(fj.gather(tasks))
        assert message in str(e.value)
        with pytest.raises(fj.InvalidPolicy):
            fj.run(tasks)
    assert called == []


def test_bad_dependency_values_are_refused_where_given() -> None:
    async def f() -> None:
        pass

    with pytest.raises(fj.InvalidPolicy, match=r"task\.after: expected task names, got 3"):
        fj.task(f, after=[3])
    with pytest.raises(fj.InvalidPolicy, match=r"task\.on_dependency_failure: expected 'skip'"):
        fj.task(f, after=["a"], on_dependency_failure="maybe")
    with pytest.raises(fj.InvalidPolicy, match=r"fj\.ref: expected a task name"):
        fj.ref("")
    with pytest.raises(fj.InvalidPolicy, match=r"keys \(str\) and indexes \(int\), got 1\.5"):
        fj.ref("a", 1.5)  # type: ignore[arg-type]
    with pytest.raises(fj.InvalidPolicy, match=r"fj\.each: expected the name of a task"):
        fj.each(3, f)
    t = fj.task(f, after=("a", "b", "a"))
    assert t.after == ("a", "b")
    assert t.default  # what it waits for does not shape its call
    assert "after=('a', 'b')" in repr(t)
    assert fj.task(f, after="a").after == ("a",)
    assert fj.task(f).after == ()
    assert fj.task(f).default
    assert t.with_options(timeout=1).after == ("a", "b")


def test_a_group_limit_holds_and_dependents_take_free_slots_at_once(vrun: Any) -> None:
    log = Log()
    tasks: dict[str, Any] = {}
    for i in range(4):
        tasks[f"fetch{i}"] = fj.task(log.work(f"fetch{i}", 1), group="api")
        tasks[f"parse{i}"] = fj.task(log.work(f"parse{i}", 1), fj.ref(f"fetch{i}"), group="api")
    results = vrun(fj.gather(tasks, limits={"api": 2}))
    assert results.all_ok
    assert log.peak == 2
    # fetch0/1 at 0; when they end at 1, parse0/1 are ready alongside fetch2/3: the slots are
    # never idle while something is ready, so 8 one-second tasks on 2 slots take 4 s
    assert results.report.wall == 4
    for i in range(4):
        assert log.starts[f"parse{i}"] >= log.ends[f"fetch{i}"]


def test_a_chain_passes_its_priority_to_what_it_unblocks(vrun: Any) -> None:
    log = Log()
    tasks: dict[str, Any] = {
        "urgent": fj.task(log.work("urgent", 1), priority=5),
        "urgent-next": fj.task(log.work("urgent-next", 1), after=["urgent"]),  # inherits 5
        "urgent-last": fj.task(log.work("urgent-last", 1), after=["urgent-next"]),
        "set-low": fj.task(log.work("set-low", 1), after=["urgent"], priority=-1),
    }
    for i in range(4):
        tasks[f"bulk{i}"] = fj.task(log.work(f"bulk{i}", 1), priority=1)
    results = vrun(fj.gather(tasks, limit=1))
    order = sorted(log.starts, key=log.starts.__getitem__)
    assert order == [
        "urgent", "urgent-next", "urgent-last", "bulk0", "bulk1", "bulk2", "bulk3", "set-low",
    ]  # fmt: skip
    assert results.all_ok


def test_a_deadline_cuts_a_chain(vrun: Any) -> None:
    log = Log()
    tasks: dict[str, Any] = {"0": fj.task(log.work("0", 1))}
    for i in range(1, 6):
        tasks[str(i)] = fj.task(log.work(str(i), 1), fj.ref(str(i - 1)))

    async def main() -> fj.Results:
        results = await fj.gather(tasks, deadline=2.5)
        no_orphans()
        return results

    results = vrun(main())
    assert [results[str(i)].status.value for i in range(6)] == [
        "ok", "ok", "timed_out", "skipped", "skipped", "skipped",
    ]  # fmt: skip
    assert results["2"].reason == "deadline"
    assert {results[str(i)].reason for i in range(3, 6)} == {"deadline"}
    assert results.report.wall == 2.5


def test_fail_fast_skips_what_waits(vrun: Any) -> None:
    log = Log()
    with pytest.raises(fj.FanError) as e:
        vrun(
            fj.gather(
                {
                    "a": fj.task(log.work("a", 1, fail=True)),
                    "slow": fj.task(log.work("slow", 5)),
                    "b": fj.task(log.work("b"), after=["slow"]),
                },
                on_error="fail_fast",
            )
        )
    results = e.value.results
    assert results["b"].status is fj.Status.SKIPPED
    assert results["b"].reason == "fail_fast"
    assert results["slow"].status is fj.Status.CANCELLED


def test_a_retried_dependency_feeds_its_final_value(vrun: Any) -> None:
    calls = {"n": 0}

    async def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError("try again")
        return "third time"

    async def use(x: str) -> str:
        return x.upper()

    results = vrun(
        fj.gather(
            {
                "flaky": fj.task(flaky, retry=fj.Retry(attempts=3, backoff=0.1)),
                "use": fj.task(use, fj.ref("flaky"), timeout=1),
            }
        )
    )
    assert results["use"].value == "THIRD TIME"
    assert results["flaky"].attempts == 3


def test_a_dependency_skipped_for_the_budget_skips_its_dependents(vrun: Any) -> None:
    log = Log()
    results = vrun(
        fj.gather(
            {
                "cheap": fj.task(log.work("cheap"), cost=0.4),
                "dear": fj.task(log.work("dear"), cost=0.9, after=["cheap"]),
                "after-dear": fj.task(log.work("after-dear"), fj.ref("dear")),
            },
            budget=fj.Budget(usd=1.0),
        )
    )
    assert results["dear"].reason == "budget"
    assert results["after-dear"].reason == "dependency"
    assert results["after-dear"].error.status == "skipped"


# -- fan-out from a result ---------------------------------------------------------------


def test_each_spawns_a_task_per_element_and_joins_their_values(vrun: Any) -> None:
    log = Log()

    async def search() -> dict[str, Any]:
        await asyncio.sleep(1)
        return {"hits": [{"url": f"https://x.example/{i}"} for i in range(300)]}

    async def fetch(url: str, tag: str) -> str:
        log.starts[url] = asyncio.get_running_loop().time()
        await asyncio.sleep(2)
        return f"{tag}:{url}"

    async def summarize(pages: list[str], first: str) -> str:
        return f"{len(pages)} pages, first {first}"

    async def main() -> fj.Results:
        results = await fj.gather(
            {
                "tag": lambda: "T",
                "search": search,
                "deep": fj.each(fj.ref("search", "hits"), fetch, fj.item("url"), fj.ref("tag")),
                "summary": fj.task(summarize, fj.ref("deep"), fj.ref("deep", 0)),
            },
            limit=100,
        )
        no_orphans()
        return results

    results = vrun(main())
    names = [f"deep/{i}" for i in range(300)]
    assert list(results)[4:] == names  # spawned tasks follow, in element order
    assert results["deep"].value == [f"T:https://x.example/{i}" for i in range(300)]
    assert results["summary"].value == "300 pages, first T:https://x.example/0"
    assert results["deep/7"].value == "T:https://x.example/7"
    assert min(log.starts.values()) == 1  # spawned once search ended
    assert results.report.wall == 1 + 3 * 2  # 300 fetches of 2 s under limit 100
    assert results["deep"].attempts == 0  # the group makes no call of its own
    report = results.report
    assert report.task("deep").after == tuple(names)
    assert report.task("deep/5").after == ("search", "tag")
    assert report.critical_path[0] == "search"
    assert report.critical_path[-2:] == ("deep", "summary")


def test_each_names_tasks_by_key_and_refuses_duplicates(vrun: Any) -> None:
    async def source() -> list[str]:
        return ["a", "b", "a"]

    async def f(x: str) -> str:
        return x * 2

    ok = vrun(
        fj.gather(
            {
                "src": lambda: ["x", "y"],
                "g": fj.each("src", f, fj.item(), key=str.upper),
            }
        )
    )
    assert ok.ok_values() == {"src": ["x", "y"], "g": ["xx", "yy"], "g/X": "xx", "g/Y": "yy"}
    bad = vrun(
        fj.gather(
            {
                "src": source,
                "g": fj.each("src", f, fj.item(), key=str),
                "h": fj.task(f, fj.ref("g")),
            }
        )
    )
    assert bad["g"].status is fj.Status.FAILED
    assert "two elements are both named 'g/a'" in str(bad["g"].error)
    assert bad["h"].reason == "dependency"
    assert list(bad) == ["src", "g", "h"]  # nothing was spawned


def test_each_over_something_that_is_no_list_fails_the_group(vrun: Any) -> None:
    async def f(x: Any) -> Any:
        return x

    results = vrun(
        fj.gather(
            {
                "doc": lambda: {"urls": ["u"]},
                "none": lambda: None,
                "g": fj.each("doc", f, fj.item()),
                "empty": fj.each("none", f, fj.item()),
                "zero": fj.each(fj.ref("doc", "urls", 0), f, fj.item()),  # a string
            }
        )
    )
    assert results["g"].status is fj.Status.FAILED
    assert "its value is a dict, not a list" in str(results["g"].error)
    assert results["empty"].ok
    assert results["empty"].value == []
    assert results["zero"].status is fj.Status.FAILED


def test_a_failed_task_of_a_group_skips_what_waits_for_the_group(vrun: Any) -> None:
    async def fetch(i: int) -> int:
        await asyncio.sleep(i)
        if i == 2:
            raise ConnectionError("page 2 is gone")
        return i

    async def total(values: list[int]) -> int:
        return sum(values)

    results = vrun(
        fj.gather(
            {
                "ids": lambda: [1, 2, 3],
                "pages": fj.each("ids", fetch, fj.item()),
                "strict": fj.task(total, fj.ref("pages")),
                "partial": fj.task(total, fj.ref("pages"), on_dependency_failure="run"),
                "after-all": fj.task(total, [0], after=["pages/*"]),
            }
        )
    )
    assert results["pages/1"].status is fj.Status.FAILED  # the element 2
    assert results["pages/2"].ok  # the others go on
    assert results["pages"].reason == "dependency"
    assert results["pages"].error.dependency == "pages/1"
    assert results["strict"].reason == "dependency"
    assert results["after-all"].reason == "dependency"
    assert results["partial"].value == 4  # the values of the tasks that ended ok
    assert results["partial"].started == 3  # once every task of the group had ended


def test_each_tasks_take_the_options_given_and_inherit_priority(vrun: Any) -> None:
    log = Log()

    async def slow(i: int) -> int:
        await asyncio.sleep(10)
        return i

    results = vrun(
        fj.gather(
            {
                "src": fj.task(log.work("src", 1, value=[1, 2]), priority=3),
                "g": fj.each("src", slow, fj.item(), timeout=2, group="pool"),
                "other": fj.task(log.work("other", 1)),
            },
            limit=1,
        )
    )
    assert results["g/0"].status is fj.Status.TIMED_OUT
    assert results["g/0"].reason == "timeout"
    assert results["g/0"].group == "pool"
    assert log.starts == {"src": 0, "other": 5}  # g/0 and g/1 (priority 3, inherited) first


# -- in a Fan ----------------------------------------------------------------------------


def test_fan_waits_for_tasks_spawned_later_and_from_inside_tasks(vrun: Any) -> None:
    log = Log()

    async def producer() -> list[str]:
        await asyncio.sleep(1)
        fj.current_fan().spawn("made-inside", log.work("made-inside", 1, value="inside"))
        return ["p0", "p1"]

    async def main() -> fj.Results:
        async with fj.Fan(limit=4) as fan:
            fan.spawn("consumer", log.work("consumer", 1), fj.ref("made-inside"))
            fan.spawn("producer", producer)
            fan.spawn("deep", fj.each("producer", log.work("each", 1), fj.item()))
            streamed = [o.name async for o in fan.as_completed()]
        no_orphans()
        assert streamed[0] == "producer"
        assert sorted(streamed) == sorted(fan.results)
        return fan.results

    results = vrun(main())
    assert results["consumer"].value == ("consumer", ("inside",))
    assert results["deep"].value == [("each", ("p0",)), ("each", ("p1",))]
    assert log.starts["consumer"] == 2


def test_fan_skips_dependents_of_tasks_never_spawned_when_it_closes(vrun: Any) -> None:
    log = Log()

    async def main() -> tuple[fj.Results, list[str]]:
        async with fj.Fan() as fan:
            fan.spawn("waits", log.work("waits"), after=["never"])
            fan.spawn("waits-more", log.work("waits-more"), fj.ref("waits"))
            fan.spawn("free", log.work("free"))
            # nothing can end the wait: as_completed stops instead of hanging
            streamed = [o.name async for o in fan.as_completed()]
            fan.spawn("late", log.work("late"), after=["free"])  # still possible after it
        return fan.results, streamed

    results, streamed = vrun(main())
    assert streamed == ["free"]
    assert results["late"].ok
    waits = results["waits"]
    assert waits.reason == "dependency"
    assert waits.error.status is None
    assert str(waits.error) == "skipped (dependency 'never' was never spawned)"
    assert results["waits-more"].error.root == "never"
    assert "waits" not in log.starts


def test_fan_refuses_a_spawn_that_closes_a_cycle(vrun: Any) -> None:
    async def f() -> None:
        pass

    async def main() -> None:
        async with fj.Fan() as fan:
            fan.spawn("a", f, after=["b"])
            fan.spawn("b", f, after=["c"])
            with pytest.raises(fj.InvalidPolicy, match="'c' would wait for 'a', which waits"):
                fan.spawn("c", f, after=["a"])
            with pytest.raises(fj.InvalidPolicy, match="task 'd': waits for itself"):
                fan.spawn("d", f, after=["d"])
            fan.spawn("c", f)
        assert fan.results.all_ok

    vrun(main())


def test_fan_spawn_after_a_dependency_already_ended(vrun: Any) -> None:
    async def f(x: Any = None) -> Any:
        return x

    async def boom() -> None:
        raise ValueError("no")

    async def main() -> fj.Results:
        async with fj.Fan() as fan:
            fan.spawn("a", f, 1)
            fan.spawn("bad", boom)
            await asyncio.sleep(1)
            fan.spawn("b", f, fj.ref("a"))  # ended ok already: runs at once with the value
            fan.spawn("c", f, after=["bad"])  # ended not ok already: skipped at once
            fan.spawn("each", fj.each("a", f, fj.item()))  # not a list: the group fails
        return fan.results

    results = vrun(main())
    assert results["b"].value == 1
    assert results["c"].reason == "dependency"
    assert results["each"].status is fj.Status.FAILED


def test_held_tasks_are_queued_events_and_skips_are_finished_events(vrun: Any) -> None:
    seen: list[tuple[str, str]] = []

    class Obs:
        def on_task_queued(self, e: fj.TaskQueued) -> None:
            seen.append(("queued", e.name))

        def on_task_finished(self, e: fj.TaskFinished) -> None:
            seen.append(("finished", e.outcome.name))

    async def boom() -> None:
        raise ValueError("x")

    results = vrun(fj.gather({"a": boom, "b": fj.task(boom, after=["a"])}, observers=[Obs()]))
    assert results["b"].reason == "dependency"
    assert seen == [("queued", "a"), ("queued", "b"), ("finished", "a"), ("finished", "b")]


def test_a_sync_dependency_in_a_thread(vrun: Any) -> None:
    def load() -> list[int]:
        return [1, 2, 3]

    def double(xs: list[int]) -> list[int]:
        return [2 * x for x in xs]

    results = fj.run({"load": load, "double": fj.task(double, fj.ref("load"))}, limit=2)
    assert results["double"].value == [2, 4, 6]


def test_tasks_resumed_in_the_middle_of_a_chain_feed_their_recorded_values(vrun: Any) -> None:
    # the seam a journal resumes through: Engine.start_all(states, resumed={name: Outcome})
    from forkjoin._engine import Engine
    from forkjoin._options import build_options

    calls: list[int] = []

    async def step(x: int) -> int:
        calls.append(x)
        await asyncio.sleep(1)
        return x + 1

    def recorded(name: str, value: int) -> fj.Outcome:
        return fj.Outcome(name, fj.Status.OK, value, attempts=1)

    async def run(resumed: dict[str, fj.Outcome]) -> fj.Results:
        engine = Engine(build_options({"limit": 2}))
        states = engine.prepare(
            {
                "a": (step, 0),
                "b": fj.task(step, fj.ref("a")),
                "c": fj.task(step, fj.ref("b")),
                "d": fj.task(step, fj.ref("a")),
            }
        )
        engine.open()
        engine.start_all(states, resumed)
        await engine.wait()
        return engine.close()

    # a and b finished in an earlier run: neither is called again, c reads b's recorded
    # value and d a's, and nothing waits for what is not run
    results = vrun(run({"a": recorded("a", 40), "b": recorded("b", 41)}))
    assert {n: o.value for n, o in results.items()} == {"a": 40, "b": 41, "c": 42, "d": 41}
    assert sorted(calls) == [40, 41]
    assert results["c"].started == 0  # it did not wait for a task that was not run
    calls.clear()
    # only the middle of the chain was recorded: a runs again, c still reads b's record
    results = vrun(run({"b": recorded("b", 41)}))
    assert {n: o.value for n, o in results.items()} == {"a": 1, "b": 41, "c": 42, "d": 2}
    assert sorted(calls) == [0, 1, 41]


def test_fan_spawn_of_an_unnamed_group_names_its_tasks_after_the_source(vrun: Any) -> None:
    async def double(x: int) -> int:
        return 2 * x

    async def main() -> fj.Results:
        async with fj.Fan() as fan:
            fan.spawn("search", lambda: [1, 2])
            fan.spawn(fj.each("search", double, fj.item()))
            fan.spawn("sum", fj.task(sum, fj.ref("search/each")))
        return fan.results

    results = vrun(main())
    assert results.ok_values() == {
        "search": [1, 2], "search/each": [2, 4], "sum": 6, "search/each/0": 2, "search/each/1": 4,
    }  # fmt: skip


def test_dependencies_under_rates_hedges_and_a_breaker(vrun: Any) -> None:
    log = Log()
    slow_once = {"n": 0}

    async def flaky_slow(x: Any) -> str:
        slow_once["n"] += 1
        await asyncio.sleep(5 if slow_once["n"] == 1 else 0.1)  # the first call hangs
        return "hedged"

    tasks: dict[str, Any] = {"src": fj.task(log.work("src", 1, value=list(range(6))))}
    tasks["calls"] = fj.each("src", log.work("call", 0.1), fj.item(), group="api")
    tasks["hedged"] = fj.task(
        flaky_slow, fj.ref("src"), idempotent=True, hedge=fj.Hedge(after=0.5), timeout=3
    )
    tasks["end"] = fj.task(log.work("end", 1), after=["calls", "hedged"])
    results = vrun(
        fj.gather(
            tasks,
            rates={"api": fj.RateLimit(2, per=1)},
            groups={"api": fj.Group(breaker=fj.CircuitBreaker(failures=3, reset=10))},
        )
    )
    assert results.all_ok
    assert results["hedged"].value == "hedged"
    starts = sorted(o.started for n, o in results.items() if n.startswith("calls/"))
    assert starts[0] >= 1  # after the source
    assert starts[-1] - starts[0] >= 2  # six calls at two per second
    waited_for = [o.ended for n, o in results.items() if n.startswith("calls/") or n == "hedged"]
    assert results["end"].started == max(waited_for)
