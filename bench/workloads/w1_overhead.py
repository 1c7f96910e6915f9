"""Workload 1: overhead — n trivial tasks (``async def f(i): return i``), all results kept."""

from __future__ import annotations

from . import _peers
from ._base import Workload

WORKLOAD = Workload(
    id=1,
    cpu_bound=True,
    title="overhead",
    description="n trivial async tasks (`async def f(i): return i`), no limit, all results kept",
    contenders=_peers.contenders(
        limited=False,
        caps={
            # 1M: raw gather, fj.gather and the inline floor; the slow peers (~100+ µs per
            # task here) at 10k only: no floor needs them and they would take minutes
            **dict.fromkeys(("taskgroup", "fj.map", "trio"), 100_000),
            **dict.fromkeys(
                (
                    "aiometer.run_all",
                    "aiometer.amap",
                    "anyio.tg",
                    "anyio.gather",
                    "anyio.amap",
                    "langchain",
                ),
                10_000,
            ),
        },
    ),
    sizes={"quick": (2_000,), "full": (10_000, 100_000, 1_000_000)},
    baseline="asyncio.gather",
    params={"limit": None, "work": "trivial"},
    uvloop_sizes={"quick": (2_000,), "full": (100_000,)},
)
