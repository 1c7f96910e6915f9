"""Workload 7: rate accuracy — n tasks under a rate of 100 starts per second.

Each task time-stamps its own start. From the stamps: the achieved rate (starts per second
between the first and the last start), the worst 1-second window (the most starts in any
half-open window [t, t + 1 s)) and the first-window burst (starts in the first second).
A limiter is accurate when no window exceeds the rate and the achieved rate is close to it.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from ._base import Contender, Result, Skip, Workload, start

RATE = 100
PER = 1.0


def window_stats(stamps: list[float], per: float = PER) -> dict[str, float]:
    """Achieved rate, worst window and first-window burst of sorted start times."""
    s = sorted(stamps)
    n = len(s)
    # the fullest half-open window [t, t + per) starts at some stamp
    worst = max(bisect.bisect_left(s, t + per, i) - i for i, t in enumerate(s)) if s else 0
    first = bisect.bisect_left(s, s[0] + per) if s else 0
    span = s[-1] - s[0] if n > 1 else 0.0
    return {
        "achieved": (n - 1) / span if span > 0 else float("inf"),
        "worst_window": worst,
        "first_window": first,
    }


def _stamper(stamps: list[float]) -> Callable[[int], Any]:
    async def task(i: int) -> int:
        stamps.append(time.perf_counter())
        return i

    return task


def _result(stamps: list[float], t0: float, dt: float, n: int, what: str) -> Result:
    if len(stamps) != n:
        raise AssertionError(f"{what}: {len(stamps)} of {n} tasks started")
    return {"seconds": dt, **window_stats(stamps), "first_start": min(stamps) - t0}


async def aiolimiter_plain(n: int, params: dict[str, Any]) -> Result:
    from aiolimiter import AsyncLimiter

    stamps: list[float] = []
    task = _stamper(stamps)
    limiter = AsyncLimiter(RATE, PER)

    async def one(i: int) -> int:
        async with limiter:
            return await task(i)

    t0 = start()
    await asyncio.gather(*[one(i) for i in range(n)])
    return _result(stamps, t0, time.perf_counter() - t0, n, "aiolimiter")


async def aiolimiter_single(n: int, params: dict[str, Any]) -> Result:
    from aiolimiter import AsyncLimiter

    stamps: list[float] = []
    task = _stamper(stamps)
    limiter = AsyncLimiter(1, PER / RATE)  # a bucket of one: no burst

    async def one(i: int) -> int:
        async with limiter:
            return await task(i)

    t0 = start()
    await asyncio.gather(*[one(i) for i in range(n)])
    return _result(stamps, t0, time.perf_counter() - t0, n, "aiolimiter(1, per/rate)")


async def aiometer_rate(n: int, params: dict[str, Any]) -> Result:
    import aiometer

    stamps: list[float] = []
    task = _stamper(stamps)
    t0 = start()
    await aiometer.run_all([partial(task, i) for i in range(n)], max_per_second=RATE)
    return _result(stamps, t0, time.perf_counter() - t0, n, "aiometer")


async def fj_rate(n: int, params: dict[str, Any]) -> Result:
    import forkjoin as fj

    stamps: list[float] = []
    task = _stamper(stamps)
    t0 = start()
    try:
        results = await fj.gather(
            {str(i): fj.task(task, i, group="api") for i in range(n)},
            rates={"api": fj.RateLimit(RATE, per=PER)},  # type: ignore[attr-defined]
        )
    except TypeError as e:  # the resilience policies' keyword is not there (yet)
        raise Skip(f"fj.gather(rates=...) is not accepted: {e}") from e
    dt = time.perf_counter() - t0
    if not results.all_ok:
        raise AssertionError(f"fj.gather: {len(results.failures())} tasks not ok")
    return _result(stamps, t0, dt, n, "fj.gather(rates=)")


def _rate_limit_present() -> str | None:
    import forkjoin

    if not hasattr(forkjoin, "RateLimit"):
        return (
            "forkjoin has no `RateLimit` yet (it comes with the resilience policies); "
            "rate accuracy is skipped until it lands"
        )
    return None


WORKLOAD = Workload(
    id=7,
    title="rate accuracy",
    description=f"n tasks under a rate limit of {RATE} per {PER:g} s; each task stamps its start",
    contenders=(
        Contender(
            "fj.RateLimit",
            f"fj.gather(rates={{g: fj.RateLimit({RATE}, per=1)}})",
            "asyncio",
            fj_rate,
            is_forkjoin=True,
            available=_rate_limit_present,
            uvloop=False,
        ),
        Contender(
            "aiolimiter",
            f"aiolimiter AsyncLimiter({RATE}, 1) alone",
            "asyncio",
            aiolimiter_plain,
            needs=("aiolimiter",),
            uvloop=False,
        ),
        Contender(
            "aiolimiter/1",
            f"aiolimiter AsyncLimiter(1, 1/{RATE}) (bucket of one)",
            "asyncio",
            aiolimiter_single,
            needs=("aiolimiter",),
            uvloop=False,
        ),
        Contender(
            "aiometer",
            f"aiometer.run_all(max_per_second={RATE})",
            "asyncio",
            aiometer_rate,
            needs=("aiometer",),
            uvloop=False,
        ),
    ),
    sizes={"quick": (150,), "full": (500,)},
    baseline="ideal",
    unit="rate",
    ideal=lambda n: (n - 1) / RATE,
    repeats={"quick": 1, "full": 3},
    params={"rate": RATE},
    uvloop_sizes={"quick": (), "full": ()},
    note="A timer-bound workload: uvloop changes nothing of interest, so it runs on the "
    "stock loop. The worst and first windows are the worst seen over all repeats.",
)
