"""Every ```python block of the README runs as written."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index: int, tmp_path: Path) -> None:
    script = tmp_path / f"readme_block_{index}.py"
    script.write_text(BLOCKS[index])
    runpy.run_path(str(script), run_name="__main__")


TEXT = README.read_text()


def _section(title: str) -> str:
    start = TEXT.index(title)
    end = TEXT.find("\n#", start + len(title))
    return TEXT[start : end if end > 0 else None]


def test_readme_says_what_a_newcomer_needs() -> None:
    quick = _section("## Quick start")
    assert "exits 0" in quick  # the quick start's job is not "broken"
    assert "minutes" in quick  # how long the test suite takes
    assert "pip install 'forkjoin[examples]'" in _section("### Examples")
    # a file filled into one URL is not a list of URLs
    assert "urls.txt" not in TEXT
    assert "ids.txt" in _section("### `forkjoin map`")


def test_readme_documents_priority_and_shared_state_and_timeouts() -> None:
    assert "**higher runs first**" in _section("### `Fan`")
    shared = _section("### Shared state")
    assert "100 of 500" in shared
    assert "about 1,000 of\n5,000" in shared
    assert "map_reduce" in shared
    assert "lambda n=n: fetch(n)" in shared
    limits = _section("### What a timeout can stop")
    assert "sync function runs in a worker\nthread that nothing can interrupt" in limits
    assert "holds the whole event loop" in limits
