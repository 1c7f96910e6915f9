"""Workload 8: a circuit breaker and an error budget that never trip.

n trivial tasks in one group under ``limit=100``; the group has a
``CircuitBreaker(failures=5, reset=30)`` and the run ``max_failures=10``. No task fails, so
neither ever acts: what is measured is what watching for failures costs on the success path.
The baseline is the same run (same group, same tasks, same limit) without either; the two
rows with only one of them show where a difference comes from.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._base import Contender, Result, Workload, check_sum, start, stop

LIMIT = 100
GROUP = "g"
BREAKER_FAILURES = 5
BREAKER_RESET = 30.0
MAX_FAILURES = 10


async def trivial(i: int) -> int:
    return i


async def _run(n: int, *, breaker: bool, max_failures: bool, what: str) -> Result:
    import forkjoin as fj

    group = (
        fj.Group(breaker=fj.CircuitBreaker(failures=BREAKER_FAILURES, reset=BREAKER_RESET))
        if breaker
        else fj.Group()
    )
    options: dict[str, Any] = {"limit": LIMIT, "groups": {GROUP: group}}
    if max_failures:
        options["max_failures"] = MAX_FAILURES
    t0 = start()
    # building the tasks is part of what a user pays, so it is timed (as in workload 5)
    results = await fj.gather(
        {str(i): fj.task(trivial, i, group=GROUP) for i in range(n)}, **options
    )
    dt, cpu = stop(t0)
    if len(results) != n or not results.all_ok:
        raise AssertionError(f"{what}: {len(results.failures())} of {n} tasks not ok")
    check_sum((o.value for o in results.values()), n, what)
    return {"seconds": dt, "cpu": cpu}


async def fj_baseline(n: int, params: dict[str, Any]) -> Result:
    return await _run(n, breaker=False, max_failures=False, what="fj.gather")


async def fj_breaker_budget(n: int, params: dict[str, Any]) -> Result:
    return await _run(n, breaker=True, max_failures=True, what="breaker + max_failures")


async def fj_breaker(n: int, params: dict[str, Any]) -> Result:
    return await _run(n, breaker=True, max_failures=False, what="breaker")


async def fj_max_failures(n: int, params: dict[str, Any]) -> Result:
    return await _run(n, breaker=False, max_failures=True, what="max_failures")


def _has_breaker() -> str | None:
    import forkjoin as fj

    if not hasattr(fj, "CircuitBreaker"):
        return "this forkjoin has no `CircuitBreaker`"
    if "breaker" not in getattr(fj.Group, "__dataclass_fields__", {}):
        return "this forkjoin's `Group` has no `breaker`"
    return None


def _has_max_failures() -> str | None:
    import forkjoin as fj

    try:
        # unknown options are refused before anything runs: one task is enough to ask
        asyncio.run(fj.gather({"0": (trivial, 0)}, max_failures=1))
    except TypeError as e:
        return f"this forkjoin's `gather` does not accept `max_failures` ({e})"
    return None


def _has_both() -> str | None:
    return _has_breaker() or _has_max_failures()


BREAKER_TEXT = (
    f'groups={{"{GROUP}": fj.Group(breaker=fj.CircuitBreaker({BREAKER_FAILURES}, '
    f"{BREAKER_RESET:g}))}}"
)

WORKLOAD = Workload(
    id=8,
    cpu_bound=True,
    title="breaker and error budget that never trip",
    description=f"n trivial async tasks (`async def f(i): return i`), each "
    f'`fj.task(f, i, group="{GROUP}")`, in `fj.gather(limit={LIMIT})`; no task fails, so '
    "neither the circuit breaker nor `max_failures` ever acts",
    contenders=(
        Contender(
            "fj.gather",
            f'fj.gather(limit={LIMIT}, groups={{"{GROUP}": fj.Group()}})',
            "asyncio",
            fj_baseline,
            is_forkjoin=True,
        ),
        Contender(
            "fj.breaker+max_failures",
            f"… with {BREAKER_TEXT}, max_failures={MAX_FAILURES}",
            "asyncio",
            fj_breaker_budget,
            is_forkjoin=True,
            available=_has_both,
        ),
        Contender(
            "fj.breaker",
            f"… with {BREAKER_TEXT} only",
            "asyncio",
            fj_breaker,
            is_forkjoin=True,
            available=_has_breaker,
        ),
        Contender(
            "fj.max_failures",
            f"… with max_failures={MAX_FAILURES} only",
            "asyncio",
            fj_max_failures,
            is_forkjoin=True,
            available=_has_max_failures,
        ),
    ),
    sizes={"quick": (2_000,), "full": (10_000,)},
    baseline="fj.gather",
    # a 10,000-task run is short (tens of ms of CPU): more repeats steady the median
    repeats={"quick": 1, "full": 5},
    # the bookkeeping measured here is the engine's, not the loop's: the stock loop only
    uvloop_sizes={"quick": (), "full": ()},
)
