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
    # epoll (the stock selector) rounds every timeout up to the next millisecond, so each
    # round of 50 sleeps lasts 10 ms + the loop's CPU time for the round, rounded up;
    # select() does not round: these rows show what the same code does without that
    select_loop=("pool", "fj.map", "fj.gather"),
    note=(
        "Loop `select`: the stock asyncio loop with `selectors.SelectSelector`, whose "
        "timeouts have microsecond resolution; epoll's (the default) are rounded up to the "
        "next millisecond, so every round of 50 sleeps waits out the rest of a millisecond."
    ),
)
