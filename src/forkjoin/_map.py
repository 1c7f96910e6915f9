"""map / imap / map_reduce: one function over many items, lazily, under a run's policies.

No asyncio Task per item here: a fixed pool of ``limit`` workers pulls items from the
(sync or async) iterable and awaits each call inline. That keeps memory O(limit) however
long the input is, and saves the 5–10 µs and ~1 KB an asyncio Task costs per item (the
garbage collector scanning many live Tasks is much of ``asyncio.gather``'s cost at large N;
see bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from typing import Any, TypeVar

from ._errors import FanError, InvalidPolicy, TaskSkipped, stopped_error
from ._fan import Fan, _Rec
from ._outcome import Outcome, Results, Status, _fan_error
from ._policies._budget import Budget
from ._policies._group import Group
from ._policies._rate import RateLimit
from ._retry import Retry
from ._task import task

__all__ = ["imap", "map", "map_reduce"]

T = TypeVar("T")
A = TypeVar("A")

_OK = Status.OK


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class _Pool:
    """Workers that pull items, run them through the Fan's policies and deliver Outcomes."""

    def __init__(
        self,
        fan: Fan,
        fn: Callable[..., Any],
        items: Iterable[Any] | AsyncIterable[Any],
        limit: int | None,
        deliver: Callable[[Outcome], Any],
        window: int | None = None,
        on_value: Callable[[int, Any], None] | None = None,
        threaded: bool = False,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"expected a function to call on each item, got {fn!r}")
        self.fan = fan
        self.on_value = on_value
        self.threaded = threaded
        self.template = task(fn)
        self.deliver = deliver
        self.window = window
        self.next_index = 0
        self.released = 0  # ordered mode: items below this index have been consumed
        self.window_waiter: asyncio.Future[None] | None = None
        self.iter_error: BaseException | None = None
        self.sync_it: Iterator[Any] | None = None
        self.async_it: AsyncIterator[Any] | None = None
        self.lock: asyncio.Lock | None = None
        self.items = items
        self.limit = limit
        self.workers: list[asyncio.Task[None]] = []
        self.busy: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        items = self.items
        limit = self.limit
        if limit is None:
            # unlimited means every item at once, so the items are all in memory anyway
            if isinstance(items, AsyncIterable):
                items = [x async for x in items]
            elif not isinstance(items, list | tuple):
                items = list(items)
            limit = max(1, len(items))
        elif isinstance(items, list | tuple | range):
            limit = max(1, min(limit, len(items)))
        if isinstance(items, AsyncIterable):
            self.async_it = aiter(items)
            self.lock = asyncio.Lock()
        else:
            self.sync_it = iter(items)
        fan = self.fan
        fan._stop_listeners.append(self._on_stop)
        loop = fan._loop
        # no per-call policy, observer or ok-counting (quorum): no record per item needed
        bare = (
            fan._timeout is None
            and fan._retry is None
            and not fan._observers
            and fan._pol is None
            and fan._quorum is None
        )
        if (
            bare
            and self.threaded
            and self.on_value is not None
            and not self.template.is_async
            and self.sync_it is not None
            and fan._deadline is None  # a thread that pulls items cannot be stopped mid-call
        ):
            self.workers = [loop.create_task(self._work_threads(limit))]
            return
        work = self._work_plain if bare and self.template.is_async else self._work
        self.workers = [loop.create_task(work()) for _ in range(limit)]

    async def _work_threads(self, limit: int) -> None:
        """Blocking calls with no per-call policy: ``limit`` threads pull the items
        themselves, like ``ThreadPoolExecutor.map``, instead of a round trip through the
        loop for every call (bench workload 6). Failures become Outcomes afterwards, on the
        loop; a stop (fail_fast, cancellation) ends the pulling, never a call."""
        fan = self.fan
        loop = fan._loop
        fn = self.template.fn
        assert fn is not None
        it = self.sync_it
        assert it is not None
        on_value = self.on_value
        assert on_value is not None
        lock = threading.Lock()
        stop = threading.Event()
        failures: list[tuple[int, BaseException, float, float]] = []
        fail_fast = fan._fail_fast
        t0 = fan._t0

        def job() -> None:
            while not stop.is_set():
                with lock:
                    try:
                        item = next(it)
                    except StopIteration:
                        return
                    except Exception as e:  # the input itself failed: the whole map fails
                        self.iter_error = e
                        stop.set()
                        return
                    i = self.next_index
                    self.next_index = i + 1
                start = time.monotonic()
                try:
                    value = fn(item)
                    if inspect.isawaitable(value):  # lambda x: coro(x): await it on the loop
                        value = asyncio.run_coroutine_threadsafe(_awaited(value), loop).result()
                except Exception as e:
                    with lock:
                        failures.append((i, e, start, time.monotonic()))
                    if fail_fast:
                        stop.set()
                    continue
                with lock:
                    on_value(i, value)

        executor = fan._threads()
        calls = [loop.run_in_executor(executor, job) for _ in range(limit)]
        try:
            await asyncio.gather(*calls)
        except asyncio.CancelledError:
            stop.set()  # calls in progress finish in their threads; none is started after
            raise
        finally:
            # loop.time() is time.monotonic() on asyncio's loops: one clock for started/ended
            for i, error, started, ended in sorted(failures, key=lambda f: f[0]):
                self._plain_outcome(i, Status.FAILED, error, None, started - t0, ended - t0)
            if self.iter_error is not None:
                fan._stop("aborted")

    def _on_stop(self, reason: str) -> None:
        # items in progress are cancelled by the Fan itself (they are in fan._active);
        # workers waiting for an item, for the window or for the consumer stop here;
        # plain workers (no records) are cancelled here and read the reason from the Fan
        for w in self.workers:
            if w not in self.busy and not w.done():
                w.cancel()

    async def _pull(self) -> tuple[bool, Any]:
        """The next item as ``(True, item)``, or ``(False, None)`` at the end of the input."""
        try:
            if self.sync_it is not None:
                return True, next(self.sync_it)
            assert self.lock is not None
            assert self.async_it is not None
            async with self.lock:
                return True, await anext(self.async_it)
        except (StopIteration, StopAsyncIteration):
            return False, None
        except Exception as e:  # the input itself failed: the whole map fails
            self.iter_error = e
            self.fan._stop("aborted")
            return False, None

    async def _work_plain(self) -> None:
        """The plain path (async fn, no timeout, retry or observer): each call is awaited
        inline, with no record per item; map and map_reduce keep only the value (an
        Outcome is built only for a failure). This is what makes a limited map cheaper
        than a Task per item (bench workload 2)."""
        fan = self.fan
        fn = self.template.fn
        assert fn is not None
        on_value = self.on_value
        deliver = self.deliver
        window = self.window
        sync_it = self.sync_it
        loop = fan._loop
        t0 = fan._t0
        i = -1
        start = 0.0
        while fan._stop_reason is None:
            i = -1
            try:
                if window is not None:
                    await self._wait_for_window(window)
                if sync_it is not None:
                    item = next(sync_it)
                else:
                    more, item = await self._pull()
                    if not more:
                        return
                i = self.next_index
                self.next_index = i + 1
                start = loop.time()
                value = await fn(item)
            except StopIteration:
                return
            except asyncio.CancelledError:
                if i >= 0:
                    reason = fan._stop_reason or "cancelled"
                    status = Status.TIMED_OUT if reason == "deadline" else Status.CANCELLED
                    error = stopped_error(str(i), reason)
                    self._plain_outcome(i, status, error, reason, start - t0, loop.time() - t0)
                return
            except Exception as e:
                if i < 0:  # the input itself failed: the whole map fails
                    self.iter_error = e
                    fan._stop("aborted")
                    return
                self._plain_outcome(i, Status.FAILED, e, None, start - t0, loop.time() - t0)
                continue
            if on_value is not None:
                on_value(i, value)
                continue
            o = Outcome(
                str(i), _OK, value, None, None, 1, start - t0, loop.time() - t0, None, None, i
            )
            r = deliver(o)
            if r is not None:
                await r  # the consumer is behind: wait for room (a cancel here just ends us)

    def _plain_outcome(
        self,
        i: int,
        status: Status,
        error: BaseException,
        reason: str | None,
        started: float,
        ended: float,
    ) -> None:
        outcome = Outcome(str(i), status, None, error, reason, 1, started, ended, None, None, i)
        self.fan._settle(outcome)
        self.deliver(outcome)  # imap: never waits for room here; the next pull will

    async def _wait_for_window(self, window: int) -> None:
        """Ordered mode: wait until the next item is within ``window`` of the consumer."""
        while self.next_index >= self.released + window:
            self.window_waiter = self.fan._loop.create_future()
            await self.window_waiter

    def release(self, upto: int) -> None:
        """Ordered mode: the consumer has taken every item below ``upto``."""
        self.released = upto
        w = self.window_waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def _work(self) -> None:
        fan = self.fan
        t = self.template
        fn = t.fn
        is_async = t.is_async
        current = asyncio.current_task()
        assert current is not None
        busy = self.busy
        timeout = fan._timeout
        retry = fan._retry
        window = self.window
        try:
            while fan._stop_reason is None:
                if window is not None:
                    await self._wait_for_window(window)
                more, item = await self._pull()
                if not more:
                    return
                i = self.next_index
                self.next_index = i + 1
                rec = _Rec(str(i), fn, (item,), is_async, None, t, i, timeout, retry)
                rec.handle = current
                pol = None
                if fan._pol is not None:
                    fan._pol.prepare(rec)
                    pol = rec.pol
                    if pol is not None and not pol.admit():
                        skipped = Outcome(
                            rec.name,
                            Status.SKIPPED,
                            None,
                            TaskSkipped("budget"),
                            "budget",
                            index=i,
                        )
                        fan._settle(skipped)
                        r = self.deliver(skipped)
                        if r is not None:
                            await r
                        continue
                fan._running += 1
                fan._active.add(rec)
                busy.add(current)
                try:
                    outcome = await (fan._execute(rec) if pol is None else pol.execute())
                finally:
                    busy.discard(current)
                    fan._running -= 1
                    fan._active.discard(rec)
                rec.outcome = outcome
                fan._settle(outcome)
                r = self.deliver(outcome)
                if r is not None:
                    await r
        except asyncio.CancelledError:
            return


