"""Workload 6: blocking calls — n sync calls of ``time.sleep(0.01)`` under limit 50,
against ``ThreadPoolExecutor(50).map`` (ideal: n / 50 × 10 ms)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ._base import Contender, Result, Workload, check_sum, start, stop

LIMIT = 50
SLEEP = 0.01


def block(i: int) -> int:
    time.sleep(SLEEP)
    return i


def tpe_map(n: int, params: dict[str, Any]) -> Result:
    t0 = start()
    with ThreadPoolExecutor(max_workers=LIMIT) as ex:
        out = list(ex.map(block, range(n)))
    dt, cpu = stop(t0)
    check_sum(out, n, "ThreadPoolExecutor.map")
    return {"seconds": dt, "cpu": cpu}


async def executor_gather(n: int, params: dict[str, Any]) -> Result:
    loop = asyncio.get_running_loop()
    t0 = start()
    with ThreadPoolExecutor(max_workers=LIMIT) as ex:
        out = await asyncio.gather(*[loop.run_in_executor(ex, block, i) for i in range(n)])
    dt, cpu = stop(t0)
    check_sum(out, n, "run_in_executor + gather")
    return {"seconds": dt, "cpu": cpu}


async def fj_map(n: int, params: dict[str, Any]) -> Result:
    import forkjoin as fj

    t0 = start()
    out = await fj.map(block, range(n), limit=LIMIT)
    dt, cpu = stop(t0)
    check_sum(out, n, "fj.map")
    return {"seconds": dt, "cpu": cpu}


async def fj_gather(n: int, params: dict[str, Any]) -> Result:
    import forkjoin as fj

    t0 = start()
    results = await fj.gather({str(i): (block, i) for i in range(n)}, limit=LIMIT)
    dt, cpu = stop(t0)
    check_sum((o.value for o in results.values()), n, "fj.gather")
    return {"seconds": dt, "cpu": cpu}


def fj_run(n: int, params: dict[str, Any]) -> Result:
    import forkjoin as fj

    t0 = start()
    results = fj.run({str(i): (block, i) for i in range(n)}, limit=LIMIT)
    dt, cpu = stop(t0)
    check_sum((o.value for o in results.values()), n, "fj.run")
    return {"seconds": dt, "cpu": cpu}


async def anyio_threads(n: int, params: dict[str, Any]) -> Result:
    import anyio
    import anyio.to_thread

    out: list[int] = [0] * n
    limiter = anyio.CapacityLimiter(LIMIT)

    async def one(i: int) -> None:
        out[i] = await anyio.to_thread.run_sync(block, i, limiter=limiter)

    t0 = start()
    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    dt, cpu = stop(t0)
    check_sum(out, n, "anyio.to_thread")
    return {"seconds": dt, "cpu": cpu}


async def trio_threads(n: int, params: dict[str, Any]) -> Result:
    import trio

    out: list[int] = [0] * n
    limiter = trio.CapacityLimiter(LIMIT)

    async def one(i: int) -> None:
        out[i] = await trio.to_thread.run_sync(block, i, limiter=limiter)

    t0 = start()
    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)
    dt, cpu = stop(t0)
    check_sum(out, n, "trio.to_thread")
    return {"seconds": dt, "cpu": cpu}


WORKLOAD = Workload(
    id=6,
    title="blocking calls",
    description=f"n sync calls of `time.sleep({SLEEP})` under limit {LIMIT} "
    f"(ideal n/{LIMIT} × {SLEEP * 1000:g} ms)",
    contenders=(
        Contender("tpe.map", "ThreadPoolExecutor(50).map", "sync", tpe_map),
        Contender(
            "executor+gather",
            "asyncio.gather of run_in_executor(ThreadPoolExecutor(50))",
            "asyncio",
            executor_gather,
        ),
        Contender("fj.map", "fj.map(sync fn, limit=50)", "asyncio", fj_map, is_forkjoin=True),
        Contender("fj.gather", "fj.gather(limit=50)", "asyncio", fj_gather, is_forkjoin=True),
        Contender("fj.run", "fj.run(limit=50) from sync code", "sync", fj_run, is_forkjoin=True),
        Contender(
            "anyio.to_thread",
            "anyio.to_thread.run_sync + CapacityLimiter(50)",
            "asyncio",
            anyio_threads,
            needs=("anyio",),
            preload=("anyio.to_thread",),
        ),
        Contender(
            "trio.to_thread",
            "trio.to_thread.run_sync + CapacityLimiter(50)",
            "trio",
            trio_threads,
            needs=("trio",),
        ),
    ),
    sizes={"quick": (100,), "full": (200,)},
    baseline="tpe.map",
    unit="s",
    ideal=lambda n: -(-n // LIMIT) * SLEEP,
    repeats={"quick": 1, "full": 5},
    uvloop_sizes={"quick": (), "full": (200,)},
)
