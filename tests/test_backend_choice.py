"""``backend=``: per task, per group and per run, the most specific winning; the loop and
the thread pool as backends; plans never shared across backends."""

from __future__ import annotations

import asyncio
import threading

import pytest

import forkjoin as fj


def ident() -> int:
    return threading.get_ident()


async def async_ident() -> int:
    await asyncio.sleep(0)
    return threading.get_ident()


def where(o: fj.Outcome) -> list[str | None]:
    return [a.where for a in o.history]


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: fj.task(ident, backend="gpu"), "task.backend"),
        (lambda: fj.task(ident, backend=3), "task.backend"),
        (lambda: fj.Group(backend="gpu"), "Group.backend"),
        (lambda: fj.run({"a": (ident,)}, backend=object()), "backend"),
        (lambda: fj.Fan(backend=""), "backend"),
    ],
)
def test_a_bad_backend_is_named(make: object, field: str) -> None:
    with pytest.raises(fj.InvalidPolicy, match=rf"^{field}: expected \"loop\", \"thread\""):
        make()  # type: ignore[operator]


def test_the_most_specific_backend_wins() -> None:
    main = threading.get_ident()
    results = fj.run(
        {
            "run": (ident,),  # the run's: inline on the loop
            "group": fj.task(ident, group="g"),  # its group's: a thread
            "own": fj.task(ident, group="g", backend="loop"),  # its own: the loop again
            "default": fj.task(async_ident, backend=None, group="h"),
        },
        backend="loop",
        groups={"g": fj.Group(backend="thread")},
    )
    assert results["run"].value == main
    assert results["group"].value != main
    assert results["own"].value == main
    assert results["default"].value == main
    assert where(results["group"]) == ["thread"]
    assert where(results["own"]) == [None]  # the loop
    assert results.report.where == {"loop": 3, "thread": 1}


def test_tasks_on_two_backends_never_share_a_plan() -> None:
    """Tasks with the same options but their backend, one after another and apart: the
    planner's shortcut for the last options and its cache both tell them apart."""
    main = threading.get_ident()
    names = ["t0", "l0", "l1", "t1", "t2", "l2"]
    tasks = {n: fj.task(ident, timeout=5, backend="thread" if n[0] == "t" else "loop")
             for n in names}  # fmt: skip
    results = fj.run(tasks)
    for n in names:
        on_loop = results[n].value == main
        assert on_loop is (n[0] == "l"), n


def test_an_async_function_on_the_thread_backend_runs_in_a_thread() -> None:
    main = threading.get_ident()
    results = fj.run({"thread": fj.task(async_ident, backend="thread"), "loop": (async_ident,)})
    assert results["thread"].value != main
    assert where(results["thread"]) == ["thread"]
    assert results["loop"].value == main


def test_spawn_takes_a_backend() -> None:
    main = threading.get_ident()

    async def main_task() -> fj.Results:
        async with fj.Fan() as fan:
            fan.spawn("inline", ident, backend="loop")
            fan.spawn("thread", ident)
        return fan.results

    results = asyncio.run(main_task())
    assert results["inline"].value == main
    assert results["thread"].value != main


def test_map_takes_a_backend() -> None:
    main = threading.get_ident()
    inline = asyncio.run(
        fj.map(lambda i: (i, threading.get_ident()), range(20), backend="loop")  # type: ignore[arg-type]
    )
    assert inline == [(i, main) for i in range(20)]
    threaded = asyncio.run(fj.map(lambda i: threading.get_ident(), range(20), limit=4))  # type: ignore[arg-type]
    assert main not in threaded


def test_each_takes_a_backend_for_the_tasks_it_spawns() -> None:
    async def where(x: int) -> int:
        return threading.get_ident()

    results = fj.run(
        {"src": (lambda: [1, 2]), "g": fj.each("src", where, fj.item(), backend="thread")}
    )
    assert threading.get_ident() not in {results["g/0"].value, results["g/1"].value}
    assert results["g/0"].history[-1].where == "thread"
