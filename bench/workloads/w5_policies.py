"""Workload 5: policies on — trivial tasks with a per-task timeout, a retry policy (never
triggered), two groups with limits and an observer attached.

The floor compares forkjoin here with forkjoin in workload 1 (policies must cost little:
≤ 1.3× its CPU time there); the table's baseline is the same set of policies written by hand.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._base import Contender, Result, Workload, check_sum, start, stop

TIMEOUT = 10.0
GROUPS = ("a", "b")
GROUP_LIMIT = 100
ATTEMPTS = 3


async def trivial(i: int) -> int:
    return i


class Counter:
    """An observer that counts what it hears (an observer that does nothing would be
    optimised away by nobody, but it should at least touch the event)."""

    def __init__(self) -> None:
        self.events = 0

    def on_event(self, event: Any) -> None:
        self.events += 1


async def hand_written(n: int, params: dict[str, Any]) -> Result:
    """The careful version: the first call bare, tenacity only once it failed."""
    import tenacity

    sems = {g: asyncio.Semaphore(GROUP_LIMIT) for g in GROUPS}
    obs = Counter()

    async def one(i: int) -> int:
        async with sems[GROUPS[i % 2]]:
            obs.on_event(("started", i))
            try:
                async with asyncio.timeout(TIMEOUT):
                    v = await trivial(i)
            except Exception:
                async for attempt in tenacity.AsyncRetrying(
                    stop=tenacity.stop_after_attempt(ATTEMPTS - 1), reraise=True
                ):
                    with attempt:
                        async with asyncio.timeout(TIMEOUT):
                            v = await trivial(i)
            obs.on_event(("finished", i))
            return v

    t0 = start()
    out = await asyncio.gather(*[one(i) for i in range(n)])
    dt, cpu = stop(t0)
    check_sum(out, n, "hand-written")
    if obs.events != 2 * n:
        raise AssertionError("observer missed events")
    return {"seconds": dt, "cpu": cpu}


async def hand_written_tenacity(n: int, params: dict[str, Any]) -> Result:
    """The common version: every call inside a tenacity retry loop."""
    import tenacity

    sems = {g: asyncio.Semaphore(GROUP_LIMIT) for g in GROUPS}
    obs = Counter()

    async def one(i: int) -> int:
        async with sems[GROUPS[i % 2]]:
            obs.on_event(("started", i))
            async for attempt in tenacity.AsyncRetrying(
                stop=tenacity.stop_after_attempt(ATTEMPTS), reraise=True
            ):
                with attempt:
                    async with asyncio.timeout(TIMEOUT):
                        v = await trivial(i)
            obs.on_event(("finished", i))
            return v

    t0 = start()
    out = await asyncio.gather(*[one(i) for i in range(n)])
    dt, cpu = stop(t0)
    check_sum(out, n, "hand-written + tenacity")
    return {"seconds": dt, "cpu": cpu}


def _check_fj(results: Any, obs: Counter, n: int, what: str) -> None:
    if not results.all_ok:
        raise AssertionError(f"{what}: {len(results.failures())} tasks not ok")
    check_sum((o.value for o in results.values()), n, what)
    if obs.events < 2 * n:
        raise AssertionError(f"{what}: the observer heard only {obs.events} events")


async def fj_run_defaults(n: int, params: dict[str, Any]) -> Result:
    import forkjoin as fj

    obs = Counter()
    t0 = start()
    results = await fj.gather(
        {str(i): fj.task(trivial, i, group=GROUPS[i % 2]) for i in range(n)},
        timeout=TIMEOUT,
        retry=fj.Retry(attempts=ATTEMPTS),
        limits=dict.fromkeys(GROUPS, GROUP_LIMIT),
        observers=[obs],
    )
    dt, cpu = stop(t0)
    _check_fj(results, obs, n, "fj.gather")
    return {"seconds": dt, "cpu": cpu, "events": obs.events}


async def fj_per_task(n: int, params: dict[str, Any]) -> Result:
    import forkjoin as fj

    obs = Counter()
    retry = fj.Retry(attempts=ATTEMPTS)
    t0 = start()
    results = await fj.gather(
        {
            str(i): fj.task(trivial, i, timeout=TIMEOUT, retry=retry, group=GROUPS[i % 2])
            for i in range(n)
        },
        limits=dict.fromkeys(GROUPS, GROUP_LIMIT),
        observers=[obs],
    )
    dt, cpu = stop(t0)
    _check_fj(results, obs, n, "fj.gather (per-task options)")
    return {"seconds": dt, "cpu": cpu, "events": obs.events}


WORKLOAD = Workload(
    id=5,
    cpu_bound=True,
    title="policies on",
    description=f"n trivial tasks, each with a {TIMEOUT:g} s timeout and Retry(attempts="
    f"{ATTEMPTS}) (never triggered), split over two groups limited to {GROUP_LIMIT} each, "
    "an observer attached",
    contenders=(
        Contender(
            "hand",
            "by hand: gather + 2 Semaphores + asyncio.timeout, tenacity only "
            "after a failure, callback",
            "asyncio",
            hand_written,
            preload=("tenacity",),
        ),
        Contender(
            "hand+tenacity",
            "by hand, every call in tenacity.AsyncRetrying",
            "asyncio",
            hand_written_tenacity,
            preload=("tenacity",),
            uvloop=False,  # ~25 s a run; tenacity's cost does not depend on the loop
        ),
        Contender(
            "fj.gather",
            "fj.gather(timeout=, retry=, limits=, observers=)",
            "asyncio",
            fj_run_defaults,
            is_forkjoin=True,
        ),
        Contender(
            "fj.gather/task",
            "fj.gather of fj.task(timeout=, retry=, group=)",
            "asyncio",
            fj_per_task,
            is_forkjoin=True,
        ),
    ),
    sizes={"quick": (2_000,), "full": (100_000,)},
    baseline="hand",
    uvloop_sizes={"quick": (2_000,), "full": (100_000,)},
)
