"""Document analysis tasks: sentiment, entities, key phrases and a summary of one document.

Offline with small real libraries (vaderSentiment, yake); ``prepare`` also serves the
LLM path of spec-llm.toml (a local OpenAI-compatible stand-in unless a URL is given).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import _common  # noqa: E402
import forkjoin as fj  # noqa: E402


def read(path: str) -> str:
    """The document's text (a path relative to this folder works too)."""
    p = Path(path)
    if not p.exists() and (HERE / p).exists():
        p = HERE / p
    return p.read_text()


def sentiment(path: str) -> dict[str, Any]:
    return _common.sentiment(read(path))


def entities(path: str) -> list[str]:
    return _common.entities(read(path))


def key_phrases(path: str) -> list[str]:
    return _common.key_phrases(read(path))


def summary(path: str) -> str:
    return _common.summary(read(path))


def combined(results: fj.Results) -> dict[str, Any]:
    """The aggregator: one record of whatever finished (keyed, never shifted)."""
    return {"analysis": results.ok_values(), "missing": sorted(results.failures())}


@contextmanager
def prepare(doc: str, llm_base_url: str = "") -> Iterator[dict[str, str]]:
    """Read the document; start the local stand-in model unless a URL was given."""
    text = read(doc)
    if llm_base_url:
        yield {"document": text, "llm_base_url": llm_base_url}
        return
    with _common.llm_standin() as provided:
        yield {"document": text, **provided}


def llm_combined(results: fj.Results) -> dict[str, Any]:
    """The aggregator of the LLM path: each task's answer text."""
    return {
        "analysis": {n: _common.chat_content(v) for n, v in results.ok_values().items()},
        "missing": sorted(results.failures()),
    }
