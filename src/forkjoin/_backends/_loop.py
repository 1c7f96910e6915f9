"""The event loop backend: an async callable is awaited where the task runs."""

from __future__ import annotations

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
        return await fn(*args)

    def close(self) -> None:
        return None


class LoopBackend:
    """Run async callables on the run's event loop (the default for them)."""

    name = "loop"
    _runner = LoopRunner()

    def open(self, run_name: str, limit: int | None) -> LoopRunner:
        return self._runner
