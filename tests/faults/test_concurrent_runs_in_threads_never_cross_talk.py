"""Eight threads each calling ``fj.run`` at the same moment never cross-talk: each gets
exactly its own keyed results (values, failures) and a report that counts only them."""

from __future__ import annotations

import threading
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import forkjoin as fj

THREADS = 8


async def work(thread: int, k: int, fail: bool) -> tuple[int, int]:
    if fail:
        raise ValueError(f"{thread}/{k}")
    return thread, k


def own_run(thread: int, sizes: list[int], failing: set[int], start: threading.Barrier,
            out: dict[int, Any]) -> None:  # fmt: skip
    n = sizes[thread]
    tasks = {f"{thread}-{k}": fj.task(work, thread, k, k in failing) for k in range(n)}
    start.wait()
    out[thread] = fj.run(tasks, limit=3)


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 40), min_size=THREADS, max_size=THREADS),
    failing=st.sets(st.integers(0, 39), max_size=10),
)
def test_each_thread_gets_exactly_its_own_results_and_report(
    sizes: list[int], failing: set[int]
) -> None:
    start = threading.Barrier(THREADS)
    out: dict[int, Any] = {}
    threads = [
        threading.Thread(target=own_run, args=(t, sizes, failing, start, out))
        for t in range(THREADS)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not any(th.is_alive() for th in threads)
    assert sorted(out) == list(range(THREADS))
    for thread, results in out.items():
        n = sizes[thread]
        assert sorted(results) == sorted(f"{thread}-{k}" for k in range(n))
        for k in range(n):
            o = results[f"{thread}-{k}"]
            if k in failing:
                assert o.status.value == "failed"
                assert str(o.error) == f"{thread}/{k}"
            else:
                assert o.value == (thread, k)
        report = results.report
        bad = len([k for k in range(n) if k in failing])
        assert report.tasks == n
        assert report.counts.get("ok", 0) == n - bad
        assert report.counts.get("failed", 0) == bad
        assert {row.name for row in report.rows} == set(results)
