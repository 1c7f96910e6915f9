"""The benchmark harness's plumbing, on tiny configurations (no timing is asserted)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from bench import run, workloads
from bench.run import Agg, Config
from bench.workloads.w7_rate import window_stats


def test_child_reports_time_and_its_own_peak_rss() -> None:
    result = run.run_child(Config(1, "fj.gather", 200, "asyncio"), timeout=60)
    assert "error" not in result, result.get("error")
    assert result["seconds"] > 0
    assert result["cpu"] > 0
    # ru_maxrss of that child (via wait4), at least what the child itself saw before the work
    assert result["rss_peak_kb"] >= result["rss_before_kb"] > 0


def test_a_crashing_child_is_reported_not_hidden() -> None:
    result = run.run_child(Config(1, "no-such-contender", 10, "asyncio"), timeout=60)
    assert "crashed" in result["error"]
    assert "no-such-contender" in result["error"]


def test_main_writes_tables_and_exits_zero(tmp_path: Path) -> None:
    out = tmp_path / "r.md"
    code = run.main(
        ["--quick", "--workloads", "1", "--only", "fj.gather", "--no-uvloop", "--out", str(out)]
    )
    assert code == 0
    text = out.read_text()
    assert "| 2,000 | **asyncio.gather** (baseline) | asyncio |" in text
    assert "| 2,000 | fj.gather | asyncio |" in text
    assert "## Floors" in text
    assert out.with_suffix(".json").exists()


def test_bad_workload_number_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        run.main(["--workloads", str(len(workloads.ALL) + 1)])
    assert e.value.code == 2
    expected = f"--workloads: expected numbers from 1 to {len(workloads.ALL)}"
    assert expected in capsys.readouterr().err


def _agg(w: int, c: str, n: int, seconds: float, rss_kb: int, loop: str = "asyncio") -> Agg:
    runs = [{"seconds": seconds, "cpu": seconds, "rss_peak_kb": rss_kb, "rss_before_kb": 1000}] * 3
    return Agg(Config(w, c, n, loop), runs=runs)


def test_floors_compare_the_right_figures() -> None:
    n = 100_000
    aggs = {
        a.config: a
        for a in [
            _agg(1, "asyncio.gather", n, 1.0, 100_000),
            _agg(1, "fj.gather", n, 1.14, 140_000),  # time 1.14x: pass; RSS 1.4x: fail
            _agg(2, "gather+sem", n, 1.0, 50_000),
            _agg(2, "pool", n, 0.06, 50_000),
            _agg(2, "fj.map", n, 0.1, 50_000),  # 1.67x the pool: fail
            _agg(2, "aiometer.amap", n, 0.5, 50_000),  # only 5x slower than fj.map: fail
            _agg(2, "langchain", n, 5.0, 50_000),
        ]
    }
    floors = {f.text.split(":")[-1].strip(): f for f in run.floors(aggs, "full")}
    assert floors["time ≤ 1.15× raw `asyncio.gather`"].passed is True
    assert floors["peak RSS ≤ 1.3× raw `asyncio.gather`"].passed is False
    assert floors["≤ 0.5× gather + Semaphore"].passed is True
    (pool_floor,) = [
        f
        for f in run.floors(aggs, "full")
        if f.workload == 2 and "hand-written pool" in f.text and f"{n:,}" in f.text
    ]
    assert pool_floor.passed is False
    assert floors["… ≥ 8× faster than aiometer (its faster entry point)"].passed is False
    assert floors["… ≥ 40× faster than LangChain `abatch`"].passed is True
    # what was not measured is not a pass
    assert all(f.passed is None for f in run.floors(aggs, "full") if f.workload >= 3)


def test_durable_floors_judge_the_per_task_difference() -> None:
    n = 100_000
    aggs = {
        a.config: a
        for a in [
            _agg(9, "fj.gather", n, 1.0, 100_000),  # 10 us per task
            _agg(9, "fj.journal", n, 1.4, 100_000),  # +4 us: pass
            _agg(9, "fj.journal-sync", n, 4.0, 100_000),  # +30 us: fail
            _agg(9, "fj.resume", n, 0.5, 100_000),  # 0.5 s: pass
            _agg(4, "fj.imap+journal", 1_000_000, 1.0, 40 * 1024),
            _agg(4, "fj.imap+journal", 100_000, 1.0, 39 * 1024),
        ]
    }
    floors = [f for f in run.floors(aggs, "full") if f.workload == 9 or "journal" in f.text]
    by_text = {f.text: f for f in floors}
    batch = next(f for t, f in by_text.items() if t.startswith("`fj.journal`,"))
    sync = next(f for t, f in by_text.items() if t.startswith("`fj.journal-sync`"))
    resume = next(f for t, f in by_text.items() if t.startswith("rerun"))
    assert (batch.passed, batch.measured) == (True, "+4.00 µs")
    assert (sync.passed, sync.measured) == (False, "+30.00 µs")
    assert resume.passed is True
    rss = next(f for t, f in by_text.items() if "with a journal" in t and "60 MB" in t)
    assert rss.passed is True


def test_window_stats_catch_a_first_second_burst() -> None:
    # 128 starts per second, on exact binary fractions so window edges are exact
    even = [i / 128 for i in range(640)]
    s = window_stats(even)
    assert s["worst_window"] == 128
    assert s["first_window"] == 128
    assert s["achieved"] == pytest.approx(128)
    # a bucket that starts full: 128 at once, then 128/s right away (aiolimiter's shape)
    burst = [0.0] * 128 + [(i + 1) / 128 for i in range(512)]
    s = window_stats(burst)
    assert s["first_window"] == 128 + 127
    assert s["worst_window"] == 128 + 127
    assert s["achieved"] > 128


def test_every_workload_has_its_baseline_sizes_and_three_repeats() -> None:
    for w in workloads.ALL:
        assert set(w.sizes) == {"quick", "full"}
        assert w.baseline == "ideal" or w.contender(w.baseline).key == w.baseline
        assert w.repeats["full"] >= 3  # the issue: the median of at least 3 repeats


def test_makespan_floor_is_judged_on_the_stock_loop_with_the_select_loop_as_context() -> None:
    n = 1_000  # ideal 0.200 s
    aggs = {
        a.config: a
        for a in [
            _agg(3, "fj.map", n, 0.230, 30_000),  # pool + 0.03 on the stock loop: fail
            _agg(3, "pool", n, 0.224, 30_000),
            _agg(3, "fj.map", n, 0.212, 30_000, loop="select"),
            _agg(3, "pool", n, 0.210, 30_000, loop="select"),
        ]
    }
    (floor,) = [f for f in run.floors(aggs, "full") if "fj.map(limit=50)" in f.text]
    assert floor.passed is False  # the select loop is context, never the verdict
    assert floor.measured == (
        "+0.030 (1.150× vs bare pool 1.120×; on a select() loop: 1.060×, bare pool 1.050×)"
    )


def test_a_child_runs_on_the_select_loop() -> None:
    result = run.run_child(Config(3, "fj.map", 100, "select"), timeout=60)
    assert "error" not in result, result.get("error")
    assert result["seconds"] >= 100 / 50 * 0.01


def test_shell_rows_are_divided_by_xargs_with_the_same_command_and_jobs() -> None:
    n = 2_000
    runs = [
        _agg(10, "xargs/true/8", n, 1.0, 30_000, "-"),
        _agg(10, "fj.map/true/8", n, 1.1, 30_000, "-"),  # 1.10x xargs: pass
        _agg(10, "parallel/true/8", n, 5.0, 30_000, "-"),  # 4.5x slower than forkjoin: pass
        _agg(10, "xargs/echo {}/50", n, 1.0, 30_000, "-"),
        _agg(10, "fj.map/echo {}/50", n, 1.3, 30_000, "-"),  # 1.30x: fail
        _agg(10, "parallel/echo {}/50", n, 4.0, 30_000, "-"),  # 3.1x: fail
        _agg(13, "version", 15, 0.09, 30_000, "-"),
        _agg(13, "map", 15, 0.2, 30_000, "-"),
    ]
    aggs = {a.config: a for a in runs}
    got = {(f.workload, f.text): f.passed for f in run.floors(aggs, "full") if f.workload >= 10}
    assert got[(10, "`forkjoin map -j 8 -- true`, 2,000 lines: ≤ 1.2× `xargs -P 8`")] is True
    assert got[(10, "`forkjoin map -j 50 -- echo {}`, 2,000 lines: ≤ 1.2× `xargs -P 50`")] is False
    parallel = [f for f in run.floors(aggs, "full") if f.workload == 10 and "parallel" in f.text]
    assert [f.passed for f in parallel] == [True, None, None, False]
    assert got[(13, "start-up, `forkjoin --version`: ≤ 0.15 s")] is True
    assert got[(13, "start-up, `forkjoin map -- true` on one line: ≤ 0.15 s")] is False
    # the table divides each row by its own xargs, not by the workload's first baseline
    table = "\n".join(run.workload_table(workloads.get(10), aggs))
    assert "| `forkjoin map -j 50`, `echo {}` | - | 1.300 | 1.30× |" in table


@pytest.mark.parametrize("key", ["fj.map/echo {}/8", "xargs/echo {}/8", "parallel/echo {}/8"])
def test_a_shell_contender_runs_and_checks_its_output(key: str) -> None:
    # GNU parallel and xargs are system tools: .ci/run installs them, and under CI a missing
    # one is an error here, not a skip
    tool = key.split("/")[0]
    if tool != "fj.map" and shutil.which(tool) is None and not os.environ.get("CI"):
        pytest.skip(f"{tool} is not installed (apt-get install {tool})")
    result = run.run_child(Config(10, key, 20, "-"), timeout=120)
    assert "error" not in result, result.get("error")
    assert "skipped" not in result, result.get("skipped")
    assert result["seconds"] > 0


def test_start_up_contender_reports_one_start() -> None:
    result = run.run_child(Config(13, "version", 2, "-"), timeout=120)
    assert "error" not in result, result.get("error")
    assert 0 < result["seconds"] < 10
