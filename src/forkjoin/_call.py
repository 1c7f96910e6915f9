"""The call pipeline: what happens between a task's admission and its Outcome.

For each task the policies that apply (its own options, its group's, the run's: the most
specific wins) are resolved into a :class:`Plan`, and the plan's chain of wrappers is
assembled once — tasks with the same options share it:

    fallback -> retry -> hedge -> gate (policy hooks, call log) -> timeout -> dispatch

*dispatch* is where the call runs (a backend: the loop, a thread); the *timeout* stops one
call (one FIFO and one loop timer per timeout value, :mod:`._deadlines`); the *gate* runs the
policies' hooks around every call (circuit breaker, Retry-After pause, rate limits, adaptive
limits) and logs it; a *hedge* races duplicates through the gate; *retry* calls again only
after a first failure (tenacity is not involved until then); *fallback* answers for a task
that failed for good. The engine awaits ``plan.call(task)`` and turns its ending into an
Outcome with :func:`outcome_of`, in one place. A task no policy touches has no chain at all:
the engine awaits ``fn(*args)`` itself (``plan.plain``).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final, Protocol

from ._errors import ABANDONED, TaskSkipped, TaskTimeout, stopped_error
from ._events import AttemptFailed, AttemptStarted, HedgeStarted, Observers
from ._identity import register_frame
from ._outcome import Attempt, Outcome, Status
from ._policies._breaker import CircuitOpen
from ._policies._budget import BudgetExceeded, Charge, current_account
from ._retry import warm as warm_retry
from ._task import Task, coroutine_runner

if TYPE_CHECKING:
    from ._backends._base import Runner
    from ._deadlines import Deadlines
    from ._options import RunOptions
    from ._policies._hedge import Hedge
    from ._policies._run import Hooks, RunPolicies
    from ._record import Busy
    from ._retry import Retry

__all__ = ["CallLog", "Plan", "Planner", "TaskState", "outcome_of", "skipped"]

_OK: Final = Status.OK
_FAILED: Final = Status.FAILED
_TIMED_OUT: Final = Status.TIMED_OUT
_CANCELLED: Final = Status.CANCELLED
_SKIPPED: Final = Status.SKIPPED

# interrupting the program, not a task's own failure: re-raised by the run once every
# other task has been stopped and recorded (as trio and anyio do)
FATAL: Final = (KeyboardInterrupt, SystemExit)


class Context(Protocol):
    """What the pipeline needs of the run: its clock, its events, whether it stops."""

    @property
    def name(self) -> str: ...

    @property
    def t0(self) -> float: ...

    @property
    def stopping(self) -> str | None: ...

    @property
    def busy(self) -> Busy: ...

    def clock(self) -> float: ...


class CallLog:
    """What the pipeline records of one task's calls (tasks with a plan only); the
    backends see it as the task (:class:`~._backends._base.CallSite`)."""

    __slots__ = ("abandoned", "account", "attempts", "fallback_error", "log", "logged", "name",
                 "where")  # fmt: skip

    def __init__(self, name: str, account: Charge | None, logged: bool) -> None:
        self.name = name
        self.account = account
        self.attempts = 1  # the number of the call being made
        self.log: list[Attempt] = []
        self.logged = logged  # the gate logs every call (else only retries are logged)
        self.abandoned = False
        self.fallback_error: BaseException | None = None
        self.where: str | None = None  # where the last call ran (None: the loop)


class TaskState:
    """The engine's record of one task while it is in the run.

    ``fn(*args)`` is the call; ``opts`` its :class:`Task` options; ``plan`` what applies to
    it; ``seq`` the order it was added (Outcome.index); ``added`` when, on the run's clock.
    ``calls`` is the pipeline's log of its calls (None on the plain path).
    """

    __slots__ = (
        "added",
        "args",
        "calls",
        "cancel_reason",
        "done",
        "fn",
        "group",
        "handle",
        "name",
        "opts",
        "plan",
        "priority",
        "seq",
        "started",
    )

    def __init__(
        self,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        opts: Task,
        group: str | None,
        seq: int,
        plan: Plan,
        added: float,
    ) -> None:
        self.name = name
        self.fn = fn
        self.args = args
        self.opts = opts
        self.group = group
        self.priority = opts.priority
        self.seq = seq
        self.plan = plan
        self.added = added
        self.handle: asyncio.Task[Any] | None = None
        self.started: float | None = None
        self.cancel_reason: str | None = None
        self.done = False
        self.calls: CallLog | None = None

    @property
    def weight(self) -> float:
        """What a rate limit counts for each call of this task."""
        return self.opts.weight

    @property
    def account(self) -> Charge | None:
        """The task's usage account (estimates and fj.charge()), if it has one."""
        calls = self.calls
        return calls.account if calls is not None else None

    def close(self) -> None:
        """The task will never run: close its coroutine object, if it was given one."""
        if self.fn is coroutine_runner:
            self.args[0].close()

    def __repr__(self) -> str:
        return f"<task {self.name!r} group={self.group!r} seq={self.seq}>"


