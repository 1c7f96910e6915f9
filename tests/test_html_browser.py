"""The HTML timeline in a real browser (headless Chromium): it draws, one bar per call.

Needs the ``chromium`` system package (.ci/run installs it). Locally the tests skip when it
is missing; under CI (``CI`` set) they fail instead, so the check can never vanish quietly.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import forkjoin as fj

PIL_Image = pytest.importorskip("PIL.Image")


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed (CI must install it: see .ci/run)")
    pytest.skip("chromium is not installed (apt-get install chromium)")


def _browse(page: Path, tmp_path: Path, *args: str) -> str:
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1200,800",
        *args,
        page.as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _colours(png: Path) -> int:
    with PIL_Image.open(png) as img:
        rgb = img.convert("RGB")
        return len(rgb.getcolors(maxcolors=1 << 24) or [])


async def _work(d: float, fail: bool = False) -> float:
    await asyncio.sleep(d)
    if fail:
        raise ValueError("no")
    return d


def _small_run(vrun: Any) -> fj.Results:
    specs: dict[str, Any] = {}
    for i in range(10):
        retry = fj.Retry(attempts=3, backoff=0) if i % 4 == 1 else None
        fails = i % 4 == 1
        specs[f"task-{i}"] = fj.task(_work, 0.2 + 0.1 * i, fails, retry=retry, group=f"g{i % 2}")
    return vrun(fj.gather(specs, limit=4, limits={"g0": 2}, deadline=2.5))  # type: ignore[no-any-return]


def test_timeline_draws_one_bar_per_call(vrun: Any, tmp_path: Path) -> None:
    report = _small_run(vrun).report
    page = tmp_path / "timeline.html"
    report.to_html(page)
    calls = sum(len(r.calls) for r in report.rows)
    assert calls > len(report.rows)  # retries are in there

    dom = _browse(page, tmp_path, "--dump-dom")
    assert 'data-ready="1"' in dom, "the page's script did not run to the end"
    bars = re.findall(r'<div class="bar ([a-z_ ]+)" data-task="([^"]+)" data-call="(\d+)"', dom)
    assert len(bars) == calls
    for row in report.rows:
        mine = [b for b in bars if b[1] == row.name]
        assert [int(b[2]) for b in mine] == [c.number for c in row.calls]
        assert mine[-1][0].split()[0] == row.status  # the last call shows how the task ended
    assert 'id="conc-line"' in dom
    assert 'id="conc-0"' in dom  # the limited group's own line
    assert "group g0 running over time (limit 2" in dom

    shot = tmp_path / "shot.png"
    _browse(page, tmp_path, f"--screenshot={shot}")
    with PIL_Image.open(shot) as img:
        assert img.size == (1200, 800)
    assert _colours(shot) > 20  # a blank page has one colour


def test_five_thousand_tasks_load_with_the_aggregate(tmp_path: Path) -> None:
    rows = []
    for i in range(5000):
        start = (i // 50) * 0.1
        status = "failed" if i % 7 == 0 else "ok"
        rows.append(
            {
                "name": f"item-{i}",
                "status": status,
                "attempts": 1,
                "started": start,
                "ended": start + 0.1,
                "calls": [
                    {
                        "number": 1,
                        "started": start,
                        "ended": start + 0.1,
                        "error": "ValueError: x" if status == "failed" else None,
                    }
                ],
            }
        )
    report = fj.RunReport.from_dict({"version": 2, "wall": 10.0, "limit": 50, "rows": rows})
    page = tmp_path / "big.html"
    report.to_html(page)

    dom = _browse(page, tmp_path, "--dump-dom")
    assert 'data-ready="1"' in dom
    assert 'id="aggregate"' in dom
    drawn = len(re.findall(r'<div class="bar ', dom))
    assert 0 < drawn < 500  # virtualised: only the rows in view exist
    shot = tmp_path / "big.png"
    _browse(page, tmp_path, f"--screenshot={shot}")
    assert _colours(shot) > 20


def test_timeline_highlights_the_critical_path(vrun: Any, tmp_path: Path) -> None:
    from .test_report_deps import pipeline

    report = pipeline(vrun).report
    page = tmp_path / "deps.html"
    report.to_html(page)
    dom = _browse(page, tmp_path, "--dump-dom")
    assert 'data-ready="1"' in dom
    marked = re.findall(r'<div class="row[^"]*\bcrit\b[^"]*" data-i="(\d+)"', dom)
    names = [report.rows[int(i)].name for i in marked]
    assert names == ["a", "b", "d"]
    assert 'id="legend-critical"' in dom
    assert "critical path (3 tasks, 5.000 s)" in dom
    arrows = re.findall(r'<path class="crit-arrow"', dom)
    assert len(arrows) == 2  # a -> b, b -> d
