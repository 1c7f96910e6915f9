"""100,000 tasks at concurrency 50 stay in bounded memory: ``fj.imap`` holds O(limit)
whatever the number of items, ``fj.map`` O(n) for the values it returns and ``fj.gather``
O(n) with a small constant per task (its Outcomes and report). Peaks are measured with
tracemalloc; each bound has several times the headroom of the measured figure (imap
about 150 KiB, map about 50 bytes and gather about 700 bytes per task)."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import forkjoin as fj

# tracemalloc slows every allocation several times: 100,000 tasks take tens of seconds
pytestmark = pytest.mark.timeout(600)

N = 100_000
LIMIT = 50
KIB = 1024


async def echo(i: int) -> int:
    return i


def peak(run: Callable[[], Awaitable[Any]]) -> tuple[Any, int]:
    """What ``run`` returns, and the most memory it held at once beyond what it started with."""

    async def measured() -> tuple[Any, int]:
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            result = await run()
            return result, tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()

    return asyncio.run(measured())


def test_imap_holds_o_limit_whatever_the_number_of_items() -> None:
    async def consume() -> int:
        seen = 0
        async for o in fj.imap(echo, range(N), limit=LIMIT):
            seen += o.ok
        return seen

    seen, held = peak(consume)
    assert seen == N
    assert held < 2048 * KIB, f"imap held {held // KIB} KiB for {N} items at limit {LIMIT}"


def test_map_holds_its_values_and_little_else() -> None:
    async def run() -> int:
        return len(await fj.map(echo, range(N), limit=LIMIT))

    count, held = peak(run)
    assert count == N
    assert held < N * 200 + 1024 * KIB, f"map held {held / N:.0f} bytes per item"


def test_gather_holds_a_small_constant_per_task() -> None:
    async def run() -> int:
        results = await fj.gather({f"t{i}": fj.task(echo, i) for i in range(N)}, limit=LIMIT)
        assert results.report.tasks == N
        return len(results)

    count, held = peak(run)
    assert count == N
    assert held < N * 2500, f"gather held {held / N:.0f} bytes per task"