CallFn = Callable[[TaskState], Awaitable[Any]]
Gate = Callable[..., Coroutine[Any, Any, Any]]


class Plan:
    """What applies to the calls of tasks with the same options in the same group.

    ``call`` is the assembled chain (None on the plain path); the rest says what the
    engine has to do around it: make a :class:`CallLog`, an account, run admission and
    settle hooks.
    """

    __slots__ = (
        "accounts",
        "backend",
        "call",
        "hooks",
        "keeps",
        "logged",
        "plain",
        "reruns",
        "runner",
        "starts",
        "timeout",
    )

    def __init__(self) -> None:
        self.call: CallFn | None = None
        self.plain = True
        self.keeps = False  # its tasks need a CallLog (attempts, history, account...)
        self.starts = False  # start() has something to do (a CallLog, admission hooks)
        self.logged = False
        self.accounts = False
        self.reruns = False  # a retry, hedge or fallback may call the function again
        self.hooks: Hooks | None = None
        self.backend = "loop"  # the name of the backend its calls run on
        self.runner: Runner | None = None
        self.timeout: float | None = None

    def start(self, st: TaskState) -> str | None:
        """The task was admitted: make its call log and account, run the admission hooks.
        Returns a reason to skip it (e.g. ``"budget"``), or None."""
        if self.keeps:
            opts = st.opts
            account = Charge(None, opts.cost, opts.tokens) if self.accounts else None
            st.calls = CallLog(st.name, account, self.logged)
        hooks = self.hooks
        if hooks is not None:
            for admit in hooks.admit:
                reason: str | None = admit(st)
                if reason is not None:
                    return reason
        return None


