"""The benchmark harness's plumbing, on tiny configurations (no timing is asserted)."""

from __future__ import annotations

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
        run.main(["--workloads", "10"])
    assert e.value.code == 2
    assert "--workloads: expected numbers from 1 to 9" in capsys.readouterr().err


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
