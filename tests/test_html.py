"""The HTML timeline page: self-contained, safe with any task name, re-renderable from JSON."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import forkjoin as fj
from forkjoin._html import FULL_ROWS, render_html
from forkjoin._report import RunReport


async def _work(d: float, fail: bool = False) -> float:
    await asyncio.sleep(d)
    if fail:
        raise ValueError("no")
    return d


def _results(vrun: Any) -> fj.Results:
    return vrun(  # type: ignore[no-any-return]
        fj.gather(
            {
                "ok": (_work, 1.0),
                "retried": fj.task(_work, 0.5, True, retry=fj.Retry(attempts=2, backoff=0)),
                "</script><b>x</b>__DATA__": (_work, 0.2),
            },
            limit=2,
        )
    )


def test_page_is_self_contained(vrun: Any, tmp_path: Path) -> None:
    report = _results(vrun).report
    out = tmp_path / "t.html"
    page = report.to_html(out)
    assert out.read_text() == page
    assert page.startswith("<!DOCTYPE html>")
    # no network: no external scripts, styles, fonts or images
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page
    assert "url(" not in page
    # the data island cannot be closed by a task's name
    assert page.count("</script>") == 2
    assert "<b>x</b>" not in page
    assert page.count('id="report-data"') == 1


def test_page_embeds_the_whole_report(vrun: Any) -> None:
    report = _results(vrun).report
    page = report.to_html()
    blob = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert blob is not None
    data = json.loads(blob.group(1))
    assert data == json.loads(report.to_json())
    assert [len(r["calls"]) for r in data["rows"]] == [1, 2, 1]


def test_rerendered_from_saved_json_is_the_same_page(vrun: Any, tmp_path: Path) -> None:
    report = _results(vrun).report
    path = report.save(tmp_path / "run.json")
    assert render_html(json.loads(path.read_text())) == report.to_html()
    assert RunReport.load(path).to_html() == report.to_html()


def test_title_and_summary_are_escaped() -> None:
    page = render_html({"version": 2, "wall": 0.0, "rows": []}, title="a <b> & c")
    assert "<title>a &lt;b&gt; &amp; c</title>" in page
    assert f"FULL={FULL_ROWS}" in page
