"""The process backend, on real pools: every test ends with none of its processes left."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import forkjoin as fj

from .conftest import Children


def square(x: int) -> int:
    return x * x


async def async_square(x: int) -> tuple[int, int]:
    await asyncio.sleep(0.001)
    return x * x, os.getpid()


def pid() -> int:
    return os.getpid()


def stuck() -> None:
    time.sleep(60)


def die_once(marker: str) -> str:
    """Kills its own worker on its first call; returns on the next."""
    if not os.path.exists(marker):
        Path(marker).write_text("called")
        os._exit(1)
    return "second call"


def charging(usd: float) -> int:
    fj.charge(usd=usd)
    return os.getpid()


def spawning() -> None:
    fj.current_fan()


def unpicklable_value() -> Any:
    return threading.Lock()


class Boom(Exception):
    pass


def boom() -> None:
    raise Boom("from a worker")


def pids_of(results: fj.Results) -> set[int]:
    return {int(a.where[4:]) for o in results.values() for a in o.history
            if a.where and a.where.startswith("pid ")}  # fmt: skip


def gone(pids: set[int]) -> bool:
    import psutil

    return not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids)


def test_keyed_results_for_sync_async_lambdas_and_closures(children: Children) -> None:
    offset = 10

    def closure(x: int) -> int:
        return x + offset

    results = fj.run(
        {
            "sync": (square, 7),
            "async": (async_square, 3),
            "lambda": (lambda: "from a lambda",),
            "closure": (closure, 5),
            "error": (boom,),
        },
        backend="process",
    )
    assert results["sync"].value == 49
    value, worker = results["async"].value
    assert value == 9
    assert worker != os.getpid()  # an async function runs in the worker too
    assert results["lambda"].value == "from a lambda"
    assert results["closure"].value == 15
    error = results["error"].error
    assert isinstance(error, Boom)
    assert "from a worker" in str(error)
    assert "in boom" in str(error.__cause__)  # the worker's traceback, as text
    used = pids_of(results)
    assert used
    assert os.getpid() not in used
    assert all(a.where and a.where.startswith("pid ") for o in results.values()
               for a in o.history)  # fmt: skip
    assert results.report.where.keys() == {f"pid {p}" for p in used}
    again = fj.RunReport.from_dict(results.report.to_dict())
    assert again.where == results.report.where  # the saved report keeps where calls ran
    assert f'"where":"pid {next(iter(used))}"' in results.report.to_html()  # the timeline
    assert gone(used)  # the pool is stopped before the run returns


def test_a_function_defined_in_main_runs_with_either_start_method(tmp_path: Path) -> None:
    script = tmp_path / "main_fn.py"
    script.write_text(
        textwrap.dedent(
            """
            import json, os, sys
            import forkjoin as fj

            def triple(x):
                return x * 3, os.getpid()

            if __name__ == "__main__":
                backend = fj.ProcessBackend(workers=2, start_method=sys.argv[1])
                results = fj.run({f"t{i}": (triple, i) for i in range(4)}, backend=backend)
                print(json.dumps({"me": os.getpid(), **{n: o.value for n, o in results.items()}}))
            """
        )
    )
    for method in ("fork", "spawn"):
        r = subprocess.run(
            [sys.executable, str(script), method], capture_output=True, text=True, timeout=120
        )
        assert r.returncode == 0, r.stderr
        values = json.loads(r.stdout)
        me = values.pop("me")
        assert [v[0] for v in values.values()] == [0, 3, 6, 9]
        assert me not in {v[1] for v in values.values()}


def test_what_cannot_be_pickled_fails_at_once_naming_it(children: Children) -> None:
    lock = threading.Lock()
    results = fj.run(
        {
            "argument": fj.task(square, lock, retry=fj.Retry(attempts=3, backoff=0)),
            "function": (lambda: lock.locked(),),
            "value": (unpicklable_value,),
            "after": (square, 4),
        },
        backend=fj.ProcessBackend(workers=1),
    )
    arg = results["argument"]
    assert arg.status is fj.Status.FAILED
    assert isinstance(arg.error, fj.TaskNotSerializable)
    assert "task 'argument': argument 1 (lock) cannot be pickled" in str(arg.error)
    assert arg.attempts == 1  # never retried: it would fail the same way
    func = results["function"].error
    assert isinstance(func, fj.TaskNotSerializable)
    assert "its function" in str(func)
    value = results["value"].error
    assert isinstance(value, fj.TaskNotSerializable)
    assert "task 'value': its value (lock) cannot be pickled back" in str(value)
    assert results["after"].value == 16  # the pool is fine


def test_a_timeout_kills_the_stuck_worker_and_a_fresh_one_takes_over(
    children: Children,
) -> None:
    began = time.monotonic()
    results = fj.run(
        {"stuck": fj.task(stuck, timeout=0.5), "next": (pid,)},
        backend=fj.ProcessBackend(workers=1),
        limit=1,
    )
    took = time.monotonic() - began
    o = results["stuck"]
    assert o.status is fj.Status.TIMED_OUT
    assert o.reason == "timeout"  # stopped, not abandoned
    (call,) = o.history
    assert call.where is not None
    assert call.where.startswith("pid ")
    killed = int(call.where[4:])
    assert results["next"].value != killed  # its replacement ran the next call
    assert gone({killed, results["next"].value})
    assert took < 30  # not the 60 s of the stuck call
    assert results.report.options["backends"]["process"]["killed"] == 1


@pytest.mark.parametrize("stop", ["deadline", "fail_fast", "quorum"])
def test_a_stopped_run_kills_the_workers_of_its_running_calls(
    children: Children, stop: str
) -> None:
    options: dict[str, Any] = {
        "deadline": {"deadline": 1.0},
        "fail_fast": {"on_error": "fail_fast"},
        "quorum": {"quorum": 1},
    }[stop]
    tasks: dict[str, Any] = {"stuck1": (stuck,), "stuck2": (stuck,)}
    if stop == "fail_fast":
        tasks["ends"] = fj.task(boom)
    elif stop == "quorum":
        tasks["ends"] = fj.task(square, 2)
    try:
        results = fj.run(tasks, backend=fj.ProcessBackend(workers=3), **options)
    except fj.FanError as e:
        results = e.results
    for name in ("stuck1", "stuck2"):
        o = results[name]
        assert o.reason == stop, o
        assert o.status in (fj.Status.TIMED_OUT, fj.Status.CANCELLED)
        assert o.history[-1].where is not None
    # not left to run: a call a worker had started was killed with it; one still queued
    # (a worker slow to start on a loaded machine) was taken back before any ran it
    running = [n for n in ("stuck1", "stuck2") if results[n].history[-1].where.startswith("pid ")]
    assert running
    assert results.report.options["backends"]["process"]["killed"] == len(running)
    assert gone(pids_of(results))


def test_a_worker_that_dies_is_one_failed_attempt(children: Children, tmp_path: Path) -> None:
    results = fj.run(
        {
            "retried": fj.task(die_once, str(tmp_path / "a"), retry=fj.Retry(2, backoff=0)),
            "once": fj.task(die_once, str(tmp_path / "b"), retry=False),
        },
        backend=fj.ProcessBackend(workers=2),
    )
    retried = results["retried"]
    assert retried.ok, retried
    assert retried.value == "second call"
    assert retried.attempts == 2
    first, second = retried.history
    assert isinstance(first.error, fj.WorkerLost)
    assert first.where != second.where  # the second call ran on a fresh worker
    once = results["once"]
    assert once.status is fj.Status.FAILED
    assert isinstance(once.error, fj.WorkerLost)
    assert once.attempts == 1
    assert "died" in str(once.error)


def test_charge_from_a_worker_reaches_the_budget_and_the_report(children: Children) -> None:
    results = fj.run(
        {f"t{i}": fj.task(charging, 0.25, cost=0.1) for i in range(3)},
        backend="process",
        budget=fj.Budget(usd=10),
    )
    assert all(o.cost == 0.25 for o in results.values())
    assert results.report.cost == pytest.approx(0.75)
    assert results.report.options["budget"]["spent_usd"] == pytest.approx(0.75)
    assert os.getpid() not in {o.value for o in results.values()}


def test_a_budget_holds_as_it_does_locally(children: Children) -> None:
    def outcomes(backend: str) -> dict[str, tuple[str, float | None, str | None]]:
        results = fj.run(
            {f"t{i}": fj.task(charging, 0.1, cost=0.1, priority=-i) for i in range(10)},
            backend=backend,
            limit=2,
            budget=fj.Budget(usd=0.5),
        )
        return {n: (o.status.value, o.cost, o.reason) for n, o in results.items()}

    local = outcomes("thread")
    assert sum(1 for s, _, _ in local.values() if s == "ok") == 5
    assert outcomes("process") == local


def test_a_rate_limit_holds_across_workers(children: Children) -> None:
    rate, per = 5, 0.5
    results = fj.run(
        {f"t{i}": (square, i) for i in range(12)},
        backend=fj.ProcessBackend(workers=2),
        rate=fj.RateLimit(rate, per=per),
    )
    assert results.all_ok
    starts = sorted(o.history[0].started for o in results.values())
    for i, t in enumerate(starts):
        in_window = [s for s in starts[i:] if s < t + per]
        assert len(in_window) <= rate, (t, in_window)


def test_current_fan_in_a_worker_says_why_not(children: Children) -> None:
    results = fj.run({"spawns": (spawning,)}, backend="process")
    error = results["spawns"].error
    assert isinstance(error, RuntimeError)
    assert "not available in a call running on the process backend" in str(error)
    assert "spawning stays in the caller" in str(error)


def test_map_family_on_the_process_backend(children: Children) -> None:
    async def main() -> tuple[list[int], int, list[int]]:
        values = await fj.map(square, range(30), backend="process")
        total = await fj.map_reduce(square, range(30), lambda a, b: a + b, 0, backend="process")
        stream = fj.imap(square, range(10), backend="process", limit=3, ordered=True)
        streamed = [o.value async for o in stream]
        return values, total, streamed

    values, total, streamed = asyncio.run(main())
    assert values == [i * i for i in range(30)]
    assert total == sum(i * i for i in range(30))
    assert streamed == [i * i for i in range(10)]


def test_a_hedge_races_two_workers_and_kills_the_loser(children: Children) -> None:
    def first_slow(marker: str) -> int:
        if not os.path.exists(marker):
            Path(marker).write_text("first")
            time.sleep(60)
        return os.getpid()

    marker = str(Path(os.environ.get("TMPDIR", "/tmp")) / f"fj-hedge-{os.getpid()}")
    try:
        results = fj.run(
            {"h": fj.task(first_slow, marker, idempotent=True, hedge=fj.Hedge(after=0.3))},
            backend=fj.ProcessBackend(workers=2),
        )
    finally:
        Path(marker).unlink(missing_ok=True)
    o = results["h"]
    assert o.ok
    assert {a.hedge for a in o.history} == {False, True}
    assert gone(pids_of(results))


def test_process_backend_values_are_validated() -> None:
    with pytest.raises(fj.InvalidPolicy, match=r"ProcessBackend\.workers"):
        fj.ProcessBackend(workers=0)
    with pytest.raises(fj.InvalidPolicy, match=r"ProcessBackend\.start_method"):
        fj.ProcessBackend(start_method="clone")
    assert fj.task(square, 1, backend="process").backend == fj.ProcessBackend()


def test_a_runs_end_does_not_wait_out_pebbles_tenth_of_a_second_nap(
    children: Children, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pebble's join waits for its manager thread's nap (0.1 s by default): the pool lowers
    # it for the process, and leaves a lower one someone else set as it is
    from pebble.common.types import CONSTS

    monkeypatch.setattr(CONSTS, "sleep_unit", 0.1)
    results = fj.run({"a": (square, 3)}, backend="process")
    assert results["a"].value == 9
    assert CONSTS.sleep_unit <= 0.01
    monkeypatch.setattr(CONSTS, "sleep_unit", 0.001)
    assert fj.run({"a": (square, 4)}, backend="process")["a"].value == 16
    assert CONSTS.sleep_unit == 0.001
