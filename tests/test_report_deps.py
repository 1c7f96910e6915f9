"""The report of a run with dependencies: critical path, ideal speedup, JSON, text, HTML."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import forkjoin as fj
from forkjoin import RunReport


async def nap(seconds: float, *_: Any) -> float:
    await asyncio.sleep(seconds)
    return seconds


def pipeline(vrun: Any, limit: int | None = None) -> fj.Results:
    # two chains from one source: a -> b -> d (1 + 3 + 1 s) and a -> c -> d (1 + 1 + 1 s),
    # and an independent 2 s task
    return vrun(  # type: ignore[no-any-return]
        fj.gather(
            {
                "a": (nap, 1),
                "b": fj.task(nap, 3, fj.ref("a")),
                "c": fj.task(nap, 1, after=["a"]),
                "d": fj.task(nap, 1, after=["b", "c"]),
                "solo": (nap, 2),
            },
            limit=limit,
        )
    )


def test_critical_path_and_ideal_speedup(vrun: Any) -> None:
    report = pipeline(vrun).report
    assert report.critical_path == ("a", "b", "d")
    assert report.critical_path_duration == 5
    assert report.total_duration == 8
    assert report.critical_path_speedup == pytest.approx(8 / 5)
    assert report.wall == 5  # unlimited: the run took exactly its critical path
    assert report.ideal_speedup == pytest.approx(8 / 5)  # the dependencies bound it
    assert report.task("d").after == ("b", "c")
    assert report.task("b").after == ("a",)
    assert report.task("solo").after == ()
    text = str(report)
    assert (
        "dependencies critical path 5.000s: a → b → d (ideal speedup under the dependencies 1.60x)"
    ) in text
    assert "ideal under the limits and dependencies 1.60x" in text


def test_a_limit_that_binds_harder_than_the_dependencies(vrun: Any) -> None:
    report = pipeline(vrun, limit=1).report
    assert report.wall == 8
    assert report.critical_path_duration == 5
    assert report.ideal_speedup == pytest.approx(1.0)  # one slot: 8 s of work takes 8 s


def test_json_round_trip_keeps_dependencies(vrun: Any, tmp_path: Path) -> None:
    report = pipeline(vrun).report
    d = report.to_dict()
    assert d["critical_path"] == {"tasks": ["a", "b", "d"], "duration": 5.0,
                                  "ideal_speedup": pytest.approx(1.6)}  # fmt: skip
    rows = {r["name"]: r for r in d["rows"]}
    assert rows["d"]["after"] == ["b", "c"]
    assert rows["a"]["after"] == []
    again = RunReport.from_dict(json.loads(report.to_json()))
    assert again.to_dict() == d
    assert again.critical_path == ("a", "b", "d")
    # a run without dependencies has no critical path section
    plain = vrun(fj.gather({"x": (nap, 1)})).report
    assert plain.to_dict()["critical_path"] is None
    assert "critical path" not in str(plain)


def test_a_hand_written_report_with_a_cycle_or_unknown_names_is_read() -> None:
    rows = [
        {"name": "a", "status": "ok", "started": 0.0, "ended": 1.0, "after": ["b"]},
        {"name": "b", "status": "ok", "started": 1.0, "ended": 2.0, "after": ["a"]},
        {"name": "c", "status": "ok", "started": 0.0, "ended": 4.0, "after": ["nobody"]},
        {"name": "e", "status": "ok", "started": 4.0, "ended": 5.0, "after": ["c"]},
    ]
    report = RunReport.from_dict({"version": 2, "wall": 5.0, "rows": rows})
    assert report.critical_path == ("c", "e")  # the cycle is left out, the unknown ignored
    assert report.critical_path_duration == 5.0
    with pytest.raises(ValueError, match=r"report\.rows\[0\]"):
        RunReport.from_dict(
            {"version": 2, "rows": [{"name": "a", "status": "ok", "after": 3, "started": 0}]}
        )


def test_skipped_and_group_rows_weigh_nothing(vrun: Any) -> None:
    async def boom() -> None:
        await asyncio.sleep(1)
        raise ValueError("no")

    results = vrun(
        fj.gather(
            {
                "ids": lambda: [3, 1],
                "sleep": fj.each("ids", nap, fj.item()),
                "bad": boom,
                "never": fj.task(nap, 10, after=["bad"]),
                "end": fj.task(nap, 1, after=["sleep"]),
            }
        )
    )
    report = results.report
    assert report.critical_path[-3:] == ("sleep/0", "sleep", "end")
    assert report.critical_path_duration == pytest.approx(4.0, abs=0.01)
    assert report.task("never").duration is None
