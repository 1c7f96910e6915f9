"""The Dask backend, on a real cluster: the session's LocalCluster of two worker processes
(tests/conftest.py), and clusters forkjoin starts itself. Every test ends with none of the
processes it started left."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import forkjoin as fj

from .conftest import Children


def square(x: int) -> int:
    return x * x


async def async_square(x: int) -> tuple[int, str]:
    await asyncio.sleep(0.001)
    from distributed import get_worker

    return x * x, get_worker().address


def die_once(marker: str) -> str:
    if not os.path.exists(marker):
        Path(marker).write_text("called")
        os._exit(1)
    return "second call"


def charging(usd: float) -> int:
    fj.charge(usd=usd)
    return os.getpid()


def spawning() -> None:
    fj.current_fan()


def count(path: str, x: int) -> int:
    with open(path, "a") as f:
        f.write(f"{x}\n")
    return x


async def stopped_on_the_worker(marker: str) -> None:
    try:
        await asyncio.sleep(60)
    finally:
        Path(marker).write_text("stopped")  # noqa: ASYNC240 - a marker, not I/O to wait for


def stuck() -> None:
    time.sleep(60)


@pytest.fixture
def dask(dask_cluster: Any, children: Children) -> Any:
    """The session cluster as a backend, with both its workers up before and after (its
    nanny replaces a worker a test kills: those are the session's, not the test's)."""
    import distributed

    with distributed.Client(dask_cluster, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)
    yield fj.DaskBackend(address=dask_cluster.scheduler_address)
    with distributed.Client(dask_cluster, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)
        children.allow(client.run(os.getpid).values())


def scheduler_tasks(cluster: Any) -> int:
    return len(cluster.scheduler.tasks)


def test_keyed_results_for_sync_async_lambdas_and_closures(dask: fj.DaskBackend) -> None:
    offset = 10

    def closure(x: int) -> int:
        return x + offset

    results = fj.run(
        {
            "sync": (square, 7),
            "async": (async_square, 3),
            "lambda": (lambda: "from a lambda",),
            "closure": (closure, 5),
        },
        backend=dask,
    )
    assert results.all_ok, results.failures()
    assert results["sync"].value == 49
    value, worker = results["async"].value
    assert value == 9
    assert results["async"].history[0].where == worker  # an async call ran on a worker
    assert results["lambda"].value == "from a lambda"
    assert results["closure"].value == 15
    places = {a.where for o in results.values() for a in o.history}
    assert all(p is not None and p.startswith("tcp://127.0.0.1:") for p in places)
    assert set(results.report.where) == places


def test_what_cannot_be_pickled_fails_at_once(dask: fj.DaskBackend) -> None:
    lock = threading.Lock()
    results = fj.run(
        {"argument": fj.task(square, lock, retry=fj.Retry(3, backoff=0)), "after": (square, 3)},
        backend=dask,
    )
    error = results["argument"].error
    assert isinstance(error, fj.TaskNotSerializable)
    assert "task 'argument': argument 1 (lock) cannot be pickled" in str(error)
    assert results["argument"].attempts == 1
    assert results["after"].value == 9


def test_an_async_call_is_stopped_on_the_worker_by_its_timeout(
    dask: fj.DaskBackend, tmp_path: Path
) -> None:
    marker = tmp_path / "stopped"
    began = time.monotonic()
    results = fj.run(
        {"slow": fj.task(stopped_on_the_worker, str(marker), timeout=0.5)}, backend=dask
    )
    o = results["slow"]
    assert o.status is fj.Status.TIMED_OUT
    assert o.reason == "timeout"  # stopped where it ran, not abandoned
    assert time.monotonic() - began < 30
    deadline = time.monotonic() + 20  # the worker's own timeout ends it (a bound, not a wait)
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.read_text() == "stopped"


def test_a_stopped_run_stops_its_async_calls_on_the_workers(
    dask: fj.DaskBackend, tmp_path: Path
) -> None:
    markers = [tmp_path / f"m{i}" for i in range(2)]
    results = fj.run(
        {f"slow{i}": (stopped_on_the_worker, str(m)) for i, m in enumerate(markers)},
        backend=dask,
        deadline=1.0,
    )
    assert {o.reason for o in results.values()} == {"deadline"}
    deadline = time.monotonic() + 20
    while not all(m.exists() for m in markers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(m.read_text() == "stopped" for m in markers)  # no timeout: the broadcast


def test_a_stuck_sync_call_is_abandoned_and_the_run_returns(children: Children) -> None:
    """On a cluster forkjoin starts itself: the abandoned call's worker goes with it."""
    began = time.monotonic()
    results = fj.run(
        {"stuck": fj.task(stuck, timeout=0.5), "fine": (square, 2)},
        backend=fj.DaskBackend(workers=2),
    )
    took = time.monotonic() - began
    o = results["stuck"]
    assert o.status is fj.Status.TIMED_OUT
    assert o.reason == "abandoned"
    (call,) = o.history
    assert "abandoned" in str(call.error)  # the history says so
    assert "late result is ignored" in str(call.error)
    assert results["fine"].value == 4
    assert took < 40  # not the 60 s of the stuck call (the cluster's start included)
    assert results.report.options["backends"]["dask"]["abandoned"] == 1


