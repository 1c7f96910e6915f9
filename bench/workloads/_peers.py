"""The contenders of workloads 1-3: one fan-out of ``work(i)`` for i in range(n), results kept.

``params["limit"]`` is the concurrency limit (None: unlimited) and ``params["work"]`` the
task body: ``"trivial"`` (``async def f(i): return i``) or ``"sleep"`` (sleeps 10 ms).
Each implementation is what a careful user would write with that tool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from ._base import Contender, Result, check_sum, start, stop

SLEEP = 0.01


async def trivial(i: int) -> int:
    return i


async def nap(i: int) -> int:
    await asyncio.sleep(SLEEP)
    return i


async def trio_nap(i: int) -> int:
    import trio

    await trio.sleep(SLEEP)
    return i


def _work(params: dict[str, Any]) -> Callable[[int], Awaitable[int]]:
    return nap if params["work"] == "sleep" else trivial


# -- the physical floor -----------------------------------------------------------------


async def inline_loop(n: int, params: dict[str, Any]) -> Result:
    work = _work(params)
    t0 = start()
    out = [await work(i) for i in range(n)]
    dt, cpu = stop(t0)
    check_sum(out, n, "inline")
    return {"seconds": dt, "cpu": cpu}


# -- asyncio by hand ----------------------------------------------------------------------


async def asyncio_gather(n: int, params: dict[str, Any]) -> Result:
    work = _work(params)
    t0 = start()
    out = await asyncio.gather(*[work(i) for i in range(n)])
    dt, cpu = stop(t0)
    check_sum(out, n, "asyncio.gather")
    return {"seconds": dt, "cpu": cpu}


async def task_group(n: int, params: dict[str, Any]) -> Result:
    work = _work(params)
    limit = params["limit"]
    t0 = start()
    if limit is None:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(work(i)) for i in range(n)]
    else:
        sem = asyncio.Semaphore(limit)

        async def one(i: int) -> int:
            async with sem:
                return await work(i)

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(one(i)) for i in range(n)]
    out = [t.result() for t in tasks]
    dt, cpu = stop(t0)
    check_sum(out, n, "TaskGroup")
    return {"seconds": dt, "cpu": cpu}


async def gather_semaphore(n: int, params: dict[str, Any]) -> Result:
    work = _work(params)
    sem = asyncio.Semaphore(params["limit"])

    async def one(i: int) -> int:
        async with sem:
            return await work(i)

    t0 = start()
    out = await asyncio.gather(*[one(i) for i in range(n)])
    dt, cpu = stop(t0)
    check_sum(out, n, "gather+Semaphore")
    return {"seconds": dt, "cpu": cpu}


async def lazy_tasks(n: int, params: dict[str, Any]) -> Result:
    """A Task per item, made only when the semaphore has a free slot (flat memory)."""
    work = _work(params)
    limit = params["limit"]
    loop = asyncio.get_running_loop()
    out: list[int] = [0] * n
    t0 = start()
    sem = asyncio.Semaphore(limit)
    live: set[asyncio.Task[None]] = set()

    async def one(i: int) -> None:
        try:
            out[i] = await work(i)
        finally:
            sem.release()

    for i in range(n):
        await sem.acquire()
        t = loop.create_task(one(i))
        live.add(t)
        t.add_done_callback(live.discard)
    while live:
        await asyncio.wait(live)
    dt, cpu = stop(t0)
    check_sum(out, n, "lazy tasks")
    return {"seconds": dt, "cpu": cpu}


async def worker_pool(n: int, params: dict[str, Any]) -> Result:
    """``limit`` workers pulling from one shared iterator: no Task per item."""
    work = _work(params)
    limit = params["limit"]
    out: list[int] = [0] * n
    t0 = start()
    it = iter(range(n))

    async def worker() -> None:
        for i in it:
            out[i] = await work(i)

    await asyncio.gather(*[worker() for _ in range(min(limit, n))])
    dt, cpu = stop(t0)
    check_sum(out, n, "worker pool")
    return {"seconds": dt, "cpu": cpu}


# -- libraries ----------------------------------------------------------------------------


async def aiometer_run_all(n: int, params: dict[str, Any]) -> Result:
    import aiometer

    work = _work(params)
    t0 = start()
    out = await aiometer.run_all([partial(work, i) for i in range(n)], max_at_once=params["limit"])
    dt, cpu = stop(t0)
    check_sum(out, n, "aiometer.run_all")
    return {"seconds": dt, "cpu": cpu}


async def aiometer_amap(n: int, params: dict[str, Any]) -> Result:
    import aiometer

    work = _work(params)
    t0 = start()
    out = []
    async with aiometer.amap(work, range(n), max_at_once=params["limit"]) as results:
        async for v in results:
            out.append(v)
    dt, cpu = stop(t0)
    check_sum(out, n, "aiometer.amap")
    return {"seconds": dt, "cpu": cpu}


def _anyio_has(name: str) -> Callable[[], str | None]:
    def check() -> str | None:
        import anyio

        if not hasattr(anyio, name):
            return f"this anyio has no `anyio.{name}` (new in anyio 4.16)"
        return None

    return check


async def anyio_task_group(n: int, params: dict[str, Any]) -> Result:
    import anyio

    work = _work(params)
    limit = params["limit"]
    out: list[int] = [0] * n
    t0 = start()
    if limit is None:

        async def one(i: int) -> None:
            out[i] = await work(i)

    else:
        limiter = anyio.CapacityLimiter(limit)

        async def one(i: int) -> None:
            async with limiter:
                out[i] = await work(i)

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    dt, cpu = stop(t0)
    check_sum(out, n, "anyio task group")
    return {"seconds": dt, "cpu": cpu}


async def anyio_gather(n: int, params: dict[str, Any]) -> Result:
    import anyio

    work = _work(params)
    t0 = start()
    out = await anyio.gather(*[work(i) for i in range(n)])  # type: ignore[attr-defined]
    dt, cpu = stop(t0)
    check_sum(out, n, "anyio.gather")
    return {"seconds": dt, "cpu": cpu}


async def anyio_amap(n: int, params: dict[str, Any]) -> Result:
    import anyio

    work = _work(params)
    t0 = start()
    out = await anyio.amap(work, range(n))  # type: ignore[attr-defined]
    dt, cpu = stop(t0)
    check_sum(out, n, "anyio.amap")
    return {"seconds": dt, "cpu": cpu}


async def trio_nursery(n: int, params: dict[str, Any]) -> Result:
    import trio

    work = trio_nap if params["work"] == "sleep" else trivial
    limit = params["limit"]
    out: list[int] = [0] * n
    t0 = start()
    if limit is None:

        async def one(i: int) -> None:
            out[i] = await work(i)

    else:
        limiter = trio.CapacityLimiter(limit)

        async def one(i: int) -> None:
            async with limiter:
                out[i] = await work(i)

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)
    dt, cpu = stop(t0)
    check_sum(out, n, "trio nursery")
    return {"seconds": dt, "cpu": cpu}


async def langchain_abatch(n: int, params: dict[str, Any]) -> Result:
    from langchain_core.runnables import RunnableLambda

    work = _work(params)
    limit = params["limit"]
    runnable = RunnableLambda(work)
    inputs = list(range(n))
    # abatch(max_concurrency=) is spelled config={"max_concurrency": ...}: a bare keyword is
    # passed on to the function itself
    config: Any = {"max_concurrency": limit} if limit is not None else None
    t0 = start()
    out = await runnable.abatch(inputs, config=config)
    dt, cpu = stop(t0)
    check_sum(out, n, "langchain abatch")
    return {"seconds": dt, "cpu": cpu}


# -- forkjoin -----------------------------------------------------------------------------


async def fj_gather(n: int, params: dict[str, Any]) -> Result:
    import forkjoin as fj

    work = _work(params)
    t0 = start()
    # building the keyed input is part of what a user pays, so it is timed
    results = await fj.gather({str(i): (work, i) for i in range(n)}, limit=params["limit"])
    dt, cpu = stop(t0)
    if not results.all_ok:
        raise AssertionError(f"fj.gather: {len(results.failures())} tasks not ok")
    check_sum((o.value for o in results.values()), n, "fj.gather")
    return {"seconds": dt, "cpu": cpu}


async def fj_map(n: int, params: dict[str, Any]) -> Result:
    import forkjoin as fj

    work = _work(params)
    t0 = start()
    out = await fj.map(work, range(n), limit=params["limit"])
    dt, cpu = stop(t0)
    check_sum(out, n, "fj.map")
    return {"seconds": dt, "cpu": cpu}


# slow peers (tens to hundreds of µs per task) run on uvloop only up to this size in full
# mode, or a full run would not fit in 20 minutes on 2 cores
HEAVY_UVLOOP_MAX = 10_000


def contenders(limited: bool, caps: dict[str, int]) -> tuple[Contender, ...]:
    """The contenders for an unlimited (workload 1) or limited (2, 3) fan-out.

    ``caps``: contender key -> the largest size it runs at in full mode (the slow peers
    take minutes per repeat at the large sizes; what the floors need is kept).
    """

    def c(key: str, label: str, fn: Any, runtime: str = "asyncio", **kw: Any) -> Contender:
        return Contender(key, label, runtime, fn, max_n=caps.get(key), **kw)

    def heavy(key: str, label: str, fn: Any, needs: str, **kw: Any) -> Contender:
        # unlimited (workload 1): stock loop only; their uvloop figures are in workload 2
        kw.setdefault("uvloop", limited)
        return c(key, label, fn, needs=(needs,), uvloop_max_n=HEAVY_UVLOOP_MAX, **kw)

    fj = (
        c("fj.gather", "fj.gather", fj_gather, is_forkjoin=True),
        c("fj.map", "fj.map", fj_map, is_forkjoin=True),
    )
    lc = {"preload": ("langchain_core.runnables",)}
    if not limited:
        return (
            c("asyncio.gather", "asyncio.gather", asyncio_gather),
            c("inline", "inline await loop (no concurrency; floor)", inline_loop),
            c("taskgroup", "asyncio.TaskGroup", task_group),
            *fj,
            heavy("aiometer.run_all", "aiometer.run_all", aiometer_run_all, "aiometer"),
            heavy("aiometer.amap", "aiometer.amap", aiometer_amap, "aiometer"),
            heavy("anyio.tg", "anyio task group", anyio_task_group, "anyio"),
            heavy(
                "anyio.gather",
                "anyio.gather",
                anyio_gather,
                "anyio",
                available=_anyio_has("gather"),
            ),
            heavy("anyio.amap", "anyio.amap", anyio_amap, "anyio", available=_anyio_has("amap")),
            c("trio", "trio nursery", trio_nursery, "trio", needs=("trio",)),
            heavy(
                "langchain",
                "langchain-core RunnableLambda.abatch",
                langchain_abatch,
                "langchain_core",
                **lc,
            ),
        )
    return (
        c("gather+sem", "asyncio.gather + Semaphore", gather_semaphore),
        c("pool", "hand-written pool of `limit` workers (floor)", worker_pool),
        c("lazy-tasks", "Task per item, made when a Semaphore slot frees", lazy_tasks),
        c("taskgroup+sem", "asyncio.TaskGroup + Semaphore", task_group),
        *fj,
        heavy("aiometer.run_all", "aiometer.run_all(max_at_once=)", aiometer_run_all, "aiometer"),
        heavy("aiometer.amap", "aiometer.amap(max_at_once=)", aiometer_amap, "aiometer"),
        heavy("anyio.tg+limiter", "anyio task group + CapacityLimiter", anyio_task_group, "anyio"),
        c("trio+limiter", "trio nursery + CapacityLimiter", trio_nursery, "trio", needs=("trio",)),
        heavy(
            "langchain",
            "langchain-core RunnableLambda.abatch(max_concurrency=)",
            langchain_abatch,
            "langchain_core",
            **lc,
        ),
    )