class Planner:
    """Resolves and assembles the plans of one run (cached: most tasks share a few), and
    opens the run's backends as its plans name them (one runner per backend value)."""

    __slots__ = ("_cache", "_ctx", "_deadlines", "_events", "_last", "_loop_runner",
                 "_options", "_policies", "_runners", "_thread_runner")  # fmt: skip

    def __init__(
        self,
        options: RunOptions,
        policies: RunPolicies,
        ctx: Context,
        events: Observers,
        deadlines: Callable[[float], Deadlines],
        loop_runner: Runner,
        thread_runner: Runner,
    ) -> None:
        self._options = options
        self._policies = policies
        self._ctx = ctx
        self._events = events
        self._deadlines = deadlines
        self._loop_runner = loop_runner
        self._thread_runner = thread_runner
        self._cache: dict[Any, Plan] = {}
        # the options and plan of the last task planned: tasks added one after another
        # mostly have the same options
        self._last: tuple[Task, bool, Plan] | None = None
        # backend value -> (its name, its runner in this run); the loop and the thread
        # pool are the run's own, the others are opened when a plan first names them
        self._runners: dict[Any, tuple[str, Runner]] = {}
        for backend in (options.backend, *(g.backend for g in options.groups.values())):
            if backend is not None:
                self._runner(backend, True)

    def plan(self, opts: Task, group: str | None, is_async: bool) -> Plan:
        """The plan of a task with options ``opts`` in ``group``."""
        last = self._last
        if last is not None:
            prev, prev_async, prev_plan = last
            if (
                is_async is prev_async
                and group == prev.group
                and opts.timeout == prev.timeout
                and opts.retry is prev.retry
                and opts.hedge is prev.hedge
                and opts.idempotent is prev.idempotent
                and (opts.fallback is None) is (prev.fallback is None)
                and (opts.cost is None and opts.tokens is None)
                is (prev.cost is None and prev.tokens is None)
                and opts.backend is prev.backend
            ):
                return prev_plan
        key: Any
        if opts.default:
            key = (group, is_async)
        else:
            key = (
                group,
                is_async,
                opts.timeout,
                id(opts.retry) if opts.retry is not None else None,
                id(opts.hedge) if opts.hedge is not None else None,
                opts.idempotent,
                opts.fallback is not None,
                opts.cost is not None or opts.tokens is not None,
                opts.backend,  # a backend value is hashable; tasks on two never share a plan
            )
        plan = self._cache.get(key)
        if plan is None:
            plan = self._cache[key] = self._make(opts, group, is_async)
        self._last = (opts, is_async, plan)
        return plan

    def _runner(self, backend: Any, is_async: bool) -> tuple[str, Runner]:
        """The runner of ``backend`` in this run (None: the loop or the thread pool)."""
        if backend is None:
            if is_async:
                return "loop", self._loop_runner
            return "thread", self._thread_runner
        found = self._runners.get(backend)
        if found is None:
            name = backend.name
            if name == "loop":
                runner = self._loop_runner
            elif name == "thread":
                runner = self._thread_runner
            else:
                runner = backend.open(self._ctx.name, self._options.limit)
            found = self._runners[backend] = (name, runner)
        return found

    def backends(self) -> list[tuple[str, Runner]]:
        """The backends opened for this run other than the loop and the thread pool."""
        return [(n, r) for n, r in self._runners.values() if n not in ("loop", "thread")]

    def _make(self, opts: Task, group: str | None, is_async: bool) -> Plan:
        options = self._options
        settings = options.groups.get(group) if group is not None else None
        timeout = opts.timeout
        if timeout is None and settings is not None:
            timeout = settings.timeout
        if timeout is None:
            timeout = options.timeout
        retry: Any = opts.retry
        if retry is None and settings is not None:
            retry = settings.retry
        if retry is None:
            retry = options.retry
        if retry is False:
            retry = None
        hedge = opts.hedge
        if hedge is None and settings is not None and opts.idempotent:
            hedge = settings.hedge
        backend = opts.backend
        if backend is None and settings is not None:
            backend = settings.backend
        if backend is None:
            backend = options.backend
        hooks = self._policies.hooks(group)

        plan = Plan()
        plan.hooks = hooks
        plan.timeout = timeout
        plan.backend, plan.runner = self._runner(backend, is_async)
        # an async function awaited on the loop itself: the engine may await it inline
        on_loop = is_async and plan.backend == "loop"
        plan.accounts = opts.cost is not None or opts.tokens is not None or hooks.accounts
        plan.logged = hooks.waits or hedge is not None
        plan.reruns = retry is not None or hedge is not None or opts.fallback is not None
        # a retry or a fallback makes its task's log when it first needs it (after a
        # failure): a task that succeeds at once pays nothing for it
        plan.keeps = plan.logged or plan.accounts or not on_loop
        plan.starts = plan.keeps or bool(hooks.admit)
        plan.plain = (
            on_loop
            and timeout is None
            and not plan.reruns
            and not hooks.gated
            and not plan.accounts
            and not hooks.admit
            and not hooks.settle
        )
        if plan.plain:
            return plan
        ctx = self._ctx
        call: Callable[..., Awaitable[Any]] = _dispatch(
            plan.runner, on_loop, plan.accounts, timeout
        )
        if timeout is not None:
            call = _timed(call, self._deadlines, timeout)
        if plan.logged:
            gate = _gated(call, hooks, ctx)
            call = gate if hedge is None else _hedged(gate, hedge, hooks, ctx, self._events)
        elif hooks.gated:
            call = _watched(call, hooks, ctx, inline=on_loop and timeout is None)
        if retry is not None:
            warm_retry()  # tenacity is imported now, not at a first failure on the loop
            if timeout is not None and not plan.logged and not hooks.gated and on_loop:
                # the common "timeout and retry" plan: its first call in one frame
                call = _retrying_timed(call, retry, ctx, self._events, self._deadlines, timeout)
            else:
                call = _retrying(call, retry, ctx, self._events, plan.logged)
        if opts.fallback is not None:
            call = _with_fallback(call, ctx, self._thread_runner)
        plan.call = call
        return plan


