"""Workload 4: lazy memory — a generator of n items, limit 100, results consumed and dropped.

Peak RSS must not grow with n: compare the sizes. Nothing here may hold all n items,
results or Tasks at once (asyncio.gather + Semaphore would, so it is not a contender).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from ._base import Contender, Result, Workload, start, stop

LIMIT = 100


async def trivial(i: int) -> int:
    return i


def items(n: int) -> Iterator[int]:
    return (i for i in range(n))


def _check(count: int, total: int, n: int, what: str) -> None:
    if count != n or total != n * (n - 1) // 2:
        raise AssertionError(f"{what}: consumed {count} results for {n} items")


async def fj_imap(n: int, params: dict[str, Any]) -> Result:
    import forkjoin as fj

    count = total = 0
    t0 = start()
    async for o in fj.imap(trivial, items(n), limit=LIMIT):
        count += 1
        total += o.value
    dt, cpu = stop(t0)
    _check(count, total, n, "fj.imap")
    return {"seconds": dt, "cpu": cpu}


async def fj_imap_journal(n: int, params: dict[str, Any]) -> Result:
    import shutil
    import tempfile
    from pathlib import Path

    import forkjoin as fj

    d = tempfile.mkdtemp(prefix="fj-bench-")
    try:
        journal = fj.Journal(Path(d) / "run.db")
        count = total = 0
        t0 = start()
        async for o in fj.imap(trivial, items(n), limit=LIMIT, journal=journal):
            count += 1
            total += o.value
        dt, cpu = stop(t0)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    _check(count, total, n, "fj.imap+journal")
    return {"seconds": dt, "cpu": cpu}


async def fj_map_reduce(n: int, params: dict[str, Any]) -> Result:
    import operator

    import forkjoin as fj

    t0 = start()
    total = await fj.map_reduce(trivial, items(n), operator.add, 0, limit=LIMIT)
    dt, cpu = stop(t0)
    _check(n, total, n, "fj.map_reduce")
    return {"seconds": dt, "cpu": cpu}


async def worker_pool(n: int, params: dict[str, Any]) -> Result:
    acc = [0, 0]
    t0 = start()
    it = items(n)

    async def worker() -> None:
        for i in it:
            v = await trivial(i)
            acc[0] += 1
            acc[1] += v

    await asyncio.gather(*[worker() for _ in range(LIMIT)])
    dt, cpu = stop(t0)
    _check(acc[0], acc[1], n, "worker pool")
    return {"seconds": dt, "cpu": cpu}


async def lazy_tasks(n: int, params: dict[str, Any]) -> Result:
    loop = asyncio.get_running_loop()
    acc = [0, 0]
    t0 = start()
    sem = asyncio.Semaphore(LIMIT)
    live: set[asyncio.Task[None]] = set()

    async def one(i: int) -> None:
        try:
            v = await trivial(i)
            acc[0] += 1
            acc[1] += v
        finally:
            sem.release()

    for i in items(n):
        await sem.acquire()
        t = loop.create_task(one(i))
        live.add(t)
        t.add_done_callback(live.discard)
    while live:
        await asyncio.wait(live)
    dt, cpu = stop(t0)
    _check(acc[0], acc[1], n, "lazy tasks")
    return {"seconds": dt, "cpu": cpu}


async def aiometer_run_on_each(n: int, params: dict[str, Any]) -> Result:
    import aiometer

    acc = [0, 0]

    async def one(i: int) -> None:
        v = await trivial(i)
        acc[0] += 1
        acc[1] += v

    t0 = start()
    # run_on_each takes any iterable (amap/run_all need a sized sequence)
    await aiometer.run_on_each(one, items(n), max_at_once=LIMIT)
    dt, cpu = stop(t0)
    _check(acc[0], acc[1], n, "aiometer.run_on_each")
    return {"seconds": dt, "cpu": cpu}


async def anyio_lazy(n: int, params: dict[str, Any]) -> Result:
    import anyio

    acc = [0, 0]
    limiter = anyio.CapacityLimiter(LIMIT)

    async def one(i: int) -> None:
        try:
            v = await trivial(i)
            acc[0] += 1
            acc[1] += v
        finally:
            limiter.release_on_behalf_of(i)

    t0 = start()
    async with anyio.create_task_group() as tg:
        for i in items(n):
            # a task only when a slot is free: memory stays flat (the token is taken here,
            # on the item's behalf, and given back by the task that ran it)
            await limiter.acquire_on_behalf_of(i)
            tg.start_soon(one, i)
    dt, cpu = stop(t0)
    _check(acc[0], acc[1], n, "anyio")
    return {"seconds": dt, "cpu": cpu}


async def trio_lazy(n: int, params: dict[str, Any]) -> Result:
    import trio

    acc = [0, 0]
    limiter = trio.CapacityLimiter(LIMIT)

    async def one(i: int) -> None:
        try:
            v = await trivial(i)
            acc[0] += 1
            acc[1] += v
        finally:
            limiter.release_on_behalf_of(i)

    t0 = start()
    async with trio.open_nursery() as nursery:
        for i in items(n):
            await limiter.acquire_on_behalf_of(i)
            nursery.start_soon(one, i)
    dt, cpu = stop(t0)
    _check(acc[0], acc[1], n, "trio")
    return {"seconds": dt, "cpu": cpu}


HEAVY_MAX = 100_000

WORKLOAD = Workload(
    id=4,
    cpu_bound=True,
    title="lazy memory",
    description="a generator of n items, limit 100, results consumed and dropped; "
    "peak RSS must stay flat in n",
    contenders=(
        Contender(
            "pool",
            "hand-written pool of 100 workers over the generator (floor)",
            "asyncio",
            worker_pool,
        ),
        Contender(
            "fj.imap", "fj.imap (outcomes consumed, dropped)", "asyncio", fj_imap, is_forkjoin=True
        ),
        Contender(
            "fj.imap+journal",
            "fj.imap with an SQLite journal (every Outcome written)",
            "asyncio",
            fj_imap_journal,
            is_forkjoin=True,
        ),
        Contender(
            "fj.map_reduce",
            "fj.map_reduce(operator.add)",
            "asyncio",
            fj_map_reduce,
            is_forkjoin=True,
        ),
        Contender(
            "lazy-tasks",
            "Task per item, made when a Semaphore slot frees",
            "asyncio",
            lazy_tasks,
            max_n=HEAVY_MAX,
        ),
        Contender(
            "aiometer.run_on_each",
            "aiometer.run_on_each(max_at_once=)",
            "asyncio",
            aiometer_run_on_each,
            needs=("aiometer",),
            max_n=HEAVY_MAX,
        ),
        Contender(
            "anyio.tg+limiter",
            "anyio task group, CapacityLimiter acquired before start_soon",
            "asyncio",
            anyio_lazy,
            needs=("anyio",),
            max_n=HEAVY_MAX,
        ),
        Contender(
            "trio+limiter",
            "trio nursery, CapacityLimiter acquired before start_soon",
            "trio",
            trio_lazy,
            needs=("trio",),
            max_n=HEAVY_MAX,
        ),
    ),
    sizes={"quick": (2_000, 10_000), "full": (100_000, 1_000_000)},
    baseline="pool",
    uvloop_sizes={"quick": (), "full": ()},
    note="aiometer.amap/run_all need a sized sequence (they call len()), so aiometer is "
    "measured with run_on_each, which takes a generator. uvloop changes nothing about "
    "memory, so this workload runs on the stock loop only.",
)
