"""The event loop backend: an async callable is awaited where the task runs.

A sync callable given ``backend="loop"`` is called inline, on the loop's thread: it blocks
the loop while it runs, so this is for cheap, non-blocking functions only (a thread costs
16-90 µs per call, an inline call well under one).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ._base import CallSite

__all__ = ["LoopBackend", "LoopRunner"]


class LoopRunner:
    """Awaits the call inline: no thread, no Task, no extra scheduling."""

    __slots__ = ()

    async def call(
        self, task: CallSite, fn: Callable[..., Any], args: tuple[Any, ...], timeout: float | None
    ) -> Any:
        value = fn(*args)
        if inspect.isawaitable(value):
            value = await value
        return value

    async def start(self) -> int | None:
        return None

    def info(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        return None


class LoopBackend:
    """Run calls on the run's event loop (the default for async callables)."""

    name = "loop"
    _runner = LoopRunner()

    def open(self, run_name: str, limit: int | None) -> LoopRunner:
        return self._runner

    def __repr__(self) -> str:
        return "'loop'"
