"""Workload 2: limited — the trivial tasks of workload 1 under a concurrency limit of 100."""

from __future__ import annotations

from . import _peers
from ._base import Workload

WORKLOAD = Workload(
    id=2,
    cpu_bound=True,
    title="limited",
    description="n trivial async tasks under a concurrency limit of 100, all results kept",
    contenders=_peers.contenders(
        limited=True,
        # the floors need aiometer (amap, its faster entry point) and LangChain at 100k
        caps=dict.fromkeys(("aiometer.run_all", "anyio.tg+limiter", "trio+limiter"), 10_000),
    ),
    sizes={"quick": (2_000,), "full": (10_000, 100_000)},
    baseline="gather+sem",
    params={"limit": 100, "work": "trivial"},
    uvloop_sizes={"quick": (2_000,), "full": (10_000, 100_000)},
)