def _run_options(
    limit: int | None,
    deadline: float | None,
    timeout: float | None,
    retry: Retry | bool | None,
    on_error: str,
    observers: Iterable[Any],
    quorum: int | None = None,
    policies: dict[str, Any] | None = None,
) -> Fan:
    fan = Fan(
        **(policies or {}),
        limit=limit,
        deadline=deadline,
        timeout=timeout,
        retry=retry,
        on_error=on_error,
        observers=observers,
        quorum=quorum,
    )
    fan._pool = True
    return fan


def _pols(
    budget: Budget | None,
    rate: RateLimit | None,
    rates: Mapping[str, RateLimit] | None,
    groups: Mapping[str, Group] | None,
) -> dict[str, Any]:
    """The run-level policy keywords given to map/imap/map_reduce (as for fj.Fan)."""
    return {"budget": budget, "rate": rate, "rates": rates, "groups": groups}


def _observed(observers: Iterable[Any], progress: Any, items: Any) -> Iterable[Any]:
    """The observers plus the live display ``progress=`` asks for (total known if sized)."""
    if not progress:
        return observers
    from ._progress import with_progress

    total = len(items) if isinstance(items, list | tuple | range) else None
    return with_progress(observers, progress, total)


async def _finish_pool(pool: _Pool) -> None:
    """Wait for every worker; on outer cancellation stop the run first, then re-raise."""
    fan = pool.fan
    cancelled = False
    pending = [w for w in pool.workers if not w.done()]
    while pending:
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError:
            cancelled = True
            fan._stop("cancelled")
        pending = [w for w in pending if not w.done()]
    if cancelled:
        raise asyncio.CancelledError


