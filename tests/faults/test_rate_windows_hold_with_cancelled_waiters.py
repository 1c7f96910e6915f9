"""Guarantee: a rate limit's windows hold with weighted and cancelled waiters: a call
cancelled while it waits for its turn gives the turn back (the calls after it start that
much earlier), and no window ever sees more than the rate."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import forkjoin as fj
from forkjoin._policies._rate import RateLimitState
from forkjoin.testing import run


class _Run:
    """The part of a run a rate limit's state uses (its clock)."""

    name = "r"
    t0 = 0.0

    def clock(self) -> float:
        return asyncio.get_running_loop().time()

    def listens(self, hook: str) -> bool:
        return False


class _Call:
    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight


async def _take_turn(state: RateLimitState, name: str, weight: float, starts: dict[str, float]):
    wait = state.before(_Call(weight))
    if wait is not None:
        await wait
    starts[name] = asyncio.get_running_loop().time()


def test_cancelled_waiters_give_their_turns_back() -> None:
    async def main() -> dict[str, float]:
        state = RateLimitState(fj.RateLimit(1), None, _Run())  # type: ignore[arg-type]
        starts: dict[str, float] = {}
        tasks = {
            f"w{i}": asyncio.ensure_future(_take_turn(state, f"w{i}", 1, starts)) for i in range(5)
        }
        await asyncio.sleep(0.5)
        tasks["w1"].cancel()
        tasks["w2"].cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        return starts

    starts = run(main())
    # w0 at once; w3 and w4 take the turns w1 and w2 gave back (not 3 s and 4 s)
    assert starts == {"w0": pytest.approx(0.0), "w3": pytest.approx(1.0), "w4": pytest.approx(2.0)}


def test_a_losing_hedge_waiting_for_the_rate_gives_its_turn_back(vrun: Any) -> None:
    starts: dict[str, list[float]] = {}
    calls = 0

    async def lookup(name: str) -> str:
        nonlocal calls
        calls += 1
        starts.setdefault(name, []).append(asyncio.get_running_loop().time())
        await asyncio.sleep(3 if name == "hedged" and calls == 1 else 0.1)
        return name

    async def main() -> fj.Results:
        async with fj.Fan(rate=fj.RateLimit(1)) as fan:
            fan.spawn("hedged", fj.task(lookup, "hedged", idempotent=True,
                                        hedge=fj.Hedge(after=0.5, max_extra=2)))  # fmt: skip
            await asyncio.sleep(2.6)
            fan.spawn("next", lookup, "next")
        return fan.results

    results = vrun(main())
    assert results["hedged"].ok
    assert results["next"].ok
    # the hedge's duplicates waited for turns at 1 s and 2 s; the first won at ~1.1 s, so
    # the second duplicate (cancelled while it waited) left its 2 s turn to "next"
    assert starts["next"] == [pytest.approx(2.6)]


@settings(max_examples=50, deadline=None)
@given(
    rate=st.integers(1, 5),
    weights=st.lists(st.sampled_from([1, 1, 1, 2]), min_size=2, max_size=15),
    cancel=st.sets(st.integers(0, 14), max_size=6),
    cancel_at=st.floats(0.01, 3.0),
)
def test_no_window_is_over_the_rate_whoever_is_cancelled(
    rate: int, weights: list[int], cancel: set[int], cancel_at: float
) -> None:
    async def main() -> tuple[dict[str, float], set[str]]:
        state = RateLimitState(fj.RateLimit(rate, burst=1), None, _Run())  # type: ignore[arg-type]
        starts: dict[str, float] = {}
        tasks = {
            f"w{i}": asyncio.ensure_future(_take_turn(state, f"w{i}", w, starts))
            for i, w in enumerate(weights)
        }
        await asyncio.sleep(cancel_at)
        cancelled = {f"w{i}" for i in cancel if f"w{i}" in tasks and f"w{i}" not in starts}
        for name in cancelled:
            tasks[name].cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        return starts, cancelled

    starts, cancelled = run(main())
    assert set(starts) == {f"w{i}" for i in range(len(weights))} - cancelled
    events = sorted((t, weights[int(n[1:])]) for n, t in starts.items())
    for t, _ in events:  # every window of 1 s starting at a start
        inside = sum(w for s, w in events if t <= s < t + 1 - 1e-9)
        assert inside <= rate + 1  # the rate plus its burst
