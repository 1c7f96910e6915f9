"""The process backend's pool: calls run in worker processes of the run's own.

Built on pebble's ``ProcessPool``: a worker that dies ends only its own call (with
``ProcessExpired``, here :class:`~forkjoin.WorkerLost`) and is replaced, where a
``concurrent.futures`` pool breaks as a whole; and on cloudpickle, so lambdas, closures and
functions of ``__main__`` travel by value. loky reuses workers robustly but cannot kill the
worker of one call, which is how a call is stopped here.

A call the run stops (its timeout, the deadline, fail-fast, quorum, Ctrl-C) is stopped by
killing the worker running it. pebble's own cancel kills on its manager's next check (every
0.1 s) and may hit a worker that has just taken its next call, so each call has a slot in a
small array shared with the workers: under one lock, a worker writes its pid there while
the call runs and the caller kills exactly that pid, or marks a call no worker has taken yet
so that it is skipped. A slot is reused only once pebble has settled its call, and the
slots bound how many calls are in the pool at once (two per worker).

pebble's manager thread polls its workers every ``sleep_unit`` seconds (0.1 by default), and
``join`` waits for that thread's nap to end: about 90 ms of every run's end, which was 80 %
of a ten-call run (110 ms against 17 ms with 10 ms naps). The pool lowers the nap to
:data:`_NAP` for the process (pebble's maintainer names ``CONSTS.sleep_unit`` as the way to
change it, noxdafox/pebble#65); a nap costs the manager thread a few microseconds of checks.

Workers die with the caller (``PR_SET_PDEATHSIG`` on Linux), ignore Ctrl-C (pebble; the
caller stops them) and drop the signal handling and event loop a forked worker inherits.
pebble and cloudpickle are imported when a run first uses the backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from .._errors import WorkerLost
from ._base import CallSite
from ._worker import ERROR, VALUE, dumps_call, run_call, unpack

if TYPE_CHECKING:
    from ._process import ProcessBackend

__all__ = ["ProcessRunner"]

# a slot's state, or the pid of the worker running its call
_QUEUED: Final = 0
_CANCELLED: Final = -1
_DONE: Final = -2
_LOCK_WAIT: Final = 5.0  # seconds; the lock is only ever held for a few instructions
_ACK_WAIT: Final = 0.001  # seconds between looks while pebble has not seen a call start
_NAP: Final = 0.01  # seconds between pebble's looks at its workers (its default: 0.1)


def _start_method(chosen: str | None) -> str:
    import multiprocessing

    if chosen is not None:
        return chosen
    if sys.platform != "darwin" and "fork" in multiprocessing.get_all_start_methods():
        return "fork"
    return multiprocessing.get_start_method()


class ProcessRunner:
    """One run's pool: made when the run starts (or its first call does), stopped when the
    run ends."""

    def __init__(self, backend: ProcessBackend) -> None:
        self.workers = backend.workers or os.cpu_count() or 1
        self.window = 2 * self.workers  # calls in the pool at once: one running, one ready
        self._method = backend.start_method
        self._pool: Any = None
        self._lock: Any = None
        self._slots: Any = None
        self._free = list(range(self.window - 1, -1, -1))
        self._waiting: deque[asyncio.Future[int]] = deque()
        self._started_in: float | None = None
        self._pids: set[int] = set()
        self._killed = 0

    # -- the pool -------------------------------------------------------------------------

    def _open(self) -> Any:
        import multiprocessing

        import pebble
        from pebble.common.types import CONSTS

        CONSTS.sleep_unit = min(CONSTS.sleep_unit, _NAP)  # a lower one set by others stays
        method = self._method = _start_method(self._method)
        ctx = multiprocessing.get_context(method)
        self._lock = ctx.Lock()
        self._slots = ctx.RawArray("i", self.window)
        # a forkserver's workers are its children, not ours: they cannot die with us
        parent = os.getpid() if method != "forkserver" else None
        self._pool = pebble.ProcessPool(
            max_workers=self.workers,
            initializer=init_worker,
            initargs=(self._lock, self._slots, parent),
            context=ctx,
        )
        return self._pool

    async def start(self) -> int:
        if self._pool is None:
            began = time.perf_counter()
            pool = self._open()
            # one call through the pool: its workers are up and taking calls
            await asyncio.wrap_future(pool.schedule(os.getpid))
            self._started_in = time.perf_counter() - began
        return self.window

    def info(self) -> dict[str, Any]:
        if self._started_in is None:
            return {}
        return {
            "workers": self.workers,
            "start_method": self._method,
            "processes": len(self._pids),  # distinct workers that ran calls (respawns count)
            "killed": self._killed,
            "started_in": round(self._started_in, 4),
        }

    def close(self) -> asyncio.Future[None] | None:
        pool, self._pool = self._pool, None
        if pool is None:
            return None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            _shutdown(pool)
            return None
        # pebble's join waits for its threads and workers: not on the loop's thread
        return loop.run_in_executor(None, _shutdown, pool)

    # -- one call -------------------------------------------------------------------------

    async def call(
        self, task: CallSite, fn: Callable[..., Any], args: tuple[Any, ...], timeout: float | None
    ) -> Any:
        task.where = "process"  # until a worker has it
        payload = dumps_call(task.name, fn, args)  # TaskNotSerializable before anything runs
        if self._pool is None:
            await self.start()
        slot = self._free.pop() if self._free else await self._slot()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[str, Any]] = loop.create_future()
        self._slots[slot] = _QUEUED  # no worker looks at a free slot
        try:
            fut = self._pool.schedule(run_in_process, (payload, slot))
        except BaseException:
            self._release(slot)
            raise
        fut.add_done_callback(functools.partial(self._ended, loop, slot, done))
        try:
            how, got = await done
        except asyncio.CancelledError:
            where = self._stop(slot, fut)
            if where is not None:
                task.where = where
            raise
        if how == "lost":
            pid, code = got
            task.where = f"pid {pid}"
            raise WorkerLost(
                f"task {task.name!r}: its worker process (pid {pid}) died "
                f"(exit code {code}) during the call"
            )
        if how == "error":
            raise got
        kind, obj, (charged, usd, tokens), where = unpack(task.name, got)
        task.where = where
        if where.startswith("pid "):
            self._pids.add(int(where[4:]))
        if charged and task.account is not None:
            task.account.add(usd, tokens)
        if kind == VALUE:
            return obj
        assert kind == ERROR
        raise obj

    async def _slot(self) -> int:
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release(waiter.result())  # handed a slot just as it was cancelled
            raise

    def _release(self, slot: int) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(slot)
                return
        self._free.append(slot)

    def _ended(
        self,
        loop: asyncio.AbstractEventLoop,
        slot: int,
        done: asyncio.Future[tuple[str, Any]],
        fut: Any,
    ) -> None:
        # in one of pebble's threads
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
            loop.call_soon_threadsafe(self._settle, slot, done, fut)

    def _settle(self, slot: int, done: asyncio.Future[tuple[str, Any]], fut: Any) -> None:
        """pebble settled a call: its slot is free again; its result goes to the caller if
        the caller still waits."""
        self._release(slot)
        if done.done():
            return
        from pebble import ProcessExpired

        error = fut.exception()
        if error is None:
            done.set_result(("value", fut.result()))
        elif isinstance(error, ProcessExpired):
            self._pids.add(error.pid)
            done.set_result(("lost", (error.pid, error.exitcode)))
        else:  # the pool itself failed (pebble raises, never hangs)
            done.set_result(("error", WorkerLost(f"the process pool failed: {error!r}")))

    def _stop(self, slot: int, fut: Any) -> str | None:
        """The caller stopped a call: kill the worker running it, or mark it so that no
        worker runs it. Returns where it was running."""
        if not self._lock.acquire(timeout=_LOCK_WAIT):  # a worker died holding it
            return None
        try:
            state = self._slots[slot]
            if state == _QUEUED:
                self._slots[slot] = _CANCELLED
                return None
            if state <= 0:
                return None  # it has just ended; its result is ignored
            if fut.running():
                # pebble knows this worker runs this call: its death ends this call only
                with contextlib.suppress(ProcessLookupError):
                    os.kill(state, signal.SIGKILL)
                self._killed += 1
            else:
                # pebble has not seen the call start yet: a worker it cannot tie to a call
                # would be a lost worker to it, so wait for that, then kill
                asyncio.get_running_loop().call_later(_ACK_WAIT, self._stop, slot, fut)
            return f"pid {state}"
        finally:
            self._lock.release()


def _shutdown(pool: Any) -> None:
    pool.stop()
    pool.join()


# -- in the worker ------------------------------------------------------------------------

_shared: tuple[Any, Any] | None = None


def init_worker(lock: Any, slots: Any, parent: int | None) -> None:
    """A new worker: its slots, and nothing of the caller's signal handling or event loop
    (a forked worker inherits both)."""
    global _shared
    _shared = (lock, slots)
    asyncio.events._set_running_loop(None)
    with contextlib.suppress(ValueError, OSError):
        signal.set_wakeup_fd(-1)  # the caller's loop would hear this worker's signals
    for sig in signal.valid_signals():
        if sig in (signal.SIGINT, signal.SIGTERM):
            continue  # pebble's: ignore Ctrl-C, exit cleanly when stopped
        with contextlib.suppress(OSError, ValueError, TypeError):
            if callable(signal.getsignal(sig)):
                signal.signal(sig, signal.SIG_DFL)
    if parent is not None:
        _die_with(parent)


def _die_with(parent: int) -> None:
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the caller died before the line above
        os._exit(1)


def run_in_process(payload: bytes, slot: int) -> bytes | None:
    """One call in a worker: its pid in its slot while it runs (None: it was stopped
    before it started)."""
    assert _shared is not None
    lock, slots = _shared
    pid = os.getpid()
    with _held(lock):
        if slots[slot] == _CANCELLED:
            return None
        slots[slot] = pid
    try:
        return run_call(payload, "process", f"pid {pid}", fresh=True)
    finally:
        with _held(lock):
            slots[slot] = _DONE


@contextlib.contextmanager
def _held(lock: Any) -> Any:
    got = lock.acquire(timeout=_LOCK_WAIT)
    try:
        yield
    finally:
        if got:
            lock.release()
