"""The Dask backend's runner: calls run on the workers of a Dask cluster.

``DaskBackend()`` starts a ``distributed.LocalCluster`` (worker processes, one per core) for
the run and closes it afterwards; ``address=`` connects to a running scheduler; ``client=``
uses the caller's own ``distributed.Client``. Only the call moves: every policy, the
journal and the report stay in the caller.

- Each attempt is one task (``pure=False``, ``retries=0``); the calls that start in one pass
  of the loop are submitted together, as one graph (``client.map``), and while three
  quarters of the window are in flight the next calls wait for a quarter to be free (the
  cluster has two calls per thread or more to run meanwhile): the scheduler keeps a record of
  every graph it was sent for as long as it runs, so a graph per call would grow it (and a
  process that hosts it: the embedded cluster's) by each call. The embedded cluster's
  scheduler gives up on a call at its worker's first death (``allowed-failures`` 0), so a
  lost worker is one failed attempt (:class:`~forkjoin.WorkerLost`) for forkjoin's retry.
- Futures in flight are bounded: by the run's limits, and by a window of four per thread of
  the cluster (at least 32), so 100k tasks never become 100k futures on the scheduler; each future
  is released as soon as its result is in (a result kept on a worker would be recomputed
  if that worker died).
- Async functions run natively on the workers' event loops, stopped there by their own
  timeout (a cancelled future does not stop a coroutine on a worker), and by a broadcast
  when the run stops them (deadline, fail-fast, quorum, Ctrl-C); sync functions run on
  worker threads, which nothing can interrupt: a stopped sync call is abandoned (its
  Outcome ends at once, its late result is ignored).

Dask is imported when a run first uses the backend (``pip install 'forkjoin[dask]'``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from .._errors import InvalidPolicy, TaskTimeout, WorkerLost
from ._base import CallSite, is_async_callable
from ._worker import ERROR, TIMEOUT, VALUE, dumps_call, run_call, run_call_async, unpack

if TYPE_CHECKING:
    from ._dask import DaskBackend

__all__ = ["DaskRunner"]

WINDOW_PER_THREAD: Final = 4  # futures in flight per worker thread of the cluster...
WINDOW_MIN: Final = 32  # ...and at least this many
# Dask memoises the name prefix of every key it splits (dask.utils.key_split, up to 100,000
# keys): in a process hosting the scheduler, every call's key until then. A released key is
# never split again, so the memo is emptied after this many submissions.
KEY_MEMO_EVERY: Final = 2048


# -- in a worker --------------------------------------------------------------------------

# calls of async functions running on this worker, by key: what a broadcast cancels
_running: dict[str, asyncio.Task[Any]] = {}


def dask_call(payload: bytes) -> bytes:
    """A sync call on a worker thread."""
    from distributed import get_worker

    return run_call(payload, "dask", get_worker().address, fresh=False)


async def dask_call_async(payload: bytes, timeout: float | None, key: str) -> bytes:
    """An async call on the worker's event loop (its own timeout stops it there)."""
    from distributed import get_worker

    where = get_worker().address
    task = asyncio.ensure_future(run_call_async(payload, "dask", where, timeout))
    _running[key] = task
    try:
        return await task
    finally:
        _running.pop(key, None)


