"""Guarantee: observers run on the loop and must be quick; a slow one wrapped in
fj.QueuedObserver hears every event, in order, without slowing the tasks it watches."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import forkjoin as fj


class Slow:
    """Takes 5 ms per event (a blocking log shipper, say)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.threads: set[int] = set()

    def on_event(self, event: fj.Event) -> None:
        time.sleep(0.005)
        self.threads.add(threading.get_ident())
        self.seen.append((type(event).__name__, getattr(event, "name", "")))


class Fast:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def on_event(self, event: fj.Event) -> None:
        self.seen.append((type(event).__name__, getattr(event, "name", "")))


async def job(i: int) -> int:
    await asyncio.sleep(0.05)
    return i


def _run(observer: object) -> fj.Results:
    return fj.run({f"t{i}": (job, i) for i in range(100)}, timeout=0.3, observers=[observer])


def test_a_slow_observer_on_the_loop_makes_tasks_miss_their_timeouts() -> None:
    # the contract: observers run on the loop, between the tasks' own steps
    results = _run(Slow())
    assert sum(1 for o in results.values() if o.reason == "timeout") > 0


def test_a_queued_slow_observer_hears_everything_in_order_and_slows_nothing() -> None:
    slow, fast = Slow(), Fast()
    results = fj.run(
        {f"t{i}": (job, i) for i in range(100)},
        timeout=0.3,
        observers=[fj.QueuedObserver(slow), fast],
    )
    assert results.all_ok
    # everything delivered by the time the run returned, in the order it happened, and
    # from one thread that is not the loop's
    assert slow.seen == fast.seen
    assert slow.seen[0][0] == "RunStarted"
    assert slow.seen[-1][0] == "RunFinished"
    assert len(slow.threads) == 1
    assert threading.get_ident() not in slow.threads


def test_a_queued_observer_subscribes_only_to_what_it_wraps() -> None:
    finished: list[str] = []

    class OnlyFinished:
        def on_task_finished(self, event: fj.TaskFinished) -> None:
            finished.append(event.name)

    queued = fj.QueuedObserver(OnlyFinished())
    assert hasattr(queued, "on_task_finished")
    assert not hasattr(queued, "on_attempt_started")  # no such event is built for it
    fj.run({"a": (job, 1), "b": (job, 2)}, observers=[queued])
    assert sorted(finished) == ["a", "b"]
    with pytest.raises(fj.InvalidPolicy, match="QueuedObserver"):
        fj.QueuedObserver(object())