def test_a_worker_that_dies_is_one_failed_attempt(dask: fj.DaskBackend, tmp_path: Path) -> None:
    results = fj.run(
        {
            "retried": fj.task(die_once, str(tmp_path / "a"), retry=fj.Retry(2, backoff=0)),
            "once": fj.task(die_once, str(tmp_path / "b"), retry=False),
        },
        backend=dask,
        limit=1,
    )
    retried = results["retried"]
    assert retried.ok, retried
    assert retried.value == "second call"
    assert retried.attempts == 2
    assert isinstance(retried.history[0].error, fj.WorkerLost)
    once = results["once"]
    assert once.status is fj.Status.FAILED
    assert isinstance(once.error, fj.WorkerLost)
    assert once.attempts == 1


def test_charge_and_budget_across_workers(dask: fj.DaskBackend) -> None:
    def outcomes(backend: Any) -> dict[str, tuple[str, float | None, str | None]]:
        results = fj.run(
            {f"t{i}": fj.task(charging, 0.1, cost=0.1, priority=-i) for i in range(8)},
            backend=backend,
            limit=2,
            budget=fj.Budget(usd=0.4),
        )
        return {n: (o.status.value, o.cost, o.reason) for n, o in results.items()}

    local = outcomes("thread")
    assert sum(1 for s, _, _ in local.values() if s == "ok") == 4
    assert outcomes(dask) == local


def test_a_rate_limit_holds_across_workers(dask: fj.DaskBackend) -> None:
    rate, per = 5, 0.5
    results = fj.run(
        {f"t{i}": (square, i) for i in range(12)}, backend=dask, rate=fj.RateLimit(rate, per=per)
    )
    assert results.all_ok
    starts = sorted(o.history[0].started for o in results.values())
    for i, t in enumerate(starts):
        assert len([s for s in starts[i:] if s < t + per]) <= rate


def test_current_fan_in_a_worker_says_why_not(dask: fj.DaskBackend) -> None:
    error = fj.run({"spawns": (spawning,)}, backend=dask)["spawns"].error
    assert isinstance(error, RuntimeError)
    assert "not available in a call running on the dask backend" in str(error)


def test_futures_in_flight_are_bounded_and_released(
    dask: fj.DaskBackend, dask_cluster: Any
) -> None:
    """Many tasks and no limit: the scheduler never holds more than the window's futures,
    and none once the run has returned."""
    seen: list[int] = []

    async def watch() -> None:
        while True:  # on the run's loop, beside the calls
            seen.append(scheduler_tasks(dask_cluster))
            await asyncio.sleep(0.005)

    async def run_it() -> fj.Results:
        async with fj.Fan(backend=dask) as fan:
            watcher = asyncio.ensure_future(watch())
            for i in range(300):
                fan.spawn(f"t{i}", square, i)
        watcher.cancel()
        return fan.results

    results = asyncio.run(run_it())
    assert [results[f"t{i}"].value for i in range(300)] == [i * i for i in range(300)]
    window = results.report.options["backends"]["dask"]["window"]
    assert window == 32  # two workers of one thread: the least window
    assert max(seen) <= window
    deadline = time.monotonic() + 10  # releases are messages: a bound, not a wait
    while scheduler_tasks(dask_cluster) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert scheduler_tasks(dask_cluster) == 0


def _kill_a_worker_and_wait(client: Any, worker: str | None = None) -> None:
    pids = client.run(os.getpid)
    os.kill(pids[worker] if worker else next(iter(pids.values())), 9)
    client.wait_for_workers(2, timeout=60)