async def map(
    fn: Callable[[T], Any],
    items: Iterable[T] | AsyncIterable[T],
    /,
    *,
    limit: int | None = None,
    deadline: float | None = None,
    timeout: float | None = None,
    retry: Retry | bool | None = None,
    on_error: str = "fail_fast",
    observers: Iterable[Any] = (),
    budget: Budget | None = None,
    rate: RateLimit | None = None,
    rates: Mapping[str, RateLimit] | None = None,
    groups: Mapping[str, Group] | None = None,
    progress: bool | Any = False,
) -> list[Any]:
    """``[await fn(item) for item in items]``, concurrently, values in input order.

    Items are pulled lazily (a generator or async iterable is fine) by at most ``limit``
    concurrent calls. If any call is not ok, raises :class:`FanError` carrying the Outcomes
    that were not ok (keyed by the item's index as a string). With the default
    ``on_error="fail_fast"`` the first failure stops the rest; ``"collect"`` runs all.
    """
    fan = _run_options(
        limit,
        deadline,
        timeout,
        retry,
        on_error,
        _observed(observers, progress, items),
        None,
        _pols(budget, rate, rates, groups),
    )
    values: list[Any] = [None] * len(items) if isinstance(items, list | tuple | range) else []

    def on_value(i: int, value: Any) -> None:
        if i >= len(values):
            values.extend([None] * (i + 1 - len(values)))
        values[i] = value

    await _run_for_values(fan, fn, items, limit, on_value, threaded=True)
    return values


