"""map / imap / map_reduce: one function over many items, lazily, under a run's policies.

No asyncio Task per item here: a fixed pool of workers pulls items from the (sync or
async) iterable and awaits each call inline. That keeps memory O(limit) however long the
input is, and saves the 5–10 µs and ~1 KB an asyncio Task costs per item (the garbage
collector scanning many live Tasks is much of ``asyncio.gather``'s cost at large N; see
bench/RESULTS.md). The pool is a client of the engine, not a second one: its workers hold
admission slots, items with policies go through the same call pipeline and every Outcome
through the same recording path; a plain ok item (no policy, nobody listening) is only
counted, in bulk, per worker.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import threading
import time
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
)
from typing import Any, Final, Generic, TypeVar, Unpack

from ._call import FATAL, TaskState, outcome_of, skipped
from ._engine import ABANDON_GRACE, Engine
from ._errors import FanError, InvalidPolicy, stopped_error
from ._events import AttemptStarted
from ._identity import register_frame
from ._options import RunKwargs, build_options
from ._outcome import Attempt, Outcome, Results, Status, fan_error
from ._policies._base import WAITING
from ._record import SLOWEST
from ._report import RunReport
from ._task import Task, is_async_callable
from ._validate import check_group_name

# the bulk path times each call while calls take at least this long on average (a clock
# read is then under 0.5% of a call), and one call in SAMPLE otherwise
TIMED_ABOVE: Final = 20e-6
SAMPLE: Final = 32

__all__ = ["OutcomeStream", "Values", "imap", "map", "map_reduce", "map_reduce_sync", "map_sync"]

T = TypeVar("T")
A = TypeVar("A")

_OK: Final = Status.OK


class Values(list[T]):
    """The values ``fj.map`` returns, in input order: a list, with the run's ``report``."""

    report: RunReport | None = None


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class _Pool:
    """Workers that pull items, call them and record their Outcomes."""

    def __init__(
        self,
        engine: Engine,
        fn: Callable[..., Any],
        items: Iterable[Any] | AsyncIterable[Any],
        group: str | None,
        *,
        store: list[Any] | None = None,
        on_value: Callable[[int, Any], None] | None = None,
        window: int | None = None,
        threaded: bool = False,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"expected a function to call on each item, got {fn!r}")
        self.engine = engine
        self.fn = fn
        self.items = items
        self.group = group
        self.opts = Task(fn, group=group) if group is not None else Task(fn)
        self.is_async = is_async_callable(fn)
        self.plan = engine.planner.plan(self.opts, group, self.is_async)
        self.store = store
        self.on_value = on_value
        self.threaded = threaded
        self.window = window
        self.counter = itertools.count()
        self.next_index = 0  # ordered mode: the items below this index have been pulled
        self.released = 0  # ordered mode: items below this index have been consumed
        self.window_waiter: asyncio.Future[None] | None = None
        self.iter_error: BaseException | None = None
        self.sync_it: Iterator[Any] | None = None
        self.async_it: AsyncIterator[Any] | None = None
        self.lock: asyncio.Lock | None = None
        self.workers: list[asyncio.Task[None]] = []
        self.current: dict[asyncio.Task[Any], TaskState] = {}  # policied items in flight
        self.seen = 0  # items pulled
        self.sampled = False  # the bulk path timed only some calls
        # (index, item) pairs pulled by the bulk workers, shared: no counter per item
        self.pairs: Iterator[tuple[int, Any]] | None = None
        # what the workers pull from: the input, or (journaled) what the journal leaves
        self.pull: Callable[[], Awaitable[tuple[bool, int, Any]]] = self._pull

    async def start(self) -> None:
        engine = self.engine
        items = self.items
        adm = engine.admission
        group = self.group
        size = None
        if isinstance(items, list | tuple | range):
            size = len(items)
        capacity = _capacity(engine, group)
        runner = self.plan.runner
        if capacity is None and self.plan.backend not in ("loop", "thread") and runner:
            # a pool or a cluster: as many at once as it takes, never every item
            capacity = await runner.start()
        if capacity is None:
            # unlimited means every item at once, so the items are all in memory anyway
            if isinstance(items, AsyncIterable):
                items = [x async for x in items]
            elif not isinstance(items, list | tuple):
                items = list(items)
            size = len(items)
            capacity = max(1, size)
        elif size is not None:
            capacity = max(1, min(capacity, size))
        if isinstance(items, AsyncIterable):
            self.async_it = aiter(items)
            self.lock = asyncio.Lock()
        else:
            self.sync_it = iter(items)
        engine.on_stop(self._on_stop)
        loop = engine.loop
        dynamic = group is not None and group in engine.options.adaptive
        # the workers' slots: held for a worker's life, or per call under an adaptive limit
        self.dynamic = dynamic
        plan = self.plan
        events = engine.events
        journaled = engine.session is not None
        if journaled:
            # every Outcome is recorded (and journaled), and items the journal holds ok are
            # answered from it instead of being called
            self.pull = self._pull_resuming
        bulk = (
            plan.plain
            and not journaled
            and self.on_value is not None
            and not events.task_finished
            and engine.options.quorum is None
        )
        if (
            self.threaded
            and not journaled
            and not self.is_async
            and self.on_value is not None
            and self.sync_it is not None
            and not dynamic
            and _threadable(engine, plan)
        ):
            for _ in range(capacity):
                adm.take(group)
            self.workers = [loop.create_task(self._work_threads(capacity))]
            return
        if plan.plain:
            work = self._work_plain
            if self.sync_it is not None and self.window is None and not journaled:
                self.pairs = enumerate(self.sync_it)
                if bulk:
                    work = self._work_bulk
        else:
            work = self._work
        self.workers = [loop.create_task(self._worker(work)) for _ in range(capacity)]

    async def _worker(self, work: Callable[[], Any]) -> None:
        adm = self.engine.admission
        group = self.group
        if self.dynamic:
            await work()
            return
        adm.take(group)
        try:
            await work()
        finally:
            adm.release(group)

    def _on_stop(self, reason: str) -> None:
        # items in progress end as stopped; workers waiting for an item, the window or the
        # consumer end too: cancelling every worker does both (each reads the reason)
        for st in list(self.current.values()):
            st.cancel_reason = reason
        for w in self.workers:
            if not w.done():
                w.cancel()

    # -- pulling -------------------------------------------------------------------------

    async def _pull(self) -> tuple[bool, int, Any]:
        """The next item as ``(True, index, item)``, or ``(False, -1, None)`` at the end."""
        try:
            if self.window is not None:
                await self._wait_for_window(self.window)
            if self.sync_it is not None:
                item = next(self.sync_it)
            else:
                assert self.lock is not None
                assert self.async_it is not None
                async with self.lock:
                    item = await anext(self.async_it)
        except (StopIteration, StopAsyncIteration):
            return False, -1, None
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the input itself failed: the whole map fails
            self.iter_error = e
            self.engine.stop("aborted")
            return False, -1, None
        i = next(self.counter)
        self.next_index = i + 1
        self.seen = i + 1
        return True, i, item

    async def _pull_resuming(self) -> tuple[bool, int, Any]:
        """:meth:`_pull` in a journaled run: an item whose ok Outcome the journal holds for
        the same call (its index and fingerprint) is recorded as resumed, not returned."""
        engine = self.engine
        session = engine.session
        assert session is not None
        fingerprint = session.fingerprint
        resume = session.resume
        record = engine.recorder.record
        on_value = self.on_value
        fn = self.fn
        group = self.group
        while True:
            more, i, item = await self._pull()
            if not more:
                return more, i, item
            outcome = resume(i, fingerprint(fn, (item,)), group, i)
            if outcome is None:
                return more, i, item
            if on_value is not None and outcome.status is _OK:
                on_value(i, outcome.value)
            r = record(outcome)
            if r is not None:
                await r  # the consumer is behind
            if engine.stop_reason is not None:
                return False, -1, None

    async def _wait_for_window(self, window: int) -> None:
        """Ordered mode: wait until the next item is within ``window`` of the consumer."""
        while self.next_index >= self.released + window:
            # one future shared by every waiting worker: release() wakes them all
            w = self.window_waiter
            if w is None or w.done():
                w = self.window_waiter = self.engine.loop.create_future()
            await w

    def release(self, upto: int) -> None:
        """Ordered mode: the consumer has taken every item below ``upto``."""
        self.released = upto
        w = self.window_waiter
        if w is not None and not w.done():
            w.set_result(None)

    # -- the workers ---------------------------------------------------------------------

    async def _work_bulk(self) -> None:
        """map / map_reduce of an async fn with no policy, over a sync iterable, nobody
        listening per item: each call is awaited inline, an ok value is stored and only
        counted (per worker, folded into the run's figures at the end); only a failure
        becomes an Outcome. This is what makes a limited map cheaper than a Task per item
        (bench workload 2).

        Reading the clock costs about a third of a trivial call, so calls are timed one by
        one only while they are slow enough for that not to matter (TIMED_ABOVE): faster
        ones are timed one in SAMPLE (the report says so), while the time spent in all of
        them is still counted exactly, per batch.
        """
        engine = self.engine
        fn = self.fn
        pairs = self.pairs
        assert pairs is not None
        store = self.store
        on_value = self.on_value
        assert on_value is not None
        clock = engine.clock
        t0 = engine.t0
        busy = engine.busy
        spent = 0.0
        slow: list[tuple[float, str]] = []
        slow_min = -1.0
        every = 1  # time one call in `every`
        left = 1  # calls until the next timed one
        counted = 0  # calls before the last timed one (nothing is counted per call)
        batch_counted = 0  # `counted` when the current batch began
        others = 0  # calls that did not end ok
        first = batch_start = clock()
        i = -1
        try:
            for i, item in pairs:
                left -= 1
                if left:  # not timed: the common case for trivial calls
                    try:
                        value = await fn(item)
                    except Exception as e:
                        others += 1
                        now = clock()
                        self._failed(i, e, now - t0, now - t0)
                        if engine.stop_reason is not None:
                            return
                        continue
                    if store is not None:
                        store[i] = value
                    else:
                        on_value(i, value)
                    continue
                counted += every
                left = every
                # the busy counter inline: this path runs once per call of slow calls,
                # where a round of calls waking together pays for every step of each
                busy.now += 1
                if busy.now > busy.peak:
                    busy.peak = busy.now
                start = clock()
                try:
                    value = await fn(item)
                except Exception as e:
                    busy.now -= 1
                    others += 1
                    self._failed(i, e, start - t0, clock() - t0)
                    if engine.stop_reason is not None:
                        return
                    continue
                busy.now -= 1
                now = clock()
                d = now - start
                if d > slow_min:
                    if len(slow) < SLOWEST:
                        heapq.heappush(slow, (d, str(i)))
                    else:
                        heapq.heapreplace(slow, (d, str(i)))
                    if len(slow) == SLOWEST:
                        slow_min = slow[0][0]
                if store is not None:
                    store[i] = value
                else:
                    on_value(i, value)
                if counted - batch_counted >= SAMPLE:
                    batch = counted - batch_counted
                    span = now - batch_start
                    spent += span
                    fast = span < batch * TIMED_ABOVE
                    left = every = SAMPLE if fast else 1
                    if fast:
                        self.sampled = True
                    batch_counted = counted
                    batch_start = now
            i = -1
        except asyncio.CancelledError:
            if i >= 0:
                others += 1
                busy.now = max(0, busy.now - 1)
                self._stopped(i, batch_start - t0, clock() - t0)
        except BaseException as e:
            if i >= 0:  # a KeyboardInterrupt / SystemExit from the call
                others += 1
                self._failed(i, e, batch_start - t0, clock() - t0)
            elif isinstance(e, Exception):  # the input itself failed: the whole map fails
                self.iter_error = e
                engine.stop("aborted")
            else:
                raise
        finally:
            last = clock()
            spent += last - batch_start
            calls = counted + (every - left)  # every call this worker made
            assert engine.recorder.aggregate is not None
            engine.recorder.aggregate.add_ok(calls - others, spent, slow, first - t0, last - t0)

    async def _work_plain(self) -> None:
        """An async fn with no policy: each call is awaited inline and its Outcome recorded
        (imap; or map with an observer of every task, or a quorum)."""
        engine = self.engine
        fn = self.fn
        record = engine.recorder.record
        clock = engine.clock
        t0 = engine.t0
        on_value = self.on_value
        events = engine.events
        listeners = events.attempt_started
        name = engine.name
        busy = engine.busy
        group = self.group
        new = tuple.__new__
        # a sync input with no ordering window is pulled inline (no coroutine per item),
        # from the (index, item) pairs the workers share
        pairs = self.pairs
        while engine.stop_reason is None:
            if pairs is not None:
                try:
                    i, item = next(pairs)
                except StopIteration:
                    return
                except Exception as e:  # the input itself failed: the whole map fails
                    self.iter_error = e
                    engine.stop("aborted")
                    return
                if i >= self.seen:
                    self.seen = i + 1
            else:  # an async input, an ordering window, or what a journal leaves to do
                more, i, item = await self.pull()
                if not more:
                    return
            start = clock()
            if listeners:
                events.send(listeners, AttemptStarted(name, start - t0, str(i), group, 1))
            busy.enter()
            try:
                value = await fn(item)
            except asyncio.CancelledError:
                busy.leave()
                self._stopped(i, start - t0, clock() - t0)
                return
            except BaseException as e:
                busy.leave()
                self._failed(i, e, start - t0, clock() - t0)
                continue
            busy.leave()
            s = start - t0
            o = new(Outcome, (str(i), _OK, value, None, None, 1, s, clock() - t0, None, group,
                              i, (), False, None, 0.0, False))  # fmt: skip
            if on_value is not None:
                on_value(i, value)
            r = record(o)
            if r is not None:
                await r  # the consumer is behind: wait for room (a cancel here just ends us)

    async def _work(self) -> None:
        """Items with a policy (a timeout, a retry, a budget ...) or a sync fn: each item
        gets the engine's record and goes through the call pipeline."""
        engine = self.engine
        plan = self.plan
        call = plan.call
        assert call is not None
        opts = self.opts
        fn = self.fn
        group = self.group
        record = engine.recorder.record
        adm = engine.admission
        clock = engine.clock
        t0 = engine.t0
        on_value = self.on_value
        events = engine.events
        listeners = events.attempt_started
        name = engine.name
        busy = engine.busy
        counts = not plan.logged  # a logged plan's gate counts its calls after their waits
        current = asyncio.current_task()
        assert current is not None
        try:
            while engine.stop_reason is None:
                more, i, item = await self.pull()
                if not more:
                    return
                st = TaskState(str(i), fn, (item,), opts, group, i, plan, clock() - t0)
                st.handle = current  # the asyncio Task that makes its calls
                if self.dynamic:
                    try:
                        await adm.acquire(group)
                    except asyncio.CancelledError:
                        r = record(skipped(st, engine.stop_reason or "cancelled"))
                        return
                reason = plan.start(st)
                while reason is WAITING:  # the budget may have room once others settle
                    await engine.room()
                    reason = plan.start(st)
                if reason is not None:
                    if self.dynamic:
                        adm.release(group)
                        adm.admit()
                    r = record(skipped(st, reason))
                    if r is not None:
                        await r
                    continue
                self.current[current] = st
                start = clock()
                st.started = start
                if listeners:
                    events.send(listeners, AttemptStarted(name, start - t0, st.name, group, 1))
                if counts:
                    busy.enter()
                stopped = False
                try:
                    value = await call(st)
                except BaseException as e:
                    # st.started: a policy that refused or delayed the call moved it
                    outcome = outcome_of(st, None, e, st.started, clock(), t0)
                    if isinstance(e, FATAL):
                        engine.fatal = engine.fatal or e
                        engine.stop("aborted")
                    # this worker itself is cancelled (the run stops, or the loop ends a
                    # stream its consumer left): it records the item and ends, never waits
                    # for room the gone consumer would make, nor pulls another item
                    stopped = isinstance(e, asyncio.CancelledError) and current.cancelling() > 0
                else:
                    outcome = outcome_of(st, value, None, st.started, clock(), t0)
                finally:
                    if counts:
                        busy.leave()
                    del self.current[current]
                    if self.dynamic:
                        adm.release(group)
                        adm.admit()
                if outcome.status is _OK and on_value is not None:
                    on_value(i, outcome.value)
                r = record(outcome)
                if stopped:
                    return
                if r is not None:
                    await r
        except asyncio.CancelledError:
            return

    async def _work_threads(self, limit: int) -> None:
        """Blocking calls with no per-call policy: ``limit`` threads pull the items
        themselves, like ``ThreadPoolExecutor.map``, instead of a round trip through the
        loop for every call (bench workload 6). Failures become Outcomes afterwards, on the
        loop; a stop (fail_fast, cancellation) ends the pulling, never a call."""
        engine = self.engine
        loop = engine.loop
        fn = self.fn
        it = self.sync_it
        assert it is not None
        on_value = self.on_value
        store = self.store
        counter = self.counter
        lock = threading.Lock()
        stop = threading.Event()
        failures: list[tuple[int, BaseException, float, float]] = []
        stops_on_failure = engine.options.stop_after_failures is not None
        stats = [0, 0.0, float("inf"), 0.0]  # ok calls, seconds in them, first start, last end
        slow: list[tuple[float, str]] = []
        t0 = engine.t0
        clock = time.monotonic

        def job() -> None:
            n = 0
            spent = 0.0
            first = float("inf")
            last = 0.0
            mine: list[tuple[float, str]] = []
            try:
                while not stop.is_set():
                    with lock:
                        try:
                            item = next(it)
                        except StopIteration:
                            return
                        except Exception as e:  # the input itself failed: the map fails
                            self.iter_error = e
                            stop.set()
                            return
                        i = next(counter)
                        self.seen = i + 1
                    start = clock()
                    try:
                        value = fn(item)
                        if inspect.isawaitable(value):  # lambda x: coro(x): await on the loop
                            value = asyncio.run_coroutine_threadsafe(_awaited(value), loop).result()
                    except BaseException as e:  # KeyboardInterrupt/SystemExit too: recorded
                        with lock:
                            failures.append((i, e, start, clock()))
                        if stops_on_failure or not isinstance(e, Exception):
                            stop.set()
                        continue
                    end = clock()
                    n += 1
                    spent += end - start
                    first = min(first, start)
                    last = end
                    if len(mine) < SLOWEST:
                        heapq.heappush(mine, (end - start, str(i)))
                    elif end - start > mine[0][0]:
                        heapq.heapreplace(mine, (end - start, str(i)))
                    if store is not None:
                        store[i] = value
                    else:
                        with lock:
                            assert on_value is not None
                            on_value(i, value)
            finally:
                with lock:
                    stats[0] += n
                    stats[1] += spent
                    stats[2] = min(stats[2], first)
                    stats[3] = max(stats[3], last)
                    slow.extend(mine)

        calls = [engine.threads.submit(job) for _ in range(limit)]
        engine.busy.now = engine.busy.peak = limit
        try:
            await asyncio.gather(*calls)
        except asyncio.CancelledError:
            stop.set()  # calls in progress finish in their threads; none is started after
            raise
        finally:
            engine.busy.now = 0
            agg = engine.recorder.aggregate
            assert agg is not None
            if stats[0]:
                agg.add_ok(int(stats[0]), stats[1], slow, stats[2] - t0, stats[3] - t0, "thread")
            for i, error, started, ended in sorted(failures, key=lambda f: f[0]):
                self._failed(i, error, started - t0, ended - t0, "thread")
            if self.iter_error is not None:
                engine.stop("aborted")

    def abandon(self, workers: list[asyncio.Task[None]]) -> None:
        """Record the items of workers stuck in a call that ignored its cancellation."""
        engine = self.engine
        reason = engine.stop_reason or "cancelled"
        now = engine.elapsed()
        status = Status.TIMED_OUT if reason == "deadline" else Status.CANCELLED
        for w in workers:
            st = self.current.get(w)
            # a plain worker keeps its item in a local: read it off its frame
            i = st.seq if st is not None else _current_item(w)
            if i is None:
                continue
            error = stopped_error(str(i), reason)
            outcome = Outcome(str(i), status, None, error, "abandoned", 1, None, now, None,
                              self.group, i)  # fmt: skip
            engine.recorder.record(outcome)

    # -- Outcomes of the plain paths -----------------------------------------------------

    def _failed(
        self, i: int, error: BaseException, started: float, ended: float, where: str | None = None
    ) -> None:
        engine = self.engine
        calls = (Attempt(1, started, ended, error, False, where),) if where is not None else ()
        outcome = Outcome(str(i), Status.FAILED, None, error, None, 1, started, ended, None,
                          self.group, i, calls)  # fmt: skip
        engine.recorder.record(outcome)  # imap: never waits for room here; the next pull will
        if isinstance(error, FATAL):
            engine.fatal = engine.fatal or error
            engine.stop("aborted")

    def _stopped(self, i: int, started: float, ended: float) -> None:
        reason = self.engine.stop_reason or "cancelled"
        status = Status.TIMED_OUT if reason == "deadline" else Status.CANCELLED
        error = stopped_error(str(i), reason)
        outcome = Outcome(str(i), status, None, error, reason, 1, started, ended, None,
                          self.group, i)  # fmt: skip
        self.engine.recorder.record(outcome)


