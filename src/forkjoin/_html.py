"""The HTML timeline: one self-contained page drawn from a report's dict.

No network, no external scripts or fonts: the report's JSON is embedded in the page
(src/forkjoin/_timeline.html, shipped in the package) and a small inline script draws
it. One row per task, one bar per call (coloured by how the call ended; hedged calls
striped, retries as further bars on the same row), a concurrency line under it, details
on hover and click. Up to :data:`FULL_ROWS` tasks every row is in the
page; beyond that the rows are virtualised (only those in view exist) and an aggregate
chart (tasks ending per time slice, by status) sums up the run.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ._report import RunReport

__all__ = ["FULL_ROWS", "render_html"]

FULL_ROWS: Final = 1000


def _embed(data: Any) -> str:
    # inside <script type="application/json">: no "</script>" or "<!--" may appear
    return (
        json.dumps(data, separators=(",", ":"), allow_nan=False)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )


def render_html(report: RunReport | Mapping[str, Any], *, title: str | None = None) -> str:
    """The timeline page for a report, or its dict (``RunReport.to_dict()``, a saved JSON)."""
    from ._report import RunReport

    rep = report if isinstance(report, RunReport) else RunReport.from_dict(report)
    summary = "".join(
        f"<tr><th>{html.escape(k.strip())}</th><td>{html.escape(v)}</td></tr>"
        for k, v in rep.summary_rows()
    )
    page = resources.files("forkjoin").joinpath("_timeline.html").read_text(encoding="utf-8")
    name = title or f"forkjoin run{' ' + str(rep.run) if rep.run else ''}"
    fill = {
        "TITLE": html.escape(name),
        "SUMMARY": summary,
        "FULL_ROWS": str(FULL_ROWS),
        "DATA": _embed(rep.to_dict()),
    }
    # one pass, so a task named "__DATA__" stays a name
    return re.sub(r"__(TITLE|SUMMARY|FULL_ROWS|DATA)__", lambda m: fill[m.group(1)], page)