async def _run_for_values(
    fan: Fan,
    fn: Callable[..., Any],
    items: Iterable[Any] | AsyncIterable[Any],
    limit: int | None,
    on_value: Callable[[int, Any], None],
    *,
    threaded: bool = False,
) -> None:
    """Run a map-like pool that hands each ok value to ``on_value``; raise FanError with
    the Outcomes that were not ok (in input order) once it has ended."""
    failed: dict[str, Outcome] = {}

    def deliver(o: Outcome) -> None:
        if o.status is _OK:
            on_value(o.index, o.value)
        else:
            failed[o.name] = o

    await _run_pool(_Pool(fan, fn, items, limit, deliver, on_value=on_value, threaded=threaded))
    if failed:
        ordered = dict(sorted(failed.items(), key=lambda kv: kv[1].index))
        raise _fan_error(Results(ordered), ordered)


async def _run_pool(pool: _Pool) -> None:
    fan = pool.fan
    fan._open()
    try:
        await pool.start()
        await _finish_pool(pool)
    finally:
        fan._close()
    if pool.iter_error is not None:
        raise pool.iter_error


async def map_reduce(
    fn: Callable[[T], Any],
    items: Iterable[T] | AsyncIterable[T],
    reducer: Callable[[A, Any], A],
    initial: A,
    /,
    *,
    limit: int | None = None,
    deadline: float | None = None,
    timeout: float | None = None,
    retry: Retry | bool | None = None,
    on_error: str = "fail_fast",
    observers: Iterable[Any] = (),
    budget: Budget | None = None,
    rate: RateLimit | None = None,
    rates: Mapping[str, RateLimit] | None = None,
    groups: Mapping[str, Group] | None = None,
    progress: bool | Any = False,
) -> A:
    """Fold ``reducer(acc, value)`` over the values of ``fn(item)`` as they complete.

    Streaming: values are folded in completion order and not kept, so memory is O(limit).
    The reducer should be associative and commutative (``operator.add``, a Counter update).
    Raises :class:`FanError` if any call is not ok.
    """
    fan = _run_options(
        limit,
        deadline,
        timeout,
        retry,
        on_error,
        _observed(observers, progress, items),
        None,
        _pols(budget, rate, rates, groups),
    )
    acc: list[Any] = [initial]
    reducer_error: list[BaseException] = []

    def on_value(i: int, value: Any) -> None:
        try:
            acc[0] = reducer(acc[0], value)
        except Exception as e:
            if not reducer_error:
                reducer_error.append(e)
            fan._stop("aborted")

    try:
        await _run_for_values(fan, fn, items, limit, on_value)
    except FanError:
        if not reducer_error:
            raise
    if reducer_error:
        raise reducer_error[0]  # the reducer's own error, not the items it stopped
    result: A = acc[0]
    return result