def _current_item(worker: asyncio.Task[None]) -> int | None:
    """The index of the item a stuck plain worker is calling (its coroutine's local ``i``;
    read only when the worker is abandoned, so the hot loop keeps it in a local)."""
    coro: Any = worker.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None)
        if frame is not None and frame.f_code.co_name in ("_work_bulk", "_work_plain"):
            i = frame.f_locals.get("i")
            return i if isinstance(i, int) and i >= 0 else None
        coro = getattr(coro, "cr_await", None)
    return None


def _item_frame(f: dict[str, Any]) -> tuple[Any, str, Any, tuple[Any, ...]]:
    pool = f["self"]
    return pool.engine, str(f["i"]), pool.fn, (f["item"],)


def _state_frame(f: dict[str, Any]) -> tuple[Any, str, Any, tuple[Any, ...]]:
    st = f["st"]
    return f["self"].engine, st.name, st.fn, st.args


# the frames that make an item's call (see _identity)
register_frame(_Pool._work_plain.__code__, _item_frame)
register_frame(_Pool._work_bulk.__code__, _item_frame)
register_frame(_Pool._work.__code__, _state_frame)
register_frame(
    next(c for c in _Pool._work_threads.__code__.co_consts if getattr(c, "co_name", "") == "job"),
    _item_frame,
)


