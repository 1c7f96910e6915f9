from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from forkjoin.testing import run as run_virtual

T = TypeVar("T")


@pytest.fixture
def vrun() -> Any:
    """Run a coroutine on a virtual-clock loop: timers jump, nothing really sleeps."""

    def _run(coro: Coroutine[Any, Any, T]) -> T:
        return run_virtual(coro)

    return _run


def no_orphans() -> None:
    """Assert that only the calling task is left on the running loop."""
    current = asyncio.current_task()
    others = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert others == [], f"tasks left running: {others}"
