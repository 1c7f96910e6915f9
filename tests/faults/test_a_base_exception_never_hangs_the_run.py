"""Guarantee: a task raising anything, a BaseException included, cannot hang the run.

The task ends FAILED with its error. KeyboardInterrupt and SystemExit are re-raised by the
run once every other task has been cancelled and recorded (fj.run turns a
KeyboardInterrupt into fj.Interrupted, which carries the results); any other
BaseException (GeneratorExit, one of your own) stays in the task's Outcome and the run
goes on.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import forkjoin as fj

from ..conftest import no_orphans


class Custom(BaseException):
    pass


def _raiser(kind: type[BaseException], sync: bool) -> Any:
    if sync:

        def boom() -> None:
            time.sleep(0.01)
            raise kind("from a thread")

        return boom

    async def aboom() -> None:
        await asyncio.sleep(0.01)
        raise kind("from the loop")

    return aboom


KINDS = [KeyboardInterrupt, SystemExit, GeneratorExit, Custom]


class Recorded:
    """Every Outcome the run recorded (it is told before the run re-raises)."""

    def __init__(self) -> None:
        self.outcomes: dict[str, fj.Outcome] = {}

    def on_task_finished(self, event: fj.TaskFinished) -> None:
        self.outcomes[event.name] = event.outcome


@pytest.mark.parametrize("limit", [None, 1], ids=["unlimited", "limit-1"])
@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
def test_gather(kind: type[BaseException], sync: bool, limit: int | None) -> None:
    recorded = Recorded()

    async def main() -> fj.Results:
        tasks = {"boom": _raiser(kind, sync), "slow": (asyncio.sleep, 30, "s")}
        results = await fj.gather(tasks, limit=limit, deadline=1, observers=[recorded])
        no_orphans()
        return results

    if kind in (KeyboardInterrupt, SystemExit):
        # asyncio lets these two through every Task to the caller of asyncio.run
        with pytest.raises(kind):
            asyncio.run(main())
        outcomes = recorded.outcomes
        assert set(outcomes) == {"boom", "slow"}  # every task recorded before the re-raise
        assert outcomes["slow"].reason == "aborted"
    else:
        outcomes = dict(asyncio.run(main()))
        assert outcomes["slow"].reason == "deadline"  # the run went on to its deadline
    assert outcomes["boom"].status is fj.Status.FAILED
    assert isinstance(outcomes["boom"].error, kind)


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
def test_run_re_raises_after_every_other_task_is_recorded(sync: bool) -> None:
    with pytest.raises(fj.Interrupted) as info:
        fj.run({"boom": _raiser(KeyboardInterrupt, sync), "slow": (asyncio.sleep, 30)})
    results = info.value.results
    assert results["boom"].status is fj.Status.FAILED
    assert isinstance(results["boom"].error, KeyboardInterrupt)
    assert results["slow"].status is fj.Status.CANCELLED
    assert results["slow"].reason == "aborted"
    with pytest.raises(SystemExit):
        fj.run({"boom": _raiser(SystemExit, sync), "slow": (asyncio.sleep, 30)})


def test_fan_records_everything_before_re_raising() -> None:
    seen: dict[str, fj.Outcome] = {}

    async def main() -> None:
        async with fj.Fan(limit=2) as fan:
            fan.spawn("boom", _raiser(SystemExit, False))
            fan.spawn("slow", asyncio.sleep, 30)
            fan.spawn("waiting", asyncio.sleep, 30)
            async for o in fan.as_completed():
                seen[o.name] = o

    with pytest.raises(SystemExit):
        asyncio.run(main())
    assert set(seen) == {"boom", "slow", "waiting"}
    assert seen["slow"].status is fj.Status.CANCELLED
    assert seen["waiting"].status is fj.Status.SKIPPED


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
@pytest.mark.parametrize("entry", ["map", "imap", "map_reduce"])
def test_map_family(entry: str, sync: bool) -> None:
    def sync_item(i: int) -> int:
        if i == 3:
            raise SystemExit(3)
        time.sleep(0.001)
        return i

    async def async_item(i: int) -> int:
        await asyncio.sleep(0.001)
        if i == 3:
            raise SystemExit(3)
        return i

    fn = sync_item if sync else async_item

    async def main() -> None:
        if entry == "map":
            await fj.map(fn, range(50), limit=4)
        elif entry == "imap":
            async for _ in fj.imap(fn, range(50), limit=4):
                pass
        else:
            await fj.map_reduce(fn, range(50), lambda a, v: a + v, 0, limit=4)

    with pytest.raises(SystemExit):
        asyncio.run(main())
