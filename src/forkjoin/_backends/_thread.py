"""The thread backend: a sync callable runs in a worker thread of the run's own pool.

A thread cannot be interrupted: a call cancelled by a timeout, the deadline or a stop is
*abandoned* (the task is marked so and nothing waits for it); its thread finishes the call
on its own. If a sync function returns an awaitable, that is awaited on the loop; an async
function given ``backend="thread"`` runs in the thread, on an event loop of its own (for
async code that blocks).

Why a pool of our own rather than ``concurrent.futures.ThreadPoolExecutor``: its threads
are joined when the interpreter exits, so one abandoned ``time.sleep(20)`` kept a process
alive 20 s after its run had returned (measured), and an abandoned call kept its thread
busy, so with ``limit=1`` the next task waited for it (and its duration counted the wait).
Here threads are daemons (nothing joins them at exit) and a thread stuck in an abandoned
call does not count against the pool's width: the next call gets a new thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import itertools
import queue
import threading
from collections.abc import Callable
from typing import Any, Final

from .._identity import register_frame
from .._policies._base import current_run
from ._base import CallSite, is_async_callable

__all__ = ["ThreadBackend", "ThreadRunner"]

# Threads for sync tasks when the run sets no limit. Threads are made lazily, so this is
# only a ceiling on how many blocking calls can be in flight at once.
DEFAULT_MAX_THREADS: Final = 256


class ThreadCall:
    """A blocking call for a worker thread, in the calling task's context (so
    current_fan() and charge() work there); ``finished`` tells an abandoned call."""

    __slots__ = ("abandoned", "args", "ctx", "finished", "fn", "name")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], name: str) -> None:
        self.fn = fn
        self.args = args
        self.name = name  # the task's
        self.ctx = contextvars.copy_context()
        self.finished = False
        self.abandoned = False

    def __call__(self) -> Any:
        return self.ctx.run(self.fn, *self.args)


_Job = tuple[Callable[[], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]


def _call_frame(f: dict[str, Any]) -> tuple[Any, str, Any, tuple[Any, ...]]:
    call = f["self"]
    return current_run.get(), call.name, call.fn, call.args


register_frame(ThreadCall.__call__.__code__, _call_frame)


def _in_own_loop(fn: Callable[..., Any], *args: Any) -> Any:
    return asyncio.run(fn(*args))


class ThreadRunner:
    """The run's threads, made on first use, at most as many busy ones as its limit."""

    __slots__ = ("_busy_stuck", "_closed", "_idle", "_jobs", "_lock", "_max", "_name",
                 "_numbers", "_threads", "_waiting")  # fmt: skip

    def __init__(self, run_name: str, limit: int | None) -> None:
        self._name = run_name
        self._max = limit or DEFAULT_MAX_THREADS
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0  # alive
        self._idle = 0  # threads waiting for a job
        self._waiting = 0  # jobs not yet taken by a thread
        self._busy_stuck = 0  # busy with an abandoned call: not counted against _max
        self._closed = False
        self._numbers = itertools.count(1)

    def submit(self, fn: Callable[[], Any]) -> asyncio.Future[Any]:
        """Run ``fn()`` in a thread of the pool; its result as a future of the calling loop."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            self._waiting += 1
            # a thread per job that no idle thread will take, up to the pool's width
            spawn = self._idle < self._waiting and self._threads - self._busy_stuck < self._max
            if spawn:
                self._threads += 1
                name = f"forkjoin-{self._name}-{next(self._numbers)}"
        self._jobs.put((fn, fut, loop))
        if spawn:
            threading.Thread(target=self._work, name=name, daemon=True).start()
        # a loop whose clock is virtual must not jump while a thread works for it
        track = getattr(loop, "track_thread_future", None)
        if track is not None:
            track(fut)
        return fut

    def _work(self) -> None:
        jobs = self._jobs
        lock = self._lock
        while True:
            with lock:
                self._idle += 1
            job = jobs.get()
            with lock:
                self._idle -= 1
                if job is not None:
                    self._waiting -= 1
            if job is None:
                with lock:
                    self._threads -= 1
                return
            fn, fut, loop = job
            error: BaseException | None = None
            result: Any = None
            try:
                result = fn()
            except BaseException as e:  # handed to the awaiting task, whatever it is
                error = e
            call = fn if isinstance(fn, ThreadCall) else None
            with lock:
                if call is not None:
                    call.finished = True
                    if call.abandoned:
                        self._busy_stuck -= 1
            # a closed loop raises RuntimeError: nobody waits for this any more
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, fut, result, error)

    def abandoned(self, call: ThreadCall) -> bool:
        """The awaiting task gave up on ``call``: True if it is still running (its thread
        then no longer counts against the pool's width)."""
        with self._lock:
            if call.finished:
                return False
            call.abandoned = True
            self._busy_stuck += 1
            return True

    async def call(
        self, task: CallSite, fn: Callable[..., Any], args: tuple[Any, ...], timeout: float | None
    ) -> Any:
        task.where = "thread"
        if is_async_callable(fn):
            fn, args = _in_own_loop, (fn, *args)
        call = ThreadCall(fn, args, task.name)
        try:
            result = await self.submit(call)
        except asyncio.CancelledError:
            if self.abandoned(call):
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
        """The run ended: idle threads exit now, busy ones after their call (as daemons,
        they never hold up the interpreter's exit)."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            threads = self._threads
        for _ in range(threads):
            self._jobs.put(None)


def _settle(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if fut.done():  # cancelled: the call was abandoned
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


class ThreadBackend:
    """Run sync callables in a thread pool of the run's own (the default for them)."""

    name = "thread"

    def open(self, run_name: str, limit: int | None) -> ThreadRunner:
        return ThreadRunner(run_name, limit)

    def __repr__(self) -> str:
        return "'thread'"
