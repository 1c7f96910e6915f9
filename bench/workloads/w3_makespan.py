"""Workload 3: makespan — 1,000 tasks of ``asyncio.sleep(0.01)`` under limit 50.

The ideal is n / limit * 10 ms = 0.200 s; every figure is measured / ideal.
"""

from __future__ import annotations

from . import _peers
from ._base import Workload

LIMIT = 50

WORKLOAD = Workload(
    id=3,
    title="makespan",
    description="n tasks of `asyncio.sleep(0.01)` under limit 50 (ideal n/50 × 10 ms)",
    contenders=_peers.contenders(limited=True, caps={}),
    sizes={"quick": (200,), "full": (1_000,)},
    baseline="ideal",
    unit="s",
    ideal=lambda n: -(-n // LIMIT) * _peers.SLEEP,
    repeats={"quick": 1, "full": 5},
    params={"limit": LIMIT, "work": "sleep"},
    uvloop_sizes={"quick": (200,), "full": (1_000,)},
)