async def imap(
    fn: Callable[[T], Any],
    items: Iterable[T] | AsyncIterable[T],
    /,
    *,
    limit: int | None = None,
    ordered: bool = False,
    deadline: float | None = None,
    timeout: float | None = None,
    retry: Retry | bool | None = None,
    on_error: str = "collect",
    quorum: int | None = None,
    observers: Iterable[Any] = (),
    budget: Budget | None = None,
    rate: RateLimit | None = None,
    rates: Mapping[str, RateLimit] | None = None,
    groups: Mapping[str, Group] | None = None,
    progress: bool | Any = False,
) -> AsyncIterator[Outcome]:
    """Yield an :class:`Outcome` per item (``outcome.index`` is the item's position).

    In completion order, or input order with ``ordered=True``. Memory is O(limit): at most
    ``limit`` calls run, and workers wait while the consumer has not taken what they made.
    Stopping early (``break``) cancels the calls in flight.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
        raise InvalidPolicy(f"limit: expected a positive integer or None, got {limit!r}")
    fan = _run_options(
        limit,
        deadline,
        timeout,
        retry,
        on_error,
        _observed(observers, progress, items),
        quorum,
        _pols(budget, rate, rates, groups),
    )
    # outcomes made but not yet taken: O(limit) memory
    capacity = 2 * max(1, limit or 1024)
    low_water = capacity // 2
    ready: deque[Outcome] = deque()
    buffer: dict[int, Outcome] = {}
    waiters: dict[str, asyncio.Future[None] | None] = {"consumer": None}
    space: deque[asyncio.Future[None]] = deque()
    loop = asyncio.get_running_loop()

    def wake_consumer() -> None:
        w = waiters["consumer"]
        if w is not None and not w.done():
            w.set_result(None)

    def deliver_unordered(o: Outcome) -> Any:
        ready.append(o)
        wake_consumer()
        if len(ready) >= capacity:
            # one shared future for every worker waiting for room
            if not space or space[-1].done():
                space.append(loop.create_future())
            return space[-1]
        return None

    def deliver_ordered(o: Outcome) -> None:
        buffer[o.index] = o
        wake_consumer()

    pool = _Pool(
        fan,
        fn,
        items,
        limit,
        deliver_ordered if ordered else deliver_unordered,
        window=(2 * capacity) if ordered else None,
    )
    fan._open()
    try:
        await pool.start()
        for w in pool.workers:
            w.add_done_callback(lambda _w: wake_consumer())
        next_index = 0
        while True:
            if ordered:
                if next_index in buffer:
                    o = buffer.pop(next_index)
                    next_index += 1
                    pool.release(next_index)
                    yield o
                    continue
            elif ready:
                o = ready.popleft()
                if space and len(ready) <= low_water:
                    # wake the waiting workers together once half the room is free, not
                    # one per item taken: a future per item costs more than the item
                    while space:
                        f = space.popleft()
                        if not f.done():
                            f.set_result(None)
                yield o
                continue
            if all(w.done() for w in pool.workers):
                if ordered and buffer:  # only after a stop can the buffer hold gaps
                    next_index = min(buffer)
                    continue
                break
            consumer_waiter = loop.create_future()
            waiters["consumer"] = consumer_waiter
            await consumer_waiter
    finally:
        fan._stop("cancelled")  # a no-op when the run already ended or stopped
        try:
            await _finish_pool(pool)
        finally:
            fan._close()
    if pool.iter_error is not None:
        raise pool.iter_error
