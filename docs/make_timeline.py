"""Re-make docs/timeline.png: a real run of examples/research/research.py, its HTML timeline
rendered by headless Chromium.

    .venv/bin/python docs/make_timeline.py
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples" / "research"))

import sources  # noqa: E402

import research  # noqa: E402


def main() -> None:
    with sources.serve_sources() as provided:
        results = asyncio.run(
            research.research(provided["base_url"], "noise-cancelling headphones")
        )
    print(results.report)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium is needed to take the screenshot (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "timeline.html"
        results.report.to_html(page, title="forkjoin run: examples/research/research.py")
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={tmp}/profile",
                "--window-size=1100,620",
                "--hide-scrollbars",
                f"--screenshot={ROOT / 'docs' / 'timeline.png'}",
                page.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=90,
        )


if __name__ == "__main__":
    main()