def _prefix(fn: Any) -> str:
    """The start of a call's key: its function's name, as Dask's own keys have. The
    scheduler keeps statistics per prefix for as long as it runs: a prefix per task (its
    name) would grow the scheduler with every task."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__name__", "")
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)[:40] or "call"


def _allowed_failures(dask_scheduler: Any) -> int:
    return int(dask_scheduler.allowed_failures)


def cancel_calls(keys: list[str]) -> int:
    """Cancel the calls of these keys running on this worker (sent to every worker)."""
    n = 0
    for key in keys:
        task = _running.get(key)
        if task is not None and not task.done():
            task.cancel()
            n += 1
    return n


# -- in the caller ------------------------------------------------------------------------

# a call waiting for the end of the loop's pass to be submitted: the future its Dask future
# is set on, whether it is async, its payload, its timeout and its key
_Queued = tuple["asyncio.Future[Any]", bool, bytes, "float | None", str]


class DaskRunner:
    """One run's connection to a cluster (and the cluster itself when it starts one)."""

    def __init__(self, backend: DaskBackend, limit: int | None = None) -> None:
        self._backend = backend
        self._limit = limit  # the run's: at most this many calls at once
        self._client: Any = None
        self._cluster: Any = None
        self._own_client = False
        self._native = True  # the client runs on the run's own loop
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._starting: asyncio.Future[None] | None = None
        self._window: asyncio.Semaphore | None = None
        self._size = 0
        self._threads = 0
        self._token = os.urandom(4).hex()  # this run's keys on a cluster others may share
        self._count = itertools.count()
        self._started_in: float | None = None
        self._workers: set[str] = set()
        self._abandoned = 0
        self._to_cancel: list[str] = []
        self._cancelling: set[asyncio.Task[Any]] = set()
        self._allowed_failures: int | None = None
        self._errors: tuple[type[BaseException], ...] = ()
        self._cancelled_error: type[BaseException] | None = None
        # calls started in this pass of the loop, submitted together at its end
        self._queued: list[_Queued] = []
        self._submitted = 0
        self._in_flight = 0  # calls submitted and not yet ended
        self._hold = 0  # while more than this many are in flight, the queued calls wait
        self._flushing = False
        self._forget_keys: Callable[[], None] | None = None

    # -- the cluster ----------------------------------------------------------------------

    async def start(self) -> int:
        if self._window is None:
            if self._starting is None:
                self._starting = asyncio.ensure_future(self._connect())
            # shielded: a call cancelled while the cluster starts does not stop the start
            await asyncio.shield(self._starting)
        return self._size

    async def _connect(self) -> None:
        import dask
        import dask.utils
        import distributed
        from distributed.client import FutureCancelledError
        from distributed.scheduler import KilledWorker

        began = time.perf_counter()
        b = self._backend
        self._errors = (KilledWorker,)
        self._forget_keys = getattr(dask.utils.key_split, "cache_clear", None)
        self._cancelled_error = FutureCancelledError
        if b.client is not None:
            client = b.client
            if client.asynchronous:
                loop = getattr(client.loop, "asyncio_loop", None)
                if loop is not asyncio.get_running_loop():
                    raise InvalidPolicy(
                        "DaskBackend.client: an asynchronous client must run on the run's "
                        "event loop (or give a synchronous one)"
                    )
            else:
                self._native = False  # its own loop, in its own thread
                self._client_loop = client.loop.asyncio_loop
        elif b.address is not None:
            try:
                client = await distributed.Client(  # type: ignore[no-untyped-call]
                    b.address,
                    asynchronous=True,
                    timeout=b.connect_timeout,
                    set_as_default=False,
                )
            except (OSError, TimeoutError) as e:
                raise ConnectionError(
                    f"DaskBackend: cannot reach the scheduler at {b.address}: {e}"
                ) from None
            self._own_client = True
        else:
            workers = b.workers or os.cpu_count() or 1
            # a worker's death is one failed attempt, for forkjoin's retry to decide on
            with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                self._cluster = await distributed.LocalCluster(  # type: ignore[no-untyped-call]
                    n_workers=workers,
                    threads_per_worker=b.threads or 1,
                    processes=True,
                    asynchronous=True,
                    host="127.0.0.1",
                    dashboard_address=":0",  # a free port: another cluster may have 8787
                    # what goes wrong with a call is in its Outcome: no log lines
                    silence_logs=logging.CRITICAL,
                )
            try:
                client = await distributed.Client(  # type: ignore[no-untyped-call]
                    self._cluster, asynchronous=True, set_as_default=False
                )
            except BaseException:
                await self._cluster.close()
                self._cluster = None
                raise
            self._own_client = True
            self._allowed_failures = 0
        self._client = client
        info = await self._identity()
        self._threads = int(info.get("total_threads") or 0) or sum(
            int(w.get("nthreads", 0)) for w in (info.get("workers") or {}).values()
        )
        if self._allowed_failures is None:
            self._allowed_failures = await self._scheduler_failures()
            if self._allowed_failures:
                warnings.warn(
                    f"DaskBackend: this scheduler runs a call again up to "
                    f"{self._allowed_failures} times when its worker dies, before forkjoin "
                    "hears of it (distributed.scheduler.allowed-failures: set it to 0 for "
                    "one attempt per lost worker)",
                    RuntimeWarning,
                    stacklevel=2,
                )
        # enough in flight for the scheduler to batch its messages (a window of twice the
        # threads halves the throughput of short calls, measured), never every task
        self._size = b.window or max(WINDOW_MIN, WINDOW_PER_THREAD * self._threads)
        self._window = asyncio.Semaphore(self._size)
        # calls wait to be submitted together only while three quarters of what the run
        # can have in flight are, and never while fewer than two per thread of the cluster
        most = min(self._size, self._limit or self._size)
        self._hold = max(most - max(1, most // 4), 2 * self._threads)
        self._started_in = time.perf_counter() - began

    def _on_client(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """An awaitable of a client method, on whichever loop the client runs."""
        if self._native:
            return method(*args, **kwargs)
        assert self._client_loop is not None
        coro = method(*args, asynchronous=True, **kwargs)
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._client_loop))

    async def _identity(self) -> dict[str, Any]:
        client = self._client
        if self._native:
            return dict(await client.scheduler.identity(n_workers=-1))
        return dict(await asyncio.to_thread(client.scheduler_info, n_workers=-1))

    async def _scheduler_failures(self) -> int | None:
        try:
            return int(await self._on_client(self._client.run_on_scheduler, _allowed_failures))
        except Exception:  # a scheduler that runs no such function: nothing to say
            return None

    def info(self) -> dict[str, Any]:
        if self._started_in is None:
            return {}
        b = self._backend
        kind = "LocalCluster" if self._cluster is not None else "client" if b.client else "address"
        out: dict[str, Any] = {
            "cluster": kind,
            "scheduler": self._scheduler_address(),
            "threads": self._threads,
            "window": self._size,
            "workers_used": len(self._workers),
            "started_in": round(self._started_in, 4),
        }
        if self._abandoned:
            out["abandoned"] = self._abandoned
        return out

    def _scheduler_address(self) -> str | None:
        with contextlib.suppress(Exception):
            return str(self._client.scheduler.address)
        return None

    def close(self) -> asyncio.Future[None] | None:
        if self._starting is None:
            return None
        return asyncio.ensure_future(self._shutdown())

    async def _shutdown(self) -> None:
        starting, self._starting = self._starting, None
        if starting is not None and not starting.done():
            starting.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*self._cancelling, return_exceptions=True)
        if self._own_client and self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()
        if self._cluster is not None:
            await self._cluster.close()
        self._client = self._cluster = None

    # -- one call -------------------------------------------------------------------------

    async def call(
        self, task: CallSite, fn: Callable[..., Any], args: tuple[Any, ...], timeout: float | None
    ) -> Any:
        task.where = "dask"  # until a worker has it
        payload = dumps_call(task.name, fn, args)  # TaskNotSerializable before anything runs
        if self._window is None:
            await self.start()
        window = self._window
        assert window is not None
        is_async = is_async_callable(fn)
        async with window:
            client = self._client
            key = f"{_prefix(fn)}-{self._token}-{next(self._count)}"
            submitted = self._submit(is_async, payload, timeout, key)
            fut: Any = None
            try:
                fut = await submitted
                try:
                    packed = await (fut if self._native else self._on_client(client.gather, fut))
                finally:
                    self._ended()
            except asyncio.CancelledError:
                if fut is None and submitted.done() and not submitted.cancelled():
                    fut = submitted.result()  # submitted as it was cancelled
                    self._ended()
                if fut is not None:
                    if is_async:
                        self._cancel_soon(key)
                    else:
                        task.abandoned = True  # it runs on in its worker thread; ignored
                        self._abandoned += 1
                    self._forget(fut)
                raise
            except self._errors as e:
                self._forget(fut)
                address = getattr(getattr(e, "last_worker", None), "address", None)
                if isinstance(address, str):
                    task.where = address
                raise WorkerLost(
                    f"task {task.name!r}: the Dask worker running it ({address}) died "
                    "during the call"
                ) from None
            except Exception as e:
                if fut is not None:
                    self._forget(fut)
                if self._cancelled_error is not None and isinstance(e, self._cancelled_error):
                    raise WorkerLost(
                        f"task {task.name!r}: the cluster cancelled its call ({e})"
                    ) from None
                raise
            self._forget(fut)
        kind, obj, (charged, usd, tokens), where = unpack(task.name, packed)
        task.where = where
        self._workers.add(where)
        if charged and task.account is not None:
            task.account.add(usd, tokens)
        if kind == VALUE:
            return obj
        if kind == TIMEOUT:
            raise TaskTimeout(f"task {task.name!r} timed out after {timeout:g}s")
        assert kind == ERROR
        raise obj

    def _submit(
        self, is_async: bool, payload: bytes, timeout: float | None, key: str
    ) -> asyncio.Future[Any]:
        """The Dask future of a call, once submitted: at the end of this pass of the loop,
        with every other call started in it."""
        slot: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued.append((slot, is_async, payload, timeout, key))
        self._flush_soon()
        return slot

    def _ended(self) -> None:
        self._in_flight -= 1
        if self._queued:
            self._flush_soon()

    def _flush_soon(self) -> None:
        if not self._flushing and self._in_flight <= self._hold:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Submit the calls queued in this pass: one graph for the sync ones, one for the
        async ones (a call cancelled meanwhile is not submitted)."""
        self._flushing = False
        queued, self._queued = self._queued, []
        client = self._client
        for is_async in (False, True):
            batch = [q for q in queued if q[1] is is_async and not q[0].done()]
            if not batch:
                continue
            keys = [q[4] for q in batch]
            payloads = [q[2] for q in batch]
            try:
                if is_async:
                    timeouts = [q[3] for q in batch]
                    futures = client.map(
                        dask_call_async, payloads, timeouts, keys, key=keys, pure=False, retries=0
                    )
                else:
                    futures = client.map(dask_call, payloads, key=keys, pure=False, retries=0)
            except Exception as e:  # a client closing under the run: each call fails with it
                for q in batch:
                    q[0].set_exception(e)
                continue
            for q, fut in zip(batch, futures, strict=True):
                q[0].set_result(fut)
            self._in_flight += len(batch)
            before, self._submitted = self._submitted, self._submitted + len(batch)
            if self._forget_keys is not None and (
                before // KEY_MEMO_EVERY != self._submitted // KEY_MEMO_EVERY
            ):
                self._forget_keys()

    def _forget(self, fut: Any) -> None:
        """Release a future at once: a result kept on a worker is recomputed if that worker
        dies, and the scheduler keeps every future some client holds."""
        fut.release()

    def _cancel_soon(self, key: str) -> None:
        """Cancel a running async call on its worker; the calls stopped in one loop pass
        (a stop of the run) go in one broadcast."""
        if not self._to_cancel:
            asyncio.get_running_loop().call_soon(self._broadcast)
        self._to_cancel.append(key)

    def _broadcast(self) -> None:
        keys, self._to_cancel = self._to_cancel, []
        client = self._client
        if client is None or not keys:
            return
        t = asyncio.ensure_future(self._on_client(client.run, cancel_calls, keys))
        self._cancelling.add(t)
        t.add_done_callback(self._cancelled)

    def _cancelled(self, t: asyncio.Task[Any]) -> None:
        self._cancelling.discard(t)
        if not t.cancelled():
            t.exception()  # a worker that left meanwhile: nothing left to stop there