# -- the layers, innermost first --------------------------------------------------------


def _dispatch(runner: Runner, on_loop: bool, accounts: bool, timeout: float | None) -> CallFn:
    """Where the call runs. Returns the call's awaitable itself (no frame of its own)."""
    if on_loop:
        if not accounts:
            return lambda st: st.fn(*st.args)

        def loop_call(st: TaskState) -> Awaitable[Any]:
            current_account.set(st.account)  # in the task's own context: what fj.charge() finds
            return st.fn(*st.args)  # type: ignore[no-any-return]

        return loop_call
    call = runner.call

    def backend_call(st: TaskState) -> Awaitable[Any]:
        calls = st.calls
        assert calls is not None
        if accounts:
            current_account.set(calls.account)
        return call(calls, st.fn, st.args, timeout)

    return backend_call


def _timed(inner: CallFn, deadlines_for: Callable[[float], Deadlines], timeout: float) -> CallFn:
    """One call under a timeout: its Task is cancelled at the deadline and the
    cancellation becomes TaskTimeout — what ``asyncio.timeout`` does, without a loop timer
    per call."""
    current_task = asyncio.current_task
    found: list[Deadlines] = []  # the run's queue for this timeout, once the run has a loop

    async def timed(st: TaskState) -> Any:
        task = current_task()
        assert task is not None
        cancelling = task.cancelling()
        if not found:
            found.append(deadlines_for(timeout))
        entry = found[0].start(task, st)
        try:
            return await inner(st)
        except asyncio.CancelledError:
            if entry.expired and task.uncancel() <= cancelling:
                calls = st.calls
                abandoned = ABANDONED if calls is not None and calls.abandoned else ""
                raise TaskTimeout(
                    f"task {st.name!r} timed out after {timeout:g}s{abandoned}"
                ) from None
            raise
        finally:
            found[0].end(entry)

    return timed


def _gated(inner: CallFn, hooks: Hooks, ctx: Context) -> Gate:
    """Every call passes the policies' hooks (wait for a rate, refuse an open circuit,
    count for an adaptive limit) and is logged with its start and end."""
    before = hooks.before
    begins = hooks.begins
    around = hooks.around

    async def gate(st: TaskState, hedge: bool = False) -> Any:
        clock = ctx.clock  # the run's: known once it runs (plans are made before)
        t0 = ctx.t0
        calls = st.calls
        assert calls is not None
        for hook in before:
            wait = hook(st)
            if wait is not None:
                await wait
        tokens = [None if s is None else s(st) for s, _ in around]
        number = calls.attempts
        start = clock()
        for hook in begins:  # the same instant as the attempt's start (a rate's windows)
            hook(st, start)
        busy = ctx.busy
        busy.enter()  # counted from here: the waits above are not a running call
        try:
            value = await inner(st)
        except BaseException as e:
            busy.leave()
            end = clock()
            error: BaseException = e
            if isinstance(e, asyncio.CancelledError):
                why = "hedge lost" if hedge else (st.cancel_reason or "cancelled")
                error = stopped_error(st.name, why, calls.abandoned)
            calls.log.append(Attempt(number, start - t0, end - t0, error, hedge, calls.where))
            for (_, ended), token in zip(around, tokens, strict=True):
                if ended is not None:
                    ended(st, token, e, end - start)
            raise
        busy.leave()
        end = clock()
        calls.log.append(Attempt(number, start - t0, end - t0, None, hedge, calls.where))
        for (_, ended), token in zip(around, tokens, strict=True):
            if ended is not None:
                ended(st, token, None, end - start)
        return value

    return gate


def _inner_code(outer: Callable[..., Any], name: str) -> Any:
    return next(c for c in outer.__code__.co_consts if getattr(c, "co_name", None) == name)


def _gate_frame(f: dict[str, Any]) -> tuple[Any, str, Any, tuple[Any, ...]]:
    st = f["st"]
    return f["ctx"], st.name, st.fn, st.args


# a hedge's duplicate makes its call in an asyncio Task of its own, from the gate
register_frame(_inner_code(_gated, "gate"), _gate_frame)


