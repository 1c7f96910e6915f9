"""Workload 15: a Dask cluster — n trivial calls on a LocalCluster of two worker processes:
``fj.gather(backend=DaskBackend(address))`` against raw ``client.submit`` +
``as_completed`` over the same function, the cluster started (and closed) outside the timed
region and reported beside it; ``fj.map_reduce`` over 10k and 100k items for the caller's
peak RSS; and the embedded cluster, its start-up and shutdown included.
"""

from __future__ import annotations

import logging
import resource
import time
from typing import Any

from ._base import Contender, Result, Workload, check_sum, start, stop

WORKERS = 2


def inc(i: int) -> int:
    return i


async def _cluster() -> tuple[Any, float]:
    import dask
    import distributed

    began = time.perf_counter()
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = await distributed.LocalCluster(
            n_workers=WORKERS, threads_per_worker=1, processes=True, asynchronous=True,
            host="127.0.0.1", dashboard_address=":0", silence_logs=logging.CRITICAL,
        )  # fmt: skip
    return cluster, time.perf_counter() - began


async def _closed(cluster: Any) -> float:
    began = time.perf_counter()
    await cluster.close()
    return time.perf_counter() - began


async def raw_submit(n: int, params: dict[str, Any]) -> Result:
    import distributed

    cluster, started = await _cluster()
    try:
        t0 = start()
        async with distributed.Client(cluster, asynchronous=True) as client:
            futures = [client.submit(inc, i, pure=False) for i in range(n)]
            out = [await f async for f in distributed.as_completed(futures)]
            del futures
        dt, cpu = stop(t0)
    finally:
        closed = await _closed(cluster)
    check_sum(out, n, "client.submit + as_completed")
    return {"seconds": dt, "cpu": cpu, "cluster_start": started, "cluster_close": closed}


async def fj_dask(n: int, params: dict[str, Any]) -> Result:
    import forkjoin as fj

    cluster, started = await _cluster()
    try:
        t0 = start()
        backend = fj.DaskBackend(address=cluster.scheduler_address)
        results = await fj.gather({str(i): (inc, i) for i in range(n)}, backend=backend)
        dt, cpu = stop(t0)
    finally:
        closed = await _closed(cluster)
    check_sum((o.value for o in results.values()), n, "fj.gather(backend=DaskBackend)")
    return {"seconds": dt, "cpu": cpu, "cluster_start": started, "cluster_close": closed}


async def fj_map_reduce(n: int, params: dict[str, Any]) -> Result:
    import forkjoin as fj

    cluster, started = await _cluster()
    try:
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = start()
        backend = fj.DaskBackend(address=cluster.scheduler_address)
        total = await fj.map_reduce(inc, range(n), lambda a, b: a + b, 0, backend=backend)
        dt, cpu = stop(t0)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    finally:
        closed = await _closed(cluster)
    if total != n * (n - 1) // 2:
        raise AssertionError("fj.map_reduce(backend=DaskBackend): wrong total")
    return {"seconds": dt, "cpu": cpu, "cluster_start": started, "cluster_close": closed,
            "caller_rss_kb": rss, "caller_rss_before_kb": rss0}  # fmt: skip


async def fj_embedded(n: int, params: dict[str, Any]) -> Result:
    import forkjoin as fj

    t0 = start()
    results = await fj.gather(
        {str(i): (inc, i) for i in range(n)}, backend=fj.DaskBackend(workers=WORKERS)
    )
    dt, cpu = stop(t0)
    check_sum((o.value for o in results.values()), n, "fj.gather(backend=DaskBackend())")
    info = results.report.options["backends"]["dask"]
    return {"seconds": dt, "cpu": cpu, "cluster_start": info["started_in"]}


WORKLOAD = Workload(
    id=15,
    title="a Dask cluster",
    description=f"n trivial calls on a LocalCluster of {WORKERS} worker processes (one thread "
    "each), started and closed outside the timed region unless embedded",
    contenders=(
        Contender(
            "raw",
            "client.submit + as_completed",
            "asyncio",
            raw_submit,
            needs=("distributed",),
            max_n=1_000,
            uvloop=False,
        ),
        Contender(
            "fj.dask",
            "fj.gather(backend=DaskBackend(address))",
            "asyncio",
            fj_dask,
            needs=("distributed",),
            max_n=1_000,
            uvloop=False,
            is_forkjoin=True,
        ),
        Contender(
            "fj.map_reduce",
            "fj.map_reduce(backend=DaskBackend(address))",
            "asyncio",
            fj_map_reduce,
            needs=("distributed",),
            uvloop=False,
            is_forkjoin=True,
        ),
        Contender(
            "fj.embedded",
            "fj.gather(backend=DaskBackend()), its cluster included",
            "asyncio",
            fj_embedded,
            needs=("distributed",),
            max_n=1_000,
            uvloop=False,
            is_forkjoin=True,
        ),
    ),
    sizes={"quick": (100,), "full": (1_000, 10_000, 100_000)},
    baseline="raw",
    repeats={"quick": 1, "full": 3},
    note="µs per task on wall time (the calls run in the workers). The cluster's start and "
    "shutdown are in the table below; `fj.map_reduce`'s RSS is the caller's own.",
)
