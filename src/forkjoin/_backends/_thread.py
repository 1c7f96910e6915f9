"""The thread backend: a sync callable runs in a worker thread of the run's own pool.

A thread cannot be interrupted: a call cancelled by a timeout, the deadline or a stop is
*abandoned* (the task is marked so and nothing waits for it); its thread finishes the call
on its own. If a sync function returns an awaitable, that is awaited on the loop; an async
function given ``backend="thread"`` runs in the thread, on an event loop of its own (for
async code that blocks).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from ._base import CallSite, is_async_callable

__all__ = ["ThreadBackend", "ThreadRunner"]

# Threads for sync tasks when the run sets no limit. Threads are made lazily, so this is
# only a ceiling on how many blocking calls can be in flight at once.
DEFAULT_MAX_THREADS: Final = 256


class ThreadCall:
    """A blocking call for a worker thread, in the calling task's context (so
    current_fan() and charge() work there); ``finished`` tells an abandoned call."""

    __slots__ = ("args", "ctx", "finished", "fn")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.ctx = contextvars.copy_context()
        self.finished = False

    def __call__(self) -> Any:
        try:
            return self.ctx.run(self.fn, *self.args)
        finally:
            self.finished = True


def _in_own_loop(fn: Callable[..., Any], *args: Any) -> Any:
    return asyncio.run(fn(*args))


class ThreadRunner:
    """The run's thread pool, made on first use, as wide as the run's limit."""

    __slots__ = ("_executor", "_limit", "_name")

    def __init__(self, run_name: str, limit: int | None) -> None:
        self._name = run_name
        self._limit = limit
        self._executor: ThreadPoolExecutor | None = None

    def executor(self) -> ThreadPoolExecutor:
        executor = self._executor
        if executor is None:
            executor = self._executor = ThreadPoolExecutor(
                max_workers=self._limit or DEFAULT_MAX_THREADS,
                thread_name_prefix=f"forkjoin-{self._name}",
            )
        return executor

    async def call(
        self, task: CallSite, fn: Callable[..., Any], args: tuple[Any, ...], timeout: float | None
    ) -> Any:
        task.where = "thread"
        if is_async_callable(fn):
            fn, args = _in_own_loop, (fn, *args)
        call = ThreadCall(fn, args)
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self.executor(), call)
        except asyncio.CancelledError:
            if not call.finished:
                task.abandoned = True  # it runs on in its thread; nothing waits for it
            raise
        if inspect.isawaitable(result):
            result = await result
        return result

    async def start(self) -> int | None:
        return None

    def info(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        if self._executor is not None:
            # never wait for abandoned blocking calls: their Outcomes are already written
            self._executor.shutdown(wait=False, cancel_futures=True)


class ThreadBackend:
    """Run sync callables in a thread pool of the run's own (the default for them)."""

    name = "thread"

    def open(self, run_name: str, limit: int | None) -> ThreadRunner:
        return ThreadRunner(run_name, limit)

    def __repr__(self) -> str:
        return "'thread'"
