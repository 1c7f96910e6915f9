"""Guarantee: a deadline, a timeout or a stop wins over a task that swallows its
cancellation. After the stop plus ABANDON_GRACE the run returns; the task is recorded once,
as abandoned (the report says so), its slot is freed, and whatever it does later is dropped.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import forkjoin as fj
from forkjoin._engine import ABANDON_GRACE


async def swallow_once(seconds: float) -> str:
    """Catches the first cancellation and carries on for ``seconds`` more."""
    try:
        await asyncio.sleep(100)
    except asyncio.CancelledError:
        await asyncio.sleep(seconds)
    return "finished anyway"


class Stubborn:
    """A task that keeps catching every cancellation until released."""

    def __init__(self) -> None:
        self.released = asyncio.Event()
        self.cancellations = 0

    async def __call__(self) -> str:
        while not self.released.is_set():
            try:
                await self.released.wait()
            except asyncio.CancelledError:
                self.cancellations += 1
        return "released"


def test_the_deadline_wins_over_a_task_that_catches_it_once(vrun: Any) -> None:
    async def main() -> tuple[fj.Results, float, fj.Results]:
        loop = asyncio.get_running_loop()
        results = await fj.gather(
            {"swallows": (swallow_once, 2.0), "quick": (asyncio.sleep, 0.5, "q")}, deadline=1
        )
        returned = loop.time()
        await asyncio.sleep(3)  # the swallowing call ends at 3 s: nothing changes then
        return results, returned, results

    results, returned, later = vrun(main())
    assert returned == pytest.approx(1 + ABANDON_GRACE)
    o = results["swallows"]
    assert o.status is fj.Status.TIMED_OUT
    assert o.reason == "abandoned"
    assert o.ended == pytest.approx(1 + ABANDON_GRACE)
    assert results["quick"].ok
    assert len(later) == 2
    assert later["swallows"] is o
    assert results.report.reasons == {"abandoned": 1}
    assert "abandoned 1" in str(results.report)


def test_a_task_that_never_lets_go_cannot_hang_the_run(vrun: Any) -> None:
    stubborn = Stubborn()

    async def main() -> tuple[fj.Results, float]:
        loop = asyncio.get_running_loop()
        results = await fj.gather({"stubborn": stubborn, "ok": (asyncio.sleep, 1, 1)}, deadline=5)
        returned = loop.time()
        stubborn.released.set()  # let it end, or the loop could not close
        await asyncio.sleep(0)
        return results, returned

    results, returned = vrun(main())
    assert returned == pytest.approx(5 + ABANDON_GRACE)
    assert stubborn.cancellations >= 1
    assert results["stubborn"].reason == "abandoned"
    assert results["ok"].ok


def test_a_timeout_wins_and_frees_the_slot_for_the_next_task(vrun: Any) -> None:
    stubborn = Stubborn()
    starts: dict[str, float] = {}

    async def timed(name: str) -> str:
        starts[name] = asyncio.get_running_loop().time()
        await asyncio.sleep(0.5)
        return name

    async def main() -> fj.Results:
        async with fj.Fan(limit=1, timeout=2) as fan:
            fan.spawn("stubborn", stubborn)
            fan.spawn("next", timed, "next")
        stubborn.released.set()
        await asyncio.sleep(0)
        return fan.results

    results = vrun(main())
    o = results["stubborn"]
    assert o.status is fj.Status.TIMED_OUT
    assert o.reason == "abandoned"
    assert isinstance(o.error, fj.TaskTimeout)
    # the next task got the slot when the stuck one was abandoned, and its own duration
    # is its call's, not the wait
    assert starts["next"] == pytest.approx(2 + ABANDON_GRACE)
    assert results["next"].ok
    assert results["next"].duration == pytest.approx(0.5)


def test_fail_fast_does_not_wait_forever_for_a_stubborn_sibling(vrun: Any) -> None:
    stubborn = Stubborn()

    async def boom() -> None:
        await asyncio.sleep(1)
        raise ValueError("boom")

    async def main() -> fj.FanError:
        with pytest.raises(fj.FanError) as info:
            await fj.gather({"stubborn": stubborn, "boom": boom}, on_error="fail_fast")
        stubborn.released.set()
        await asyncio.sleep(0)
        return info.value

    results = vrun(main()).results
    assert results["stubborn"].status is fj.Status.CANCELLED
    assert results["stubborn"].reason == "abandoned"


@pytest.mark.parametrize("policied", [False, True], ids=["plain", "with-a-timeout"])
def test_a_map_item_that_ignores_the_deadline_is_abandoned(vrun: Any, policied: bool) -> None:
    stubborn = Stubborn()

    async def item(i: int) -> int:
        if i == 3:
            await stubborn()
        await asyncio.sleep(0.1)
        return i

    async def main() -> tuple[fj.FanError, float]:
        loop = asyncio.get_running_loop()
        options: dict[str, Any] = {"timeout": 50} if policied else {}
        with pytest.raises(fj.FanError) as info:
            await fj.map(item, range(6), limit=6, deadline=2, **options)
        returned = loop.time()
        stubborn.released.set()
        await asyncio.sleep(0)
        return info.value, returned

    err, returned = vrun(main())
    assert returned == pytest.approx(2 + ABANDON_GRACE)
    assert list(err.results) == ["3"]
    assert err.results["3"].reason == "abandoned"
    assert err.results["3"].status is fj.Status.TIMED_OUT