def _watched(inner: CallFn, hooks: Hooks, ctx: Context, inline: bool) -> CallFn:
    """The policies' hooks around every call, when none of them makes calls wait as a rule
    (a circuit breaker, an adaptive limit): no log, no token unless a state wants one. A
    call that did wait (a server's pause) starts when the wait ends."""
    before = hooks.before
    begins = hooks.begins
    around = hooks.around
    tokens = hooks.tokens
    ended_hooks = [ended for _, ended in around if ended is not None]

    async def watched(st: TaskState) -> Any:
        try:
            for hook in before:
                wait = hook(st)
                if wait is not None:
                    await wait
                    st.started = ctx.clock()
            for begin in begins:
                begin(st, st.started)
        except BaseException:
            if st.calls is None or not st.calls.log:
                st.started = None  # refused (an open circuit) or stopped before any call
            raise
        if tokens:
            pairs = [(ended, None if started is None else started(st)) for started, ended in around]
            try:
                value = await inner(st)
            except BaseException as e:
                duration = ctx.clock() - (st.started or 0.0)
                for ended, token in pairs:
                    if ended is not None:
                        ended(st, token, e, duration)
                raise
            duration = ctx.clock() - (st.started or 0.0)
            for ended, token in pairs:
                if ended is not None:
                    ended(st, token, None, duration)
            return value
        try:
            # an async function on the loop is awaited here (no dispatch frame)
            value = await (st.fn(*st.args) if inline else inner(st))
        except BaseException as e:
            for ended in ended_hooks:
                ended(st, None, e, 0.0)
            raise
        for ended in ended_hooks:
            ended(st, None, None, 0.0)
        return value

    return watched


