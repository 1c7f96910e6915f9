"""Translation through a chat model: helpers for spec.toml and translate.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common
import forkjoin as fj

LANGUAGES = {"spanish": "Spanish", "french": "French", "german": "German"}


def prompt(language: str) -> str:
    return f"Translate the user's text into {language}. Answer with the translation only."


@contextmanager
def endpoint(llm_base_url: str = "") -> Iterator[dict[str, str]]:
    """The given endpoint, or a local OpenAI-compatible stand-in for the run."""
    if llm_base_url:
        yield {"llm_base_url": llm_base_url}
        return
    with _common.llm_standin() as provided:
        yield provided


def translations(results: fj.Results) -> dict[str, Any]:
    """The aggregator: language -> translated text (the ones that finished)."""
    return {
        "translations": {n: _common.chat_content(v) for n, v in results.ok_values().items()},
        "missing": sorted(results.failures()),
    }
