"""Workload 16: dependencies — n trivial tasks in a random DAG, run as its edges allow.

Task i waits for ``degree`` distinct earlier tasks drawn at random (fewer for the first
ones: degree 2 is 2 dependencies per task on average; a fixed seed, so every contender runs
the same graph, drawn — as names — before the timed region). forkjoin gets ``fj.task(f, i,
after=[...])`` (or ``fj.ref`` arguments); the hand-written peer starts an asyncio Task per
node that awaits its dependencies' Tasks; Dask runs the same graph of sync functions on its
threaded scheduler. Building the tasks is timed, as in workloads 1, 5 and 8.

The table's baseline is workload 1's ``fj.gather`` of ``(f, i)`` tuples; the floor compares
the DAG with the same tasks written the same way without dependencies (``fj.task(f, i)``),
so that what it measures is what the dependencies cost; the rows at degrees 2, 8 and 32
show how that cost grows with the number of edges (linearly: the same per edge).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from ._base import Contender, Result, Workload, check_sum, start, stop

SEED = 15
DEGREES = (2, 8, 32)


def graph(n: int, degree: int) -> list[tuple[int, ...]]:
    """The dependencies of each of n tasks: ``degree`` distinct earlier ones (at random)."""
    rng = random.Random(SEED * 1000 + degree)
    return [tuple(rng.sample(range(i), min(i, degree))) for i in range(n)]


def edges(n: int, degree: int) -> int:
    return sum(len(d) for d in graph(n, degree))


async def trivial(i: int) -> int:
    return i


async def joined(i: int, *values: int) -> int:
    return i


def _check(results: Any, n: int, what: str) -> None:
    if len(results) != n or not results.all_ok:
        raise AssertionError(f"{what}: {len(results.failures())} of {n} tasks not ok")
    check_sum((o.value for o in results.values()), n, what)


async def fj_independent(n: int, params: dict[str, Any]) -> Result:
    import forkjoin as fj

    t0 = start()
    # building the keyed input is part of what a user pays, so it is timed
    results = await fj.gather({str(i): (trivial, i) for i in range(n)})
    dt, cpu = stop(t0)
    _check(results, n, "fj.gather")
    return {"seconds": dt, "cpu": cpu}


async def fj_independent_tasks(n: int, params: dict[str, Any]) -> Result:
    import forkjoin as fj

    names = [str(i) for i in range(n)]
    t0 = start()
    results = await fj.gather({names[i]: fj.task(trivial, i) for i in range(n)})
    dt, cpu = stop(t0)
    _check(results, n, "fj.gather of fj.task")
    return {"seconds": dt, "cpu": cpu}


def _fj_after(degree: int) -> Any:
    async def run(n: int, params: dict[str, Any]) -> Result:
        import forkjoin as fj

        deps = graph(n, degree)
        names = [str(i) for i in range(n)]
        after = [[names[d] for d in ds] for ds in deps]  # the graph, as names (the input)
        t0 = start()
        results = await fj.gather({names[i]: fj.task(trivial, i, after=after[i]) for i in range(n)})
        dt, cpu = stop(t0)
        _check(results, n, f"fj.gather after= (degree {degree})")
        return {"seconds": dt, "cpu": cpu, "edges": sum(map(len, deps))}

    return run


async def fj_refs(n: int, params: dict[str, Any]) -> Result:
    import forkjoin as fj

    deps = graph(n, 2)
    names = [str(i) for i in range(n)]
    after = [[names[d] for d in ds] for ds in deps]
    t0 = start()
    results = await fj.gather(
        {names[i]: fj.task(joined, i, *(fj.ref(d) for d in after[i])) for i in range(n)}
    )
    dt, cpu = stop(t0)
    _check(results, n, "fj.gather fj.ref")
    return {"seconds": dt, "cpu": cpu, "edges": sum(map(len, deps))}


def _hand(degree: int) -> Any:
    async def run(n: int, params: dict[str, Any]) -> Result:
        deps = graph(n, degree)
        t0 = start()
        tasks: list[asyncio.Task[int]] = []

        async def node(i: int, waits: tuple[int, ...]) -> int:
            for d in waits:
                await tasks[d]
            return i

        for i in range(n):
            tasks.append(asyncio.create_task(node(i, deps[i])))
        out = await asyncio.gather(*tasks)
        dt, cpu = stop(t0)
        check_sum(out, n, "hand-written")
        return {"seconds": dt, "cpu": cpu, "edges": sum(map(len, deps))}

    return run


def _dask_value(i: int, *values: int) -> int:
    return i


def dask_threaded(n: int, params: dict[str, Any]) -> Result:
    import dask.threaded

    deps = graph(n, 2)
    dsk: dict[Any, Any] = {f"t{i}": (_dask_value, i, *(f"t{d}" for d in deps[i])) for i in range(n)}
    keys = list(dsk)
    t0 = start()
    out = dask.threaded.get(dsk, keys, num_workers=4)
    dt, cpu = stop(t0)
    check_sum(out, n, "dask")
    return {"seconds": dt, "cpu": cpu, "edges": sum(map(len, deps))}


def _has_after() -> str | None:
    import inspect

    import forkjoin as fj

    if "after" not in inspect.signature(fj.task).parameters:
        return "this forkjoin's `task` has no `after`"
    return None


WORKLOAD = Workload(
    id=16,
    cpu_bound=True,
    title="dependencies",
    description="n trivial tasks (`async def f(i): return i`) in a random DAG: task i waits for "
    "`degree` earlier tasks drawn at random (a fixed seed), no limit; the baseline is workload "
    "1's `fj.gather` of `(f, i)`; the floor compares with `fj.task(f, i)` without dependencies",
    contenders=(
        Contender(
            "fj.gather",
            "fj.gather of (f, i), no dependencies",
            "asyncio",
            fj_independent,
            is_forkjoin=True,
        ),
        Contender(
            "fj.task",
            "fj.gather of fj.task(f, i), no dependencies",
            "asyncio",
            fj_independent_tasks,
            is_forkjoin=True,
        ),
        *(
            Contender(
                f"fj.after.{d}",
                f"fj.gather of fj.task(f, i, after=[...]), degree {d}",
                "asyncio",
                _fj_after(d),
                is_forkjoin=True,
                available=_has_after,
            )
            for d in DEGREES
        ),
        Contender(
            "fj.ref.2",
            "fj.gather of fj.task(f, i, fj.ref(a), fj.ref(b)), degree 2",
            "asyncio",
            fj_refs,
            is_forkjoin=True,
            available=_has_after,
        ),
        *(
            Contender(
                f"hand.{d}",
                f"by hand: a Task per node awaiting its dependencies' Tasks, degree {d}",
                "asyncio",
                _hand(d),
            )
            for d in (2,)
        ),
        Contender(
            "dask.threaded",
            "dask.threaded.get of the same graph (sync functions, 4 threads), degree 2",
            "sync",
            dask_threaded,
            needs=("dask",),
        ),
    ),
    sizes={"quick": (2_000,), "full": (10_000,)},
    baseline="fj.gather",
    # a 10,000-task run is tens of ms of CPU: more repeats steady the median
    repeats={"quick": 1, "full": 5},
    # what is measured is the engine's bookkeeping, not the loop's: the stock loop only
    uvloop_sizes={"quick": (), "full": ()},
)