def _hedged(
    gate: Gate,
    hedge: Hedge,
    hooks: Hooks,
    ctx: Context,
    events: Observers,
) -> CallFn:
    """The call and its duplicates race (each through the gate); the first success wins
    and the others are cancelled."""
    extra = hooks.admit_extra
    listeners = events.hedge_started

    async def hedged(st: TaskState) -> Any:
        clock = ctx.clock
        calls = st.calls
        assert calls is not None
        loop = asyncio.get_running_loop()
        start = clock()
        running: set[asyncio.Task[Any]] = {loop.create_task(gate(st, False))}
        delays = hedge.delays()
        number = 0
        first_error: BaseException | None = None
        try:
            while running:
                wait = max(0.0, start + delays[0] - clock()) if delays else None
                done, running = await asyncio.wait(
                    running, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
                for t in done:
                    exc = t.exception()
                    if exc is None:
                        return t.result()
                    if first_error is None:
                        first_error = exc
                if not done and delays:
                    delays.pop(0)
                    if not all(admit(st) for admit in extra):
                        delays.clear()  # no money for a duplicate
                        continue
                    if not extra and calls.account is not None:
                        calls.account.calls += 1  # the estimate counts once per call
                    number += 1
                    if listeners:
                        events.send(
                            listeners,
                            HedgeStarted(
                                ctx.name,
                                clock() - ctx.t0,
                                st.name,
                                st.group,
                                calls.attempts,
                                number,
                            ),
                        )
                    running.add(loop.create_task(gate(st, True)))
            assert first_error is not None
            raise first_error
        finally:
            for t in running:
                t.cancel()
            if running:
                await asyncio.wait(running)

    return hedged


def _retrying(
    inner: CallFn, policy: Retry, ctx: Context, events: Observers, logged: bool
) -> CallFn:
    """The first call is bare; only after it failed does the retry policy decide."""

    async def retrying(st: TaskState) -> Any:
        try:
            return await inner(st)
        except CircuitOpen:
            raise  # refused by an open circuit: never retried
        except Exception as e:
            return await _retry(inner, policy, ctx, events, logged, st, e)

    return retrying


def call_log(st: TaskState) -> CallLog:
    """The task's call log, made now if its plan did not need one at the start."""
    calls = st.calls
    if calls is None:
        calls = st.calls = CallLog(st.name, None, False)
    return calls


def _retrying_timed(
    timed: CallFn,
    policy: Retry,
    ctx: Context,
    events: Observers,
    deadlines_for: Callable[[float], Deadlines],
    timeout: float,
) -> CallFn:
    """retry(timeout(dispatch)) for an async function on the loop, with the first call
    made in this one frame; retries go through ``timed`` as usual."""
    current_task = asyncio.current_task
    found: list[Deadlines] = []

    async def retrying_timed(st: TaskState) -> Any:
        # no hedge in this plan: the task's own asyncio Task makes the call
        task = st.handle or current_task()
        assert task is not None
        cancelling = task.cancelling()
        if not found:
            found.append(deadlines_for(timeout))
        deadlines = found[0]
        entry = deadlines.start(task, st)
        error: Exception
        try:
            value = await st.fn(*st.args)
        except asyncio.CancelledError:
            deadlines.end(entry)
            if not (entry.expired and task.uncancel() <= cancelling):
                raise
            error = TaskTimeout(f"task {st.name!r} timed out after {timeout:g}s")
        except Exception as e:
            deadlines.end(entry)
            error = e
        else:
            deadlines.end(entry)
            return value
        return await _retry(timed, policy, ctx, events, False, st, error)

    return retrying_timed


async def _retry(
    inner: CallFn,
    policy: Retry,
    ctx: Context,
    events: Observers,
    logged: bool,
    st: TaskState,
    error: Exception,
) -> Any:
    calls = call_log(st)
    assert st.started is not None
    clock = ctx.clock
    t0 = ctx.t0
    log = calls.log
    if not logged:
        log.append(Attempt(1, st.started - t0, clock() - t0, error, False, calls.where))
    state = policy.new_state(st.started)
    while True:
        now = clock()
        state.attempt_number = calls.attempts
        delay = policy.next_delay(state, error, now)
        if events.attempt_failed:
            events.send(
                events.attempt_failed,
                AttemptFailed(ctx.name, now - t0, st.name, st.group, calls.attempts, error, delay),
            )
        if delay is None or ctx.stopping is not None:
            raise error
        if delay > 0:
            await asyncio.sleep(delay)
        calls.attempts += 1
        a_start = clock()
        if events.attempt_started:
            events.send(
                events.attempt_started,
                AttemptStarted(ctx.name, a_start - t0, st.name, st.group, calls.attempts),
            )
        try:
            value = await inner(st)
        except CircuitOpen:
            calls.attempts -= 1  # refused: this call was never made (and is not retried)
            raise
        except Exception as e:
            if not logged:
                log.append(Attempt(calls.attempts, a_start - t0, clock() - t0, e, False,
                                   calls.where))  # fmt: skip
            error = e
            continue
        except asyncio.CancelledError:
            if not logged:  # the call the run stopped (deadline, fail_fast...) is history too
                stopped = stopped_error(st.name, st.cancel_reason or "cancelled", calls.abandoned)
                log.append(Attempt(calls.attempts, a_start - t0, clock() - t0, stopped, False,
                                   calls.where))  # fmt: skip
            raise
        if not logged:
            log.append(Attempt(calls.attempts, a_start - t0, clock() - t0, None, False,
                               calls.where))  # fmt: skip
        return value


def _with_fallback(inner: CallFn, ctx: Context, threads: Runner) -> CallFn:
    """A task that failed for good (after its retries) is answered by its fallback, called
    with the task's own arguments; the Outcome keeps why the task itself failed."""

    async def with_fallback(st: TaskState) -> Any:
        try:
            return await inner(st)
        except Exception as e:
            calls = call_log(st)
            if ctx.stopping is not None:
                raise
            fallback = st.opts.fallback
            assert fallback is not None
            where = calls.where  # the fallback is no call of the task's: keep where it ran
            try:
                if inspect.iscoroutinefunction(fallback):
                    value = await fallback(*st.args)
                else:
                    value = await threads.call(calls, fallback, st.args, None)
            except Exception as fallback_error:
                if fallback_error.__context__ is None:
                    fallback_error.__context__ = e
                raise
            finally:
                calls.where = where
            calls.fallback_error = e
            return value

    return with_fallback


# -- the ending, in one place -----------------------------------------------------------


def outcome_of(
    st: TaskState,
    value: Any,
    exc: BaseException | None,
    start: float | None,
    end: float,
    t0: float,
) -> Outcome:
    """The Outcome of a task that was admitted: how its call ended, mapped to a Status.

    ``exc`` is what the call raised (None: it returned ``value``); ``start`` and ``end``
    are run-clock readings around it. Runs the settle hooks (budget) and accounts the
    task's cost.
    """
    calls = st.calls
    status = _OK
    error: BaseException | None = None
    reason: str | None = None
    if exc is not None:
        status, error, reason = _ending(st, exc)
        if start is None:  # no call was made: refused, or stopped while it waited
            if status is _TIMED_OUT or status is _CANCELLED:
                status, reason = _SKIPPED, st.cancel_reason or reason
                error = TaskSkipped(reason or "cancelled")
            return _settled(st, tuple.__new__(Outcome, (
                st.name, status, None, error, reason, 0, None, None, None, st.group, st.seq,
                (), False, None, None, False,
            )))  # fmt: skip
    assert start is not None
    if calls is None:  # no call log: one call, from start to end
        s = start - t0
        fields = (st.name, status, value, error, reason, 1, s, end - t0, None, st.group, st.seq,
                  (), False, None, s - st.added, False)  # fmt: skip
        return tuple.__new__(Outcome, fields)
    log = calls.log
    first = start - t0
    if calls.logged:
        numbers = {a.number for a in log if not a.hedge}
        attempts = len(numbers)
        if log:
            first = min(a.started for a in log)
        elif exc is not None:  # stopped or refused before any call was made
            if status is _TIMED_OUT or status is _CANCELLED:
                status, reason = _SKIPPED, st.cancel_reason or reason
                error = TaskSkipped(reason or "cancelled")
            return _settled(st, Outcome(
                st.name, status, None, error, reason, 0, None, None, None, st.group, st.seq,
            ))  # fmt: skip
    else:
        attempts = calls.attempts
    if calls.abandoned and exc is not None:
        reason = "abandoned"  # a blocking call still runs in its thread; not waited for
    fallback = calls.fallback_error is not None and status is _OK
    if fallback:
        error = calls.fallback_error
    if log:
        ordered = tuple(sorted(log, key=lambda a: a.started))
    elif calls.where is not None:  # one call, off the loop: its history says where it ran
        ordered = (Attempt(attempts, first, end - t0, error, False, calls.where),)
    else:
        ordered = ()
    outcome = Outcome(
        st.name, status, value, error, reason, attempts, first, end - t0, None, st.group,
        st.seq, ordered, fallback, None, first - st.added,
    )  # fmt: skip
    return _settled(st, outcome)


def _settled(st: TaskState, outcome: Outcome) -> Outcome:
    if st.done:  # abandoned: settled when it was recorded
        return outcome
    plan = st.plan
    hooks = plan.hooks
    if hooks is not None:
        for settle in hooks.settle:
            settle(st)
    account = st.account
    if account is None or outcome.started is None:
        return outcome
    usd, tokens = account.totals()
    if usd is None and tokens is None:
        return outcome
    return outcome._replace(cost=usd, tokens=None if tokens is None else round(tokens))


def _ending(st: TaskState, exc: BaseException) -> tuple[Status, BaseException, str | None]:
    if isinstance(exc, asyncio.CancelledError):
        reason = st.cancel_reason
        if reason is not None:
            # our own cancellation (deadline, fail_fast, quorum...): the asyncio Task goes
            # on (to the next task it runs), so take the request back
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
        else:
            reason = "cancelled"
        calls = st.calls
        abandoned = calls is not None and calls.abandoned
        if abandoned:
            reason = "abandoned"
        status = _TIMED_OUT if st.cancel_reason == "deadline" else _CANCELLED
        return status, stopped_error(st.name, st.cancel_reason or reason, abandoned), reason
    if isinstance(exc, TaskTimeout):
        return _TIMED_OUT, exc, "timeout"
    if isinstance(exc, CircuitOpen):
        return _FAILED, exc, "circuit_open"
    if isinstance(exc, BudgetExceeded):
        return _FAILED, exc, "budget"
    return _FAILED, exc, None


def skipped(st: TaskState, reason: str) -> Outcome:
    """The Outcome of a task that never started (deadline, budget, fail-fast...)."""
    st.close()
    return Outcome(
        st.name, _SKIPPED, None, TaskSkipped(reason), reason, 0, None, None, None, st.group,
        st.seq,
    )  # fmt: skip