def _capacity(engine: Engine, group: str | None) -> int | None:
    """How many calls a map run's pool may make at once (None: no limit)."""
    options = engine.options
    caps = [c for c in (options.limit,) if c is not None]
    if group is not None:
        if group in options.adaptive:
            caps.append(options.adaptive[group].max)
        elif group in options.group_limits:
            caps.append(options.group_limits[group])
    return min(caps) if caps else None


def _threadable(engine: Engine, plan: Any) -> bool:
    """A sync fn whose calls need nothing from the loop: no timeout, retry, policy,
    observer of calls, quorum or deadline (a thread that pulls items cannot be stopped
    mid-call)."""
    options = engine.options
    events = engine.events
    return (
        plan.backend == "thread"
        and plan.timeout is None
        and not plan.reruns
        and not plan.logged
        and not plan.accounts
        and plan.hooks is not None
        and not plan.hooks.admit
        and not events.task_finished
        and not events.attempt_started
        and options.quorum is None
        and options.deadline is None
    )


def _map_engine(options: dict[str, Any], items: Any, group: Any, on_error: str) -> Engine:
    """The engine of a map run: its options checked against what a map run can use."""
    check_group_name("group", group)
    opts = build_options(options, on_error=on_error)
    total = len(items) if isinstance(items, list | tuple | range) else None
    unreachable = sorted(opts.configured_groups - {group})
    if unreachable:
        where = (
            f"every item of this run is in group {group!r}"
            if group is not None
            else "the items of this run have no group (pass group=...)"
        )
        raise InvalidPolicy(f"groups/limits/rates: {unreachable[0]!r} can never apply: {where}")
    return Engine(opts, keep=False, total=total)