def test_results_are_not_recomputed_when_a_worker_dies_after_the_run(
    dask: fj.DaskBackend, dask_cluster: Any, tmp_path: Path
) -> None:
    """Measured against futures held the usual way: when a worker dies, Dask recomputes
    the results it held for a client; forkjoin released each future once its result was
    in, so nothing runs twice."""
    import distributed

    held_log = tmp_path / "held"
    with distributed.Client(dask_cluster, set_as_default=False) as client:
        futures = [client.submit(count, str(held_log), i, pure=False) for i in range(20)]
        client.gather(futures)
        holder = next(iter(client.who_has(futures[:1]).values()))[0]
        _kill_a_worker_and_wait(client, holder)
        client.gather(futures)  # what the dead worker held is computed again
        del futures
    recomputed = len(held_log.read_text().split()) - 20
    assert recomputed > 0

    log = tmp_path / "calls"
    results = fj.run({f"t{i}": (count, str(log), i) for i in range(20)}, backend=dask)
    assert results.all_ok
    with distributed.Client(dask_cluster, set_as_default=False) as client:
        _kill_a_worker_and_wait(client)
    assert sorted(int(x) for x in log.read_text().split()) == list(range(20))


def test_a_client_of_the_callers_own(dask_cluster: Any, children: Children) -> None:
    import distributed

    with distributed.Client(dask_cluster, set_as_default=False) as client:
        results = fj.run(
            {"sync": (square, 3), "async": (async_square, 4)},
            backend=fj.DaskBackend(client=client),
        )
        assert client.status == "running"  # the caller's client is theirs to close
    assert results["sync"].value == 9
    assert results["async"].value[0] == 16

    async def native() -> fj.Results:
        async with distributed.Client(
            dask_cluster.scheduler_address, asynchronous=True, set_as_default=False
        ) as client:
            return await fj.gather({"t": (square, 5)}, backend=fj.DaskBackend(client=client))

    assert asyncio.run(native())["t"].value == 25


def test_an_unreachable_scheduler_is_one_clear_error(children: Children) -> None:
    backend = fj.DaskBackend(address="tcp://127.0.0.1:9", connect_timeout=1)
    with pytest.raises(
        ConnectionError, match=r"cannot reach the scheduler at tcp://127\.0\.0\.1:9"
    ):
        fj.run({"t": (square, 1)}, backend=backend)


def test_dask_backend_values_are_validated() -> None:
    with pytest.raises(fj.InvalidPolicy, match="not both"):
        fj.DaskBackend(address="tcp://h:1", client=object())
    with pytest.raises(fj.InvalidPolicy, match=r"DaskBackend\.address"):
        fj.DaskBackend(address="")
    with pytest.raises(fj.InvalidPolicy, match="size the cluster forkjoin starts"):
        fj.DaskBackend(address="tcp://h:1", workers=2)
    with pytest.raises(fj.InvalidPolicy, match=r"DaskBackend\.window"):
        fj.DaskBackend(window=0)
    assert fj.task(square, 1, backend="dask").backend == fj.DaskBackend()


def graphs_sent(cluster: Any) -> int:
    """How many graphs the scheduler was ever sent (each adds an entry to a span's
    metadata, kept for as long as the scheduler runs)."""
    spans = cluster.scheduler.extensions["spans"].spans.values()
    return sum(len((s.metadata or {}).get("collections", ())) for s in spans)


def test_what_a_long_run_leaves_in_the_scheduler_is_not_per_call(
    dask: fj.DaskBackend, dask_cluster: Any
) -> None:
    """Calls go to the scheduler a quarter of the window at a time, not one graph each; and
    Dask's memo of key names (in this process, which hosts the scheduler) does not keep
    every call's key. Both grew the caller's memory by each call when the scheduler is in
    its process (the embedded cluster)."""
    from dask.utils import key_split

    n = 5000
    before = graphs_sent(dask_cluster)
    total = asyncio.run(fj.map_reduce(square, range(n), lambda a, b: a + b, 0, backend=dask))
    assert total == sum(i * i for i in range(n))
    graphs = graphs_sent(dask_cluster) - before
    assert graphs <= n // 4, f"{graphs} graphs for {n} calls"
    # emptied as the run goes: what is left is the keys of its last stretch
    memo = key_split.cache_info().currsize
    assert memo < n // 2, f"{memo} keys memoised after {n} calls"
