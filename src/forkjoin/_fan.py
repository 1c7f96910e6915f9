"""The dispatcher: admits tasks under the run's policies, runs them, records one Outcome each.

Where things happen, for a newcomer:

- a task is *added* in :meth:`Fan._add` (queued, or started at once when nothing limits it);
- it is *admitted* in :meth:`Fan._admit` (highest priority first, FIFO among equals, never
  past the run's ``limit`` or a group's limit);
- it *runs* in :meth:`Fan._execute` (timeout per call, retries only after a first failure);
- its Outcome is *written* in :meth:`Fan._finish` (or :meth:`Fan._skip` if it never ran);
- the run *stops early* in :meth:`Fan._stop` (deadline, fail-fast, quorum, cancellation).

Hot-path notes (see bench/RESULTS.md): the first call of a task is made bare — no tenacity,
no ``asyncio.timeout`` unless a timeout is set — because those cost 7–40 µs per task even
when nothing fails; events are built only when an observer listens.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import heapq
import inspect
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Final

from ._deadlines import Deadlines
from ._errors import (
    DuplicateTaskName,
    FanClosed,
    Interrupted,
    InvalidPolicy,
    TaskSkipped,
    TaskTimeout,
    stopped_error,
)
from ._events import (
    AttemptFailed,
    Event,
    RunFinished,
    RunStarted,
    TaskFinished,
    TaskQueued,
    TaskStarted,
)
from ._outcome import Attempt, Outcome, Results, Status, _fan_error, _RunInfo
from ._policies._adaptive import AdaptiveLimit
from ._policies._budget import Budget
from ._policies._group import Group
from ._policies._hedge import Hedge
from ._policies._rate import RateLimit
from ._policies._runtime import RunPolicies, check_run_options
from ._retry import Retry
from ._task import (
    _DEFAULTS,
    _UNSET,
    Task,
    _is_async_callable,
    check_retry,
    check_timeout,
    close_unstarted,
    task,
)

__all__ = ["Fan", "current_fan", "gather", "run"]

log = logging.getLogger("forkjoin")

_current_fan: contextvars.ContextVar[Fan | None] = contextvars.ContextVar(
    "forkjoin_current_fan", default=None
)
_run_ids = itertools.count(1)

# Threads for sync tasks when the run sets no limit. Threads are made lazily, so this is
# only a ceiling on how many blocking calls can be in flight at once.
_DEFAULT_MAX_THREADS: Final = 256

# Tasks whose asyncio Task is made per loop pass in an unlimited gather (see _add_all).
_FEED_BATCH: Final = 512

# Most tasks one asyncio Task runs back to back in a limited run before it hands the next
# one to a new Task (see _execute): tasks that never suspend cannot hold the loop for long.
_CHAIN_MAX: Final = 64

_OK: Final = Status.OK
_FAILED: Final = Status.FAILED
_TIMED_OUT: Final = Status.TIMED_OUT
_CANCELLED: Final = Status.CANCELLED
_SKIPPED: Final = Status.SKIPPED


class _Rec:
    """The engine's mutable record of one task while it is in the run.

    ``opts`` is the task's :class:`Task` (its options); the call itself is ``fn(*args)``
    or the bare coroutine ``coro``. A ``(fn, *args)`` spec gets the shared default options,
    so no Task object is built for it.
    """

    __slots__ = (
        "args",
        "attempts",
        "cancel_reason",
        "coro",
        "fn",
        "group",
        "handle",
        "history",
        "index",
        "is_async",
        "name",
        "opts",
        "outcome",
        "pol",
        "priority",
        "retry",
        "started",
        "thread_call",
        "timeout",
    )

    def __init__(
        self,
        name: str,
        fn: Callable[..., Any] | None,
        args: tuple[Any, ...],
        is_async: bool,
        coro: Coroutine[Any, Any, Any] | None,
        opts: Task,
        index: int,
        timeout: float | None,
        retry: Retry | None,
    ) -> None:
        self.name = name
        self.fn = fn
        self.args = args
        self.is_async = is_async
        self.coro = coro
        self.opts = opts
        self.index = index
        self.group = opts.group
        self.priority = opts.priority
        self.timeout = timeout
        self.retry = retry
        self.handle: asyncio.Task[Any] | None = None
        self.cancel_reason: str | None = None
        self.started: float | None = None
        self.attempts = 0
        self.history: tuple[Attempt, ...] = ()
        self.outcome: Outcome | None = None
        self.thread_call: _ThreadCall | None = None
        self.pol: Any = None  # a TaskPolicy when a policy wraps the call (else None)


class _ThreadCall:
    """A blocking call for a worker thread, in the task's context (so current_fan() and
    charge() work there); ``finished`` tells an abandoned call from a completed one."""

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


def _check_limit(where: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidPolicy(f"{where}: expected a positive integer or None, got {value!r}")
    if value < 1:
        raise InvalidPolicy(f"{where}: must be >= 1, got {value!r}")
    return value


class Fan:
    """A run: add tasks with :meth:`spawn`, stream their Outcomes, get keyed :attr:`results`.

    Use it as ``async with fj.Fan(...) as fan:``. Leaving the block waits for every task
    (an exception in the block cancels the rest first). Options:

    - ``limit``: most tasks running at once; ``limits``: ``{group: most running}``;
    - ``deadline``: seconds for the whole run — running tasks then end ``timed_out``
      (reason ``"deadline"``), waiting ones ``skipped``;
    - ``timeout``: default seconds per call of a task; ``retry``: default :class:`Retry`;
    - ``on_error``: ``"collect"`` (default) or ``"fail_fast"`` (the first failure cancels
      the rest and leaving the block raises :class:`FanError`);
    - ``quorum``: stop once this many tasks are ok (the rest: cancelled / skipped);
    - ``observers``: objects with ``on_event(event)``, told every event;
    - ``progress``: True for a live display on stderr when it is a terminal (or a
      :class:`ProgressObserver`);
    - resilience policies: ``budget`` (:class:`Budget`), ``rate`` (a :class:`RateLimit`
      for the whole run), ``rates`` (``{group: RateLimit}``), ``groups``
      (``{group: Group(...)}``); a ``limits`` value may be an :class:`AdaptiveLimit`.
      A task's own option wins over its group's, which wins over the run's.
    """

    def __init__(
        self,
        *,
        limit: int | None = None,
        limits: Mapping[str, int | AdaptiveLimit] | None = None,
        deadline: float | None = None,
        timeout: float | None = None,
        retry: Retry | bool | None = None,
        on_error: str = "collect",
        quorum: int | None = None,
        observers: Iterable[Any] = (),
        name: str | None = None,
        budget: Budget | None = None,
        rate: RateLimit | None = None,
        rates: Mapping[str, RateLimit] | None = None,
        groups: Mapping[str, Group] | None = None,
        progress: bool | Any = False,
    ) -> None:
        self._limit = _check_limit("limit", limit)
        check_run_options(limits, rates, groups, budget, rate)
        group_limits: dict[str, int] = {}
        adaptive: dict[str, AdaptiveLimit] = {}
        for g, settings in (groups or {}).items():
            if isinstance(settings.limit, AdaptiveLimit):
                adaptive[g] = settings.limit
                group_limits[g] = settings.limit.initial
            elif settings.limit is not None:
                group_limits[g] = settings.limit
        if limits is not None:
            if not isinstance(limits, Mapping):
                raise InvalidPolicy(f"limits: expected a mapping of group -> limit, got {limits!r}")
            for g, v in limits.items():
                if not isinstance(g, str):
                    raise InvalidPolicy(f"limits: group names must be strings, got {g!r}")
                if isinstance(v, AdaptiveLimit):
                    adaptive[g] = v
                    group_limits[g] = v.initial
                    continue
                adaptive.pop(g, None)
                checked = _check_limit(f"limits[{g!r}]", v)
                if checked is None:  # like limit=None: no limit for that group
                    group_limits.pop(g, None)
                else:
                    group_limits[g] = checked
        self._group_limits = group_limits
        # policy state for this run; None when no run-level policy is set (the plain path)
        self._pol: RunPolicies | None = None
        if budget is not None or rate is not None or rates or groups or adaptive:
            self._pol = RunPolicies(
                self, budget=budget, rate=rate, rates=rates, groups=groups, adaptive=adaptive
            )
        self._deadline = check_timeout("deadline", deadline)
        self._timeout = check_timeout("timeout", timeout)
        run_retry = check_retry("retry", retry)
        self._retry: Retry | None = run_retry if isinstance(run_retry, Retry) else None
        if on_error not in ("collect", "fail_fast"):
            raise InvalidPolicy(f"on_error: expected 'collect' or 'fail_fast', got {on_error!r}")
        self._fail_fast = on_error == "fail_fast"
        self._on_error = on_error
        if quorum is not None and (
            isinstance(quorum, bool) or not isinstance(quorum, int) or quorum < 1
        ):
            raise InvalidPolicy(f"quorum: expected an integer >= 1, got {quorum!r}")
        self._quorum = quorum
        obs = tuple(observers)
        if progress:  # the live display is one more observer; nothing at all when off
            from ._progress import with_progress

            obs = with_progress(obs, progress)
        for o in obs:
            if not callable(getattr(o, "on_event", None)):
                raise InvalidPolicy(f"observers: {o!r} has no on_event(event) method")
        self._observers = obs
        self.name = name or f"run-{next(_run_ids)}"

        self._state = "new"
        self._recs: dict[str, _Rec] = {}
        self._seq = 0
        self._heaps: dict[str | None, list[tuple[float, int, _Rec]]] = {}
        self._queued = 0
        self._running = 0
        self._grun: dict[str, int] = dict.fromkeys(group_limits, 0)
        self._pending = 0
        self._active: set[_Rec] = set()
        self._stop_reason: str | None = None
        self._ok_count = 0
        self._failed_fast = False
        self._waiter: asyncio.Future[None] | None = None
        self._stream: deque[Outcome] | None = None
        self._stream_waiter: asyncio.Future[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._admit_scheduled = False
        self._deadline_handle: asyncio.TimerHandle | None = None
        self._deadlines: dict[float, Deadlines] = {}  # per-call timeouts, by value
        self._results: Results | None = None
        self._feedq: deque[_Rec] = deque()
        # while a finishing task admits the next ones: the asyncio Task that may run the
        # first admitted one itself (_handoff), and the record it was given (_handed)
        self._handoff: asyncio.Task[Any] | None = None
        self._handed: _Rec | None = None
        self._stop_listeners: list[Callable[[str], None]] = []
        self._pool = False
        self._token: contextvars.Token[Fan | None] | None = None
        self._t0 = 0.0
        self._wall0 = 0.0
        self._wall = 0.0

    def __repr__(self) -> str:
        return (
            f"<Fan {self.name} {self._state}: {len(self._recs)} tasks, "
            f"{self._running} running, {self._queued} queued>"
        )

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Fan:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        try:
            if exc is not None:
                self._stop("cancelled" if isinstance(exc, asyncio.CancelledError) else "aborted")
            await self._drain()
        finally:
            self._close()
        if exc is None and self._failed_fast:
            results = self.results
            raise _fan_error(results, results.failures())
        return False

    def _open(self) -> None:
        if self._state != "new":
            raise RuntimeError("a Fan runs once: make a new fj.Fan(...) for another run")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._t0 = loop.time()
        self._wall0 = time.time()
        self._state = "running"
        self._token = _current_fan.set(self)
        if self._deadline is not None:
            self._deadline_handle = loop.call_at(self._t0 + self._deadline, self._stop, "deadline")
        if self._observers:
            self._emit(RunStarted(self.name, 0.0, self._options()))

    def _options(self) -> dict[str, Any]:
        return {
            "limit": self._limit,
            "limits": dict(self._group_limits),
            "deadline": self._deadline,
            "timeout": self._timeout,
            "on_error": self._on_error,
            "quorum": self._quorum,
            **(self._pol.options() if self._pol is not None else {}),
        }

    async def _drain(self) -> None:
        """Wait until every task has its Outcome; an outer cancellation stops the run first
        and is re-raised once every task has ended (no orphans)."""
        cancelled = False
        while self._pending > 0:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            except asyncio.CancelledError:
                cancelled = True
                self._stop("cancelled")
        if cancelled:
            raise asyncio.CancelledError

    def _close(self) -> None:
        self._state = "closed"
        self._wall = self._loop.time() - self._t0
        if self._deadline_handle is not None:
            self._deadline_handle.cancel()
        for deadlines in self._deadlines.values():
            deadlines.close()
        if self._executor is not None:
            # never wait for abandoned blocking calls: their Outcomes are already written
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self._token is not None:
            try:
                _current_fan.reset(self._token)
            except ValueError:  # exited in another context than entered: nothing to restore
                _current_fan.set(None)
            self._token = None
        self._results = Results(
            {n: r.outcome for n, r in self._recs.items() if r.outcome is not None},
            self._run_info(),
        )
        if self._observers:
            self._emit(RunFinished(self.name, self._wall, self._results))

    def _run_info(self) -> _RunInfo:
        return _RunInfo(
            wall=self._wall,
            started_at=self._wall0,
            limit=self._limit,
            limits=dict(self._group_limits),
            extra={"run": self.name, **(self._pol.report() if self._pol is not None else {})},
        )

    @property
    def results(self) -> Results:
        """Every task's Outcome, keyed by name, in the order added (once the run ended)."""
        if self._results is None:
            raise RuntimeError("Fan.results is available once the run has ended")
        return self._results

    @property
    def closed(self) -> bool:
        """True once the run has ended (spawn then raises FanClosed)."""
        return self._state == "closed"

    def elapsed(self) -> float:
        """Seconds since the run started, on the run's clock."""
        return self._loop.time() - self._t0

    # -- adding tasks --------------------------------------------------------------------

    def spawn(
        self,
        name: str,
        fn: Callable[..., Any] | Task | Any,
        /,
        *args: Any,
        timeout: float | None = _UNSET,
        retry: Retry | bool | None = _UNSET,
        group: str | None = _UNSET,
        priority: int = _UNSET,
        cost: float | None = _UNSET,
        tokens: float | None = _UNSET,
        weight: float = _UNSET,
        idempotent: bool = _UNSET,
        hedge: Hedge | None = _UNSET,
        fallback: Callable[..., Any] | None = _UNSET,
    ) -> None:
        """Add a task named ``name`` that calls ``fn(*args)`` to the running run.

        ``fn`` may also be a :class:`Task` (its options, overridden by any given here) or a
        coroutine object. Works from inside a running task too (dynamic fan-out). The
        options are those of :func:`forkjoin.task`.
        """
        self._check_open()
        if asyncio._get_running_loop() is not self._loop:
            # from a sync task's worker thread: the run's state belongs to the loop thread
            # (and a loop asleep in select() would not notice a plain call_soon), so the
            # spawn is handed over and waited for; its errors still raise here
            return self._spawn_from_thread(
                functools.partial(
                    self.spawn,
                    name,
                    fn,
                    *args,
                    timeout=timeout,
                    retry=retry,
                    group=group,
                    priority=priority,
                    cost=cost,
                    tokens=tokens,
                    weight=weight,
                    idempotent=idempotent,
                    hedge=hedge,
                    fallback=fallback,
                )
            )
        if self._pool:
            raise RuntimeError("spawn() is not available in a map()/imap() run")
        self._check_name(name)
        options = {
            "timeout": timeout,
            "retry": retry,
            "group": group,
            "priority": priority,
            "cost": cost,
            "tokens": tokens,
            "weight": weight,
            "idempotent": idempotent,
            "hedge": hedge,
            "fallback": fallback,
        }
        if isinstance(fn, Task):
            if args:
                raise TypeError("spawn(): arguments go into fj.task(fn, *args), not after a Task")
            t = fn.with_options(**options)
        else:
            given = {k: v for k, v in options.items() if v is not _UNSET}
            t = task(fn, *args, **given)  # type: ignore[arg-type]
        self._add(name, t.fn, t.args, t.is_async, t.coro, t)
        if self._queued and not self._admit_scheduled:
            # admit on the next loop pass, so tasks spawned together start by priority
            self._admit_scheduled = True
            self._loop.call_soon(self._admit_soon)

    def _spawn_from_thread(self, spawn: Callable[[], None]) -> None:
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def on_loop() -> None:
            try:
                spawn()
            except BaseException as e:
                done.set_exception(e)
            else:
                done.set_result(None)

        self._loop.call_soon_threadsafe(on_loop)
        done.result()

    def _check_open(self) -> None:
        if self._state != "running":
            if self._state == "closed":
                raise FanClosed(f"run {self.name!r} has ended: no more tasks can be added")
            raise RuntimeError("use `async with fj.Fan(...) as fan:` before fan.spawn(...)")

    def _check_name(self, name: Any) -> None:
        if not isinstance(name, str):
            raise TypeError(f"task names must be strings, got {name!r}")
        if name in self._recs:
            raise DuplicateTaskName(f"task name {name!r} is already used in this run")

    def _add_all(self, specs: list[_Spec]) -> None:
        if self._limit is None and not self._grun:
            # Unlimited: every task starts now, but their asyncio Tasks are made a batch per
            # loop pass, so trivial tasks finish before the next batch is made. Live objects
            # (and the cyclic GC's work, ~half of asyncio.gather's time at 100k) stay
            # bounded; no task ever waits for another to finish. See bench/RESULTS.md.
            feed = self._feedq
            for spec in specs:
                self._add(*spec, feed)
            if any(spec[5].priority for spec in specs):
                # higher priorities get their asyncio Tasks first; the records were added
                # in the given order, which Results and Outcome.index keep
                by_priority = sorted(feed, key=lambda rec: -rec.priority)
                feed.clear()
                feed.extend(by_priority)
            if feed:
                self._feed()
            return
        for spec in specs:
            self._add(*spec)
        if self._queued:
            self._admit()

    def _feed(self) -> None:
        feed = self._feedq
        start = self._start
        for _ in range(min(_FEED_BATCH, len(feed))):
            start(feed.popleft())
        if feed:
            self._loop.call_soon(self._feed)

    def _add(
        self,
        name: str,
        fn: Callable[..., Any] | None,
        args: tuple[Any, ...],
        is_async: bool,
        coro: Coroutine[Any, Any, Any] | None,
        opts: Task,
        feed: deque[_Rec] | None = None,
    ) -> None:
        timeout = opts.timeout if opts.timeout is not None else self._timeout
        r = opts.retry
        retry = r if isinstance(r, Retry) else (None if r is False else self._retry)
        rec = _Rec(name, fn, args, is_async, coro, opts, self._seq, timeout, retry)
        if self._pol is not None or opts.policied:
            self._policies().prepare(rec)
        self._seq += 1
        self._recs[name] = rec
        self._pending += 1
        group = opts.group
        if self._observers:
            self._emit(
                TaskQueued(self.name, self._loop.time() - self._t0, name, group, opts.priority)
            )
        if self._stop_reason is not None:
            self._skip(rec, self._stop_reason)
        elif feed is not None:
            feed.append(rec)
        elif self._limit is None and (group is None or group not in self._grun):
            self._start(rec)
        else:
            heapq.heappush(self._heaps.setdefault(group, []), (-opts.priority, rec.index, rec))
            self._queued += 1

    def _policies(self) -> RunPolicies:
        pol = self._pol
        if pol is None:  # a task-level policy (hedge, fallback...) in a run without any
            pol = self._pol = RunPolicies(self)
        return pol

    # -- admission -----------------------------------------------------------------------

    def _admit_soon(self) -> None:
        self._admit_scheduled = False
        self._admit()

    def _admit(self) -> None:
        """Start waiting tasks while capacity allows: highest priority first, FIFO among
        equals, skipping groups that are at their own limit."""
        limit = self._limit
        grun = self._grun
        glimits = self._group_limits
        heaps = self._heaps
        while self._queued and (limit is None or self._running < limit):
            best: tuple[float, int, _Rec] | None = None
            best_group: str | None = None
            for g, heap in heaps.items():
                if g is not None and g in grun and grun[g] >= glimits[g]:
                    continue
                if best is None or heap[0] < best:
                    best, best_group = heap[0], g
            if best is None:
                return
            heap = heaps[best_group]
            heapq.heappop(heap)
            if not heap:
                del heaps[best_group]
            self._queued -= 1
            self._start(best[2])

    def _start(self, rec: _Rec) -> None:
        pol = rec.pol
        if pol is not None and not pol.admit():
            self._skip(rec, "budget")  # its estimate does not fit what is left
            return
        self._running += 1
        g = rec.group
        if g is not None and g in self._grun:
            self._grun[g] += 1
        self._active.add(rec)
        handoff = self._handoff
        if handoff is not None and pol is None:
            # the Task of the task that just finished runs this one next, in the same loop
            # pass: no new Task, no extra pass before its first step (bench workload 3)
            self._handoff = None
            self._handed = rec
            rec.handle = handoff
            return
        rec.handle = self._loop.create_task(
            self._execute(rec, True) if pol is None else pol.run_task()
        )

    # -- running -------------------------------------------------------------------------

    async def _execute(self, rec: _Rec, finish: bool = False) -> Outcome:
        """Run a task's calls under its timeout and retry policy; return its Outcome
        (and write it, with ``finish``: one coroutine per task, not two).

        Never raises for the task's own errors or for the run's cancellations.

        With ``finish``, the asyncio Task then goes on with the task the finished one
        made room for, if any (see :meth:`_finish`), like a worker of a pool: a slot freed
        and refilled costs no new Task and no loop pass (bench workload 3: a Task per task
        started one pass after its slot freed, 1.24x the ideal makespan against a worker
        pool's 1.12x). Contextvars are as before: a task admitted when another finished
        always saw that task's context (a Task made there copies it).
        """
        loop = self._loop
        chained = 0
        while True:
            start = loop.time()
            rec.started = start
            rec.attempts = 1
            if self._observers:
                self._emit(TaskStarted(self.name, start - self._t0, rec.name, rec.group, 1))
            status = _OK
            value: Any = None
            error: BaseException | None = None
            reason: str | None = None
            try:
                try:
                    # the plain path: no extra coroutine frame, no timeout scope, no tenacity
                    if rec.is_async and rec.timeout is None:
                        value = await rec.fn(*rec.args)  # type: ignore[misc]
                    else:
                        value = await (self._call(rec) if rec.timeout is None else self._timed(rec))
                except Exception as e:
                    # retry machinery only now that a first call has failed
                    if rec.retry is None or rec.coro is not None:
                        raise
                    value = await self._retry_loop(rec, e)
            except asyncio.CancelledError:
                reason = rec.cancel_reason
                if reason is not None:
                    # our own cancellation (deadline, fail_fast, quorum...): the task keeps going
                    # (a map worker moves on), so clear the request
                    current = asyncio.current_task()
                    if current is not None:
                        current.uncancel()
                else:
                    reason = "cancelled"
                call = rec.thread_call
                if call is not None and not call.finished:
                    reason = "abandoned"  # a blocking call still runs in its thread; not waited for
                status = _TIMED_OUT if rec.cancel_reason == "deadline" else _CANCELLED
                error = stopped_error(rec.name, rec.cancel_reason or reason)
            except TaskTimeout as e:
                status, error, reason = _TIMED_OUT, e, "timeout"
            except Exception as e:
                status, error = _FAILED, e
            end = loop.time() - self._t0
            start -= self._t0
            outcome = Outcome(
                rec.name,
                status,
                value,
                error,
                reason,
                rec.attempts,
                start,
                end,
                rec.opts.cost,
                rec.group,
                rec.index,
                rec.history,
            )
            if not finish:
                return outcome
            nxt = self._finish(rec, outcome, chained < _CHAIN_MAX)
            if nxt is None:
                return outcome
            rec = nxt
            chained += 1

    async def _call(self, rec: _Rec) -> Any:
        if rec.is_async:
            return await rec.fn(*rec.args)  # type: ignore[misc]
        if rec.coro is not None:
            return await rec.coro
        result = await self._in_thread(rec, rec.fn, rec.args)  # type: ignore[arg-type]
        if asyncio.iscoroutine(result) or asyncio.isfuture(result) or hasattr(result, "__await__"):
            result = await result
        return result

    async def _timed(self, rec: _Rec) -> Any:
        """One call under the task's timeout.

        The deadline cancels the task and the cancellation becomes TaskTimeout — what
        ``asyncio.timeout`` does, without a loop timer per call (see _deadlines.py).
        """
        task = rec.handle
        assert task is not None
        timeout: float = rec.timeout  # type: ignore[assignment]
        deadlines = self._deadlines.get(timeout)
        if deadlines is None:
            deadlines = self._deadlines[timeout] = Deadlines(self._loop, timeout)
        cancelling = task.cancelling()
        call = deadlines.start(task)
        try:
            return await self._call(rec)
        except asyncio.CancelledError:
            if call.expired and task.uncancel() <= cancelling:
                raise TaskTimeout(f"task {rec.name!r} timed out after {timeout:g}s") from None
            raise
        finally:
            deadlines.end(call)

    def _threads(self) -> ThreadPoolExecutor:
        """The run's own thread pool (as many threads as its limit allows), made lazily."""
        executor = self._executor
        if executor is None:
            executor = self._executor = ThreadPoolExecutor(
                max_workers=self._limit or _DEFAULT_MAX_THREADS,
                thread_name_prefix=f"forkjoin-{self.name}",
            )
        return executor

    async def _in_thread(self, rec: _Rec, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        executor = self._threads()
        call = _ThreadCall(fn, args)
        rec.thread_call = call
        return await self._loop.run_in_executor(executor, call)

    async def _retry_loop(self, rec: _Rec, error: Exception) -> Any:
        policy = rec.retry
        assert policy is not None
        loop = self._loop
        t0 = self._t0
        started = rec.started
        assert started is not None
        state = policy.new_state(started)
        history = [Attempt(1, started - t0, loop.time() - t0, error)]
        try:
            while True:
                now = loop.time()
                state.attempt_number = rec.attempts
                delay = policy.next_delay(state, error, now)
                if self._observers:
                    self._emit(
                        AttemptFailed(
                            self.name, now - t0, rec.name, rec.group, rec.attempts, error, delay
                        )
                    )
                if delay is None or self._stop_reason is not None:
                    raise error
                if delay > 0:
                    await asyncio.sleep(delay)
                rec.attempts += 1
                a_start = loop.time()
                if self._observers:
                    self._emit(
                        TaskStarted(self.name, a_start - t0, rec.name, rec.group, rec.attempts)
                    )
                try:
                    value = await (self._call(rec) if rec.timeout is None else self._timed(rec))
                except Exception as e:
                    history.append(Attempt(rec.attempts, a_start - t0, loop.time() - t0, e))
                    error = e
                    continue
                except asyncio.CancelledError:
                    # the call the run stopped (deadline, fail_fast...) belongs in the history
                    stopped = stopped_error(rec.name, rec.cancel_reason or "cancelled")
                    history.append(Attempt(rec.attempts, a_start - t0, loop.time() - t0, stopped))
                    raise
                history.append(Attempt(rec.attempts, a_start - t0, loop.time() - t0))
                return value
        finally:
            rec.history = tuple(history)

    # -- ending --------------------------------------------------------------------------

    def _finish(self, rec: _Rec, outcome: Outcome, chain: bool = False) -> _Rec | None:
        """Write a started task's Outcome and free its slot.

        With ``chain`` (called from the task's own asyncio Task, which may go on), the
        first plain task admitted into the freed room is returned for that Task to run
        next, instead of getting a Task of its own.
        """
        task = rec.handle
        rec.outcome = outcome
        # drop what a finished task no longer needs: a finished asyncio Task kept alive
        # per record doubled peak RSS at 100k tasks and fed the cyclic GC (bench/PROFILE.md)
        rec.handle = None
        rec.args = ()
        self._release(rec)
        self._pending -= 1
        self._settle(outcome)
        nxt = None
        if self._queued:
            # a cancellation requested of this Task and not yet delivered (3.11 cannot take
            # one back) would hit the next task: then that one gets a Task of its own
            if chain and task is not None and not task.cancelling():
                self._handoff = task
                try:
                    self._admit()
                finally:
                    nxt, self._handed, self._handoff = self._handed, None, None
                if nxt is not None and nxt.outcome is not None:
                    nxt = None  # the run stopped while admitting: it was skipped already
            else:
                self._admit()
        self._maybe_done()
        return nxt

    def _skip(self, rec: _Rec, reason: str) -> None:
        """Write the Outcome of a task that never started."""
        if rec.coro is not None:
            rec.coro.close()
        outcome = Outcome(
            rec.name,
            _SKIPPED,
            None,
            TaskSkipped(reason),
            reason,
            0,
            None,
            None,
            None,
            rec.group,
            rec.index,
        )
        rec.outcome = outcome
        self._pending -= 1
        self._settle(outcome)
        self._maybe_done()

    def _settle(self, outcome: Outcome) -> None:
        """Tell the world a task ended: observers, the stream, quorum and fail-fast."""
        if self._observers:
            self._emit(TaskFinished(self.name, self._loop.time() - self._t0, outcome))
        if self._stream is not None:
            self._stream.append(outcome)
            w = self._stream_waiter
            if w is not None and not w.done():
                w.set_result(None)
        status = outcome.status
        if status is _OK:
            if self._quorum is not None:
                self._ok_count += 1
                if self._ok_count >= self._quorum:
                    self._stop("quorum")
        elif (
            self._fail_fast
            and (status is _FAILED or status is _TIMED_OUT)
            and self._stop_reason is None
        ):
            self._failed_fast = True
            self._stop("fail_fast")

    def _maybe_done(self) -> None:
        if self._pending == 0:
            w = self._waiter
            if w is not None and not w.done():
                w.set_result(None)

    def _stop(self, reason: str) -> None:
        """Stop the run early: waiting tasks are skipped, running ones cancelled."""
        if self._stop_reason is not None or self._state == "closed":
            return
        self._stop_reason = reason
        heaps, self._heaps = self._heaps, {}
        self._queued = 0
        feed = self._feedq
        while feed:
            self._skip(feed.popleft(), reason)
        for heap in heaps.values():
            for _, _, rec in sorted(heap):
                self._skip(rec, reason)
        for rec in list(self._active):
            self._cancel(rec, reason)
        for listener in self._stop_listeners:
            listener(reason)

    def _cancel(self, rec: _Rec, reason: str) -> None:
        if rec.outcome is not None or rec.handle is None:
            return
        rec.cancel_reason = reason
        if rec is self._handed:
            # handed to a finishing task's Task (see _finish), which is running this very
            # code: that Task is not cancelled, it just does not run this one
            self._release(rec)
            self._skip(rec, reason)
            return
        rec.handle.cancel()
        if rec.started is None:
            # its asyncio Task never ran a step, so _execute will not run: write it here
            self._release(rec)
            self._skip(rec, reason)

    def _release(self, rec: _Rec) -> None:
        """Free the slot (run limit, group limit) a started task held."""
        self._running -= 1
        g = rec.group
        if g is not None and g in self._grun:
            self._grun[g] -= 1
        self._active.discard(rec)

    # -- streaming -----------------------------------------------------------------------

    async def as_completed(self) -> AsyncIterator[Outcome]:
        """Yield each task's Outcome as it finishes (those already finished first).

        Ends when no task is left unfinished; tasks spawned meanwhile (also from the loop
        body) are included.
        """
        if self._stream is None:
            self._stream = deque(r.outcome for r in self._recs.values() if r.outcome is not None)
        stream = self._stream
        while True:
            if stream:
                yield stream.popleft()
                continue
            if self._pending == 0 or self._state != "running":
                return
            self._stream_waiter = self._loop.create_future()
            await self._stream_waiter

    # -- observers -----------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        for o in self._observers:
            try:
                o.on_event(event)
            except Exception:  # an observer must never break the run
                log.exception("forkjoin observer %r failed on %s", o, type(event).__name__)


def current_fan() -> Fan:
    """The Fan the calling task runs in (e.g. to spawn more tasks from inside a task)."""
    fan = _current_fan.get()
    if fan is None or fan._state != "running":
        raise RuntimeError("current_fan() is only available inside a running fj.Fan or gather")
    return fan


_Spec = tuple[str, Callable[..., Any] | None, tuple[Any, ...], bool, Any, Task]


def _prepare(tasks: Any, quorum: int | None) -> list[_Spec]:
    """Validate everything gather() was given before anything starts (no partial runs)."""
    if not isinstance(tasks, Mapping):
        if isinstance(tasks, list | tuple):
            close_unstarted(list(tasks))
        raise TypeError(
            f"expected a mapping of task name -> task, got {type(tasks).__name__} "
            "(name your tasks: results are keyed)"
        )
    specs: list[_Spec] = []
    is_async: dict[int, bool] = {}  # fn id -> async? (the fns stay alive during this call)
    try:
        for name, spec in tasks.items():
            if not isinstance(name, str):
                raise TypeError(f"task names must be strings, got {name!r}")
            if isinstance(spec, Task):
                specs.append((name, spec.fn, spec.args, spec.is_async, spec.coro, spec))
                continue
            if isinstance(spec, tuple):
                if not spec or not callable(spec[0]):
                    raise TypeError(f"tasks[{name!r}]: a tuple must be (fn, *args), got {spec!r}")
                fn, args = spec[0], spec[1:]
            elif inspect.iscoroutine(spec):
                specs.append((name, None, (), False, spec, _DEFAULTS))
                continue
            elif callable(spec):
                fn, args = spec, ()
            else:
                raise TypeError(
                    f"tasks[{name!r}]: expected fj.task(...), (fn, *args), a callable or a "
                    f"coroutine, got {type(spec).__name__}"
                )
            key = id(fn)
            a = is_async.get(key)
            if a is None:
                a = is_async[key] = _is_async_callable(fn)
            specs.append((name, fn, args, a, None, _DEFAULTS))
        if quorum is not None and quorum > len(specs):
            raise InvalidPolicy(f"quorum: {quorum} is more than the {len(specs)} tasks given")
    except BaseException:
        close_unstarted(tasks)
        raise
    return specs


async def gather(
    tasks: Mapping[str, Any],
    /,
    *,
    limit: int | None = None,
    limits: Mapping[str, int | AdaptiveLimit] | None = None,
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
) -> Results:
    """Run named tasks concurrently; return every task's Outcome, keyed by name.

    Each value may be ``fj.task(fn, *args, ...)``, a ``(fn, *args)`` tuple, a zero-argument
    callable or a coroutine object. See :class:`Fan` for the options. With
    ``on_error="fail_fast"`` the first failure cancels the rest and raises :class:`FanError`
    (which carries the results); otherwise failures are in the Results.
    """
    try:
        fan = Fan(
            limit=limit,
            limits=limits,
            deadline=deadline,
            timeout=timeout,
            retry=retry,
            on_error=on_error,
            quorum=quorum,
            observers=observers,
            budget=budget,
            rate=rate,
            rates=rates,
            groups=groups,
            progress=progress,
        )
    except BaseException:
        if isinstance(tasks, Mapping):
            close_unstarted(tasks)
        raise
    specs = _prepare(tasks, quorum)
    async with fan:
        fan._add_all(specs)
    return fan.results


def run(
    tasks: Mapping[str, Any],
    /,
    *,
    limit: int | None = None,
    limits: Mapping[str, int | AdaptiveLimit] | None = None,
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
) -> Results:
    """:func:`gather` for sync code: runs an event loop until every task has ended.

    Ctrl-C cancels the running tasks and raises :class:`Interrupted`, which carries
    every task's Outcome as ``.results``.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        if isinstance(tasks, Mapping):
            close_unstarted(tasks)
        raise RuntimeError(
            "fj.run() cannot be called from a running event loop; use `await fj.gather(...)`"
        )
    try:
        fan = Fan(
            limit=limit,
            limits=limits,
            deadline=deadline,
            timeout=timeout,
            retry=retry,
            on_error=on_error,
            quorum=quorum,
            observers=observers,
            budget=budget,
            rate=rate,
            rates=rates,
            groups=groups,
            progress=progress,
        )
    except BaseException:
        if isinstance(tasks, Mapping):
            close_unstarted(tasks)
        raise
    specs = _prepare(tasks, quorum)

    async def main() -> Results:
        async with fan:
            fan._add_all(specs)
        return fan.results

    try:
        return asyncio.run(main())
    except KeyboardInterrupt as e:
        if fan._results is not None:
            raise Interrupted(fan._results) from e
        raise