async def _finish_pool(pool: _Pool) -> None:
    """Wait for every worker; on outer cancellation stop the run first, then re-raise.
    Once the run stopped, a worker whose call ignores its cancellation is waited for
    ABANDON_GRACE seconds at most: its item is then recorded as abandoned."""
    engine = pool.engine
    cancelled: asyncio.CancelledError | None = None
    pending = [w for w in pool.workers if not w.done()]
    stopping: asyncio.Future[None] = engine.loop.create_future()  # wakes this wait on a stop
    engine.on_stop(lambda _reason: None if stopping.done() else stopping.set_result(None))
    try:
        while pending:
            wait = None
            if engine.stopped_at is not None:
                wait = max(0.0, engine.stopped_at + ABANDON_GRACE - engine.clock())
            waits: list[asyncio.Future[Any]] = [*pending]
            if not stopping.done():
                waits.append(stopping)
            try:
                await asyncio.wait(waits, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError as e:
                cancelled = e
                engine.stop("cancelled")
            pending = [w for w in pending if not w.done()]
            if (
                pending
                and engine.stopped_at is not None
                and engine.clock() >= engine.stopped_at + ABANDON_GRACE
            ):
                pool.abandon(pending)
                pool.workers = [w for w in pool.workers if w not in pending]
                break
    finally:
        stopping.cancel()
    for w in pool.workers:
        if not w.cancelled() and w.exception() is not None:
            raise w.exception()  # type: ignore[misc]
    if cancelled is not None:
        raise asyncio.CancelledError(*cancelled.args)


def _report(pool: _Pool) -> RunReport:
    """The report of a map run, from the streaming figures (no row per item)."""
    engine = pool.engine
    agg = engine.recorder.aggregate
    assert agg is not None
    agg.peak = max(agg.peak, engine.busy.peak)
    if pool.sampled:
        agg.sampled = SAMPLE
    return RunReport.from_aggregate(agg, engine.info())


async def _run_pool(pool: _Pool) -> Results:
    engine = pool.engine
    await engine.begin()
    try:
        await pool.start()
        await _finish_pool(pool)
    finally:
        engine.wall = engine.elapsed()
        try:
            results = engine.close(_report(pool))
        finally:
            await engine.release()
    engine.raise_fatal()
    if pool.iter_error is not None:
        raise pool.iter_error
    return results


async def _run_for_values(pool: _Pool, failed: dict[str, Outcome], sized: int | None) -> Results:
    """Run a map-like pool; raise FanError with the Outcomes that were not ok (in input
    order), counted against the items, once it has ended."""
    engine = pool.engine
    recorder = engine.recorder

    def keep_failed(o: Outcome) -> None:
        if o.status is not _OK:
            failed[o.name] = o

    recorder.set_deliver(keep_failed)
    results = await _run_pool(pool)
    if failed:
        ordered = dict(sorted(failed.items(), key=lambda kv: kv[1].index))
        carried = Results(ordered, engine.info(), results.report)
        total = sized if sized is not None else max(pool.seen, results.report.tasks)
        raise fan_error(carried, ordered, total=total, what="items")
    return results


async def map(
    fn: Callable[[T], Any],
    items: Iterable[T] | AsyncIterable[T],
    /,
    *,
    group: str | None = None,
    **options: Unpack[RunKwargs],
) -> Values[Any]:
    """``[await fn(item) for item in items]``, concurrently, values in input order.

    Items are pulled lazily (a generator or async iterable is fine) by at most ``limit``
    concurrent calls; ``group`` puts every item in that group (its limit, rate, breaker).
    If any call is not ok, raises :class:`FanError` carrying the Outcomes that were not ok
    (keyed by the item's index as a string). With the default ``on_error="fail_fast"`` the
    first failure stops the rest; ``"collect"`` runs all. The returned list's ``.report``
    is the run's :class:`RunReport`. See :class:`Fan` for the options.
    """
    engine = _map_engine(dict(options), items, group, "fail_fast")
    sized = len(items) if isinstance(items, list | tuple | range) else None
    # a plain list while the workers fill it (a list subclass's item store is not
    # specialised by the interpreter: a third of a trivial item's cost)
    values: list[Any] = [None] * sized if sized is not None else []

    def grow(i: int, value: Any) -> None:
        if i >= len(values):
            values.extend([None] * (i + 1 - len(values)))
        values[i] = value

    pool = _Pool(
        engine,
        fn,
        items,
        group,
        store=values if sized is not None else None,
        on_value=values.__setitem__ if sized is not None else grow,
        threaded=True,
    )
    results = await _run_for_values(pool, {}, sized)
    out: Values[Any] = Values(values)
    out.report = results.report
    return out


async def map_reduce(
    fn: Callable[[T], Any],
    items: Iterable[T] | AsyncIterable[T],
    reducer: Callable[[A, Any], A],
    initial: A,
    /,
    *,
    group: str | None = None,
    **options: Unpack[RunKwargs],
) -> A:
    """Fold ``reducer(acc, value)`` over the values of ``fn(item)`` as they complete.

    Streaming: values are folded in completion order and not kept, so memory is O(limit).
    The reducer should be associative and commutative (``operator.add``, a Counter update).
    Raises :class:`FanError` if any call is not ok. The run's report reaches observers in
    :class:`RunFinished` (``event.report``). See :class:`Fan` for the options.
    """
    engine = _map_engine(dict(options), items, group, "fail_fast")
    acc: list[Any] = [initial]
    reducer_error: list[BaseException] = []

    def on_value(i: int, value: Any) -> None:
        try:
            acc[0] = reducer(acc[0], value)
        except Exception as e:
            if not reducer_error:
                reducer_error.append(e)
            engine.stop("aborted")

    pool = _Pool(engine, fn, items, group, on_value=on_value)
    sized = len(items) if isinstance(items, list | tuple | range) else None
    try:
        await _run_for_values(pool, {}, sized)
    except FanError:
        if not reducer_error:
            raise
    if reducer_error:
        raise reducer_error[0]  # the reducer's own error, not the items it stopped
    result: A = acc[0]
    return result


def _outside_a_loop(name: str, instead: str) -> None:
    """RuntimeError if ``name`` is called from a running event loop, showing the form to
    ``await`` there (a notebook runs one: top-level ``await`` works in it)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"fj.{name}() cannot be called from a running event loop; use `{instead}` there"
    )


def map_sync(
    fn: Callable[[T], Any],
    items: Iterable[T] | AsyncIterable[T],
    /,
    *,
    group: str | None = None,
    **options: Unpack[RunKwargs],
) -> Values[Any]:
    """:func:`map` for sync code (a script, a notebook cell): runs an event loop until
    every item has ended and returns the values in input order. ``fn`` may be sync (it
    then runs in worker threads) or async; the options are :func:`map`'s."""
    _outside_a_loop("map_sync", "values = await fj.map(fn, items, ...)")
    return asyncio.run(map(fn, items, group=group, **options))


def map_reduce_sync(
    fn: Callable[[T], Any],
    items: Iterable[T] | AsyncIterable[T],
    reducer: Callable[[A, Any], A],
    initial: A,
    /,
    *,
    group: str | None = None,
    **options: Unpack[RunKwargs],
) -> A:
    """:func:`map_reduce` for sync code: runs an event loop until every item has ended and
    returns the folded value. The options are :func:`map_reduce`'s."""
    _outside_a_loop(
        "map_reduce_sync", "total = await fj.map_reduce(fn, items, reducer, initial, ...)"
    )
    return asyncio.run(map_reduce(fn, items, reducer, initial, group=group, **options))


class OutcomeStream(Generic[T]):
    """What :func:`imap` returns: an async iterator of Outcomes (``async for``), which can
    be closed early (``aclose()``, or ``contextlib.aclosing``); ``report`` is the run's
    :class:`RunReport` once it has ended."""

    __slots__ = ("_engine", "_gen")

    def __init__(self, gen: AsyncIterator[Outcome], engine: Engine) -> None:
        self._gen = gen
        self._engine = engine

    def __aiter__(self) -> OutcomeStream[T]:
        return self

    def __anext__(self) -> Any:
        return self._gen.__anext__()

    async def aclose(self) -> None:
        """Stop early: the calls in flight are cancelled before this returns."""
        await self._gen.aclose()  # type: ignore[attr-defined]

    @property
    def report(self) -> RunReport | None:
        """The run's report (None until the run has ended)."""
        results = self._engine.results
        return results.report if results is not None else None


def imap(
    fn: Callable[[T], Any],
    items: Iterable[T] | AsyncIterable[T],
    /,
    *,
    ordered: bool = False,
    group: str | None = None,
    **options: Unpack[RunKwargs],
) -> OutcomeStream[Any]:
    """Yield an :class:`Outcome` per item (``outcome.index`` is the item's position).

    In completion order, or input order with ``ordered=True``. Memory is O(limit): at most
    ``limit`` calls run, and workers wait while the consumer has not taken what they made.
    Stopping early (``break``) cancels the calls in flight. With ``max_failures`` (or
    ``on_error="fail_fast"``) the stream ends after the Outcome that reached it. See
    :class:`Fan` for the options.
    """
    engine = _map_engine(dict(options), items, group, "collect")
    limit = engine.options.limit
    return OutcomeStream(_imap(engine, fn, items, group, ordered, limit), engine)


async def _imap(
    engine: Engine,
    fn: Callable[..., Any],
    items: Any,
    group: str | None,
    ordered: bool,
    limit: int | None,
) -> AsyncIterator[Outcome]:
    # outcomes made but not yet taken: O(limit) memory
    capacity = 2 * max(1, limit or 1024)
    low_water = capacity // 2
    ready: deque[Outcome] = deque()
    buffer: dict[int, Outcome] = {}
    waiters: dict[str, asyncio.Future[None] | None] = {"consumer": None}
    space: deque[asyncio.Future[None]] = deque()
    loop = asyncio.get_running_loop()
    recorder = engine.recorder

    def wake_consumer() -> None:
        w = waiters["consumer"]
        if w is not None and not w.done():
            w.set_result(None)

    def deliver_unordered(o: Outcome) -> Any:
        if recorder.stop_outcome is not None:
            return None  # the stream ends with the Outcome that reached max_failures
        ready.append(o)
        wake_consumer()
        if len(ready) >= capacity:
            # one shared future for every worker waiting for room
            if not space or space[-1].done():
                space.append(loop.create_future())
            return space[-1]
        return None

    def deliver_ordered(o: Outcome) -> None:
        if recorder.stop_outcome is not None:
            return
        buffer[o.index] = o
        wake_consumer()

    recorder.set_deliver(deliver_ordered if ordered else deliver_unordered)
    pool = _Pool(engine, fn, items, group, window=(2 * capacity) if ordered else None)
    await engine.begin()
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
                    if o is recorder.stop_outcome:
                        break  # the stream ends with the Outcome that reached max_failures
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
                if o is recorder.stop_outcome:
                    break
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
        engine.stop("cancelled")  # a no-op when the run already ended or stopped
        try:
            await _finish_pool(pool)
        finally:
            engine.wall = engine.elapsed()
            try:
                engine.close(_report(pool))
            finally:
                await engine.release()
    engine.raise_fatal()
    if pool.iter_error is not None:
        raise pool.iter_error
