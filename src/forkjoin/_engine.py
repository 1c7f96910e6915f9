"""The engine of one run: its lifecycle, its tasks, its stop.

Where things happen, for a newcomer:

- a task is *added* in :meth:`Engine.prepare` / :meth:`Engine.add` (validated, planned);
- one that depends on others waits in the run's dependency graph (:mod:`._deps`) until
  they have ended; the graph then releases it to admission;
- it is *admitted* by :mod:`._admission` (slots, priorities), which calls :meth:`_start`;
- it *runs* in :meth:`Engine._drive`: the plain path awaits ``fn(*args)`` itself, any
  other awaits the call pipeline of its plan (:mod:`._call`: timeout, retries...);
- its Outcome is *written* by :mod:`._record` (results, stream, observers, early stops);
- the run *stops early* in :meth:`Engine.stop` (deadline, fail-fast, quorum, cancellation).

Hot-path notes (see bench/RESULTS.md): a task no policy touches costs an asyncio Task, its
record and its Outcome, nothing else; events are built only when an observer listens.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import itertools
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from types import FunctionType
from typing import TYPE_CHECKING, Any, Final

from . import _refs
from ._admission import Admission
from ._backends._loop import LoopRunner
from ._backends._thread import ThreadRunner
from ._call import FATAL, Planner, TaskState, outcome_of, skipped
from ._deadlines import Deadlines
from ._deps import Graph, dependencies
from ._errors import DuplicateTaskName, InvalidPolicy, TaskTimeout, stopped_error
from ._events import AttemptStarted, Event, Observers, RunFinished, RunStarted, TaskQueued
from ._identity import register_frame
from ._logging import with_logging
from ._options import RunOptions
from ._outcome import Outcome, Results, RunInfo, Status
from ._policies._base import WAITING, current_run
from ._policies._budget import current_account
from ._policies._rate import RateLimitState
from ._policies._run import RunPolicies
from ._record import Busy, Recorder
from ._refs import fan_out
from ._task import (
    DEFAULTS,
    Task,
    check_late_binding,
    close_unstarted,
    coroutine_runner,
    is_async_callable,
    split,
)

if TYPE_CHECKING:
    from ._journal import JournalSession

__all__ = ["Engine"]

_run_ids = itertools.count(1)

# Most tasks one asyncio Task runs back to back in a limited run before it hands the next
# one to a new Task (see _finish): tasks that never suspend cannot hold the loop for long.
CHAIN_MAX: Final = 64

# Seconds a cancelled call (a stop, a timeout) has to end before the run gives up on it:
# a call that swallows its cancellation is then recorded as "abandoned" and the run goes
# on without it (it may still be running, and is reported so).
ABANDON_GRACE: Final = 1.0

# how a process killed by SIGTERM exits (128 + 15), once a journaled run it stopped has
# committed what finished
EXIT_TERMINATED: Final = 143

_OK: Final = Status.OK
_STOCK_TIME = asyncio.BaseEventLoop.time


class Engine:
    """One run (see the module docstring). Façades: ``Fan``, ``gather``, ``run`` and the map
    family; this class is not public."""

    def __init__(self, options: RunOptions, *, keep: bool = True, total: int | None = None) -> None:
        self.options = options
        self.name = options.name or f"run-{next(_run_ids)}"
        observers = options.observers
        if options.progress:  # the live display is one more observer; nothing when off
            from ._progress import with_progress

            observers = with_progress(observers, options.progress, total)
        # logging's convention: the application enabling "forkjoin" logs every run; one
        # level check per run, and no observer (no event built) when it is off
        observers = with_logging(observers)
        self.events = Observers(observers)
        self.state = "new"
        self.stop_reason: str | None = None
        self.stopped_at: float | None = None  # the run's clock when it stopped early
        self.fatal: BaseException | None = None  # a KeyboardInterrupt/SystemExit of a task
        self.keep = keep
        self.t0 = 0.0
        self.wall0 = 0.0
        self.wall = 0.0
        self.clock: Callable[[], float] = time.monotonic
        self.policies = RunPolicies(options, self)
        self.loop_runner = LoopRunner()
        self.threads = ThreadRunner(self.name, options.limit)
        self._deadlines: dict[float, Deadlines] = {}
        self.planner = Planner(
            options,
            self.policies,
            self,
            self.events,
            self._deadlines_for,
            self.loop_runner,
            self.threads,
        )
        self._seq = 0
        self._pending = 0
        self._parked: list[TaskState] = []  # answered WAITING by a policy (the budget)
        self._room: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._stop_listeners: list[Callable[[str], None]] = []
        # while a finishing task admits the next ones: the asyncio Task that may run the
        # first admitted one itself, and the task it was given
        self._handoff: asyncio.Task[Any] | None = None
        self._handed: TaskState | None = None
        self._deadline_handle: asyncio.TimerHandle | None = None
        self._token: contextvars.Token[Any] | None = None
        self.results: Results | None = None
        self.busy = Busy()  # calls running now (map runs report its peak)
        self.session: JournalSession | None = None  # the journal, while the run is open
        self.terminated = False  # a journaled run stopped by SIGTERM
        self._sigterm = False
        self._uid: str | None = None
        self._prepared: list[TaskState] = []
        self._closing: list[Awaitable[Any]] = []  # backends letting go (see release)
        self.graph: Graph | None = None  # made when a task first depends on another
        # zero-argument closures spawned in this loop pass (the late-binding check)
        self._spawned_closures: list[tuple[str, FunctionType]] | None = None

        self.recorder = Recorder(
            self.name,
            self.events,
            self.elapsed,
            self.stop,
            keep=keep,
            quorum=options.quorum,
            stop_after=options.stop_after_failures,
            fail_fast=options.on_error == "fail_fast",
        )
        self._queued_subs = self.events.task_queued
        self._started_subs = self.events.attempt_started

    # -- what policies and the pipeline may use (RunContext) ---------------------------------

    @property
    def pending(self) -> int:
        """How many tasks have no Outcome yet."""
        return self._pending

    @property
    def stopping(self) -> str | None:
        """Why the run is stopping (None while it runs on)."""
        return self.stop_reason

    def elapsed(self) -> float:
        """Seconds since the run started, on the run's clock."""
        return self.clock() - self.t0

    def set_limit(self, group: str, limit: int) -> None:
        self.admission.set_limit(group, limit)

    def emit(self, hook: str, event: Event) -> None:
        self.events.emit(hook, event)

    def listens(self, hook: str) -> bool:
        return self.events.listens(hook)

    def _deadlines_for(self, timeout: float) -> Deadlines:
        deadlines = self._deadlines.get(timeout)
        if deadlines is None:
            deadlines = self._deadlines[timeout] = Deadlines(self.loop, timeout, self._timed_out)
        return deadlines

    def _timed_out(self, calls: list[Any]) -> None:
        """Calls just cancelled by their timeout: those still running after the grace
        ignored it, and their tasks are abandoned."""
        self.loop.call_at(self.clock() + ABANDON_GRACE, self._abandon_calls, calls)

    def _abandon_calls(self, calls: list[Any]) -> None:
        for call in calls:
            st = call.site
            if not call.done and isinstance(st, TaskState) and not st.done:
                timeout = self._timeout_of(st)
                error = TaskTimeout(
                    f"task {st.name!r} timed out after {timeout:g}s and ignored its "
                    "cancellation: abandoned"
                )
                self._abandon(st, Status.TIMED_OUT, error)

    def _timeout_of(self, st: TaskState) -> float:
        return st.plan.timeout or 0.0

    def readmit(self) -> None:
        """A policy made room: the tasks it kept waiting ask admission again (in order)."""
        parked = self._parked
        if parked:
            self._parked = []
            self.admission.push_front(parked)
            self.admission.admit_soon()
        room = self._room
        if room is not None and not room.done():
            room.set_result(None)

    def room(self) -> asyncio.Future[None]:
        """A future that :meth:`readmit` resolves (a map worker waits on it)."""
        room = self._room
        if room is None or room.done():
            room = self._room = self.loop.create_future()
        return room

    def on_stop(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(reason)`` when the run stops early."""
        self._stop_listeners.append(listener)

    # -- lifecycle -----------------------------------------------------------------------

    async def begin(self) -> None:
        """Start the backends the run knows of (a process pool, a Dask cluster) and open
        the run: its clock starts once they are ready, so a cluster's start-up counts
        against no task's timeout. Nothing is left started if one fails."""
        backends = self.planner.backends()
        if backends:
            if self.state != "new":
                raise RuntimeError("a Fan runs once: make a new fj.Fan(...) for another run")
            try:
                for _, runner in backends:
                    await runner.start()
            except BaseException:
                self._close_backends()
                await self.release()
                raise
        self.open()

    def open(self) -> None:
        if self.state != "new":
            raise RuntimeError("a Fan runs once: make a new fj.Fan(...) for another run")
        loop = asyncio.get_running_loop()
        journal = self.options.journal
        if journal is not None:
            # first: a journal that cannot be used (JournalError) leaves nothing started
            try:
                session = self.session = journal.open(by_index=not self.keep)
            except BaseException:
                for st in self._prepared:
                    st.close()  # coroutine objects that will never run
                self._prepared = []
                raise
            self.recorder.set_journal(session)
            self.policies.carry(session.spent_usd, session.spent_tokens)
            self._watch_sigterm(loop)
        self.loop = loop
        # the stock loops' time() is time.monotonic(): call it directly (no Python frame)
        self.clock = time.monotonic if type(loop).time is _STOCK_TIME else loop.time
        self.t0 = self.clock()
        self.wall0 = time.time()
        options = self.options
        self.admission = Admission(options.limit, dict(options.group_limits), self._start, loop)
        # a Task straight from its class skips create_task's Python frame, unless the
        # application set a task factory of its own
        self._task: Callable[[Any], asyncio.Task[Any]] = (
            functools.partial(asyncio.Task, loop=loop)
            if loop.get_task_factory() is None
            else loop.create_task
        )
        self.state = "running"
        self._token = current_run.set(self)
        if options.deadline is not None:
            self._deadline_handle = loop.call_at(self.t0 + options.deadline, self.stop, "deadline")
        if self.events.run_started:
            self.events.emit("run_started", RunStarted(self.name, 0.0, options.settings()))

    def _watch_sigterm(self, loop: asyncio.AbstractEventLoop) -> None:
        """SIGTERM stops a journaled run like a cancellation (what finished is committed),
        then the process exits 143; only where nobody else handles the signal."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        try:
            loop.add_signal_handler(signal.SIGTERM, self._terminate)
        except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover
            return
        self._sigterm = True

    def _terminate(self) -> None:
        self.terminated = True
        self.stop("terminated")

    async def wait(self) -> None:
        """Wait until every task has its Outcome. An outer cancellation stops the run
        first and is re-raised (with its message) once every task has ended."""
        cancelled: asyncio.CancelledError | None = None
        while self._pending > 0:
            graph = self.graph
            if graph is not None and graph.stalled:
                # the run is closing and what they wait for was never added: skip them
                graph.abandon()
                continue
            self._waiter = self.loop.create_future()
            try:
                await self._waiter
            except asyncio.CancelledError as e:
                cancelled = e
                self.stop("cancelled")
        if cancelled is not None:
            raise asyncio.CancelledError(*cancelled.args)

    def close(self, report: Any = None) -> Results:
        """End the run: no timer, thread pool or context is left behind. ``report`` is the
        RunReport of a run that keeps no Outcomes (map)."""
        self.state = "closed"
        self.wall = self.clock() - self.t0
        session = self.session
        failed: BaseException | None = None
        if session is not None:
            self.session = None
            if self._sigterm:
                self._sigterm = False
                self.loop.remove_signal_handler(signal.SIGTERM)
            try:
                session.close()  # the last commit
            except BaseException as e:  # raised once the rest is cleaned up
                failed = e
        if self._deadline_handle is not None:
            self._deadline_handle.cancel()
        for deadlines in self._deadlines.values():
            deadlines.close()
        self.threads.close()
        self._close_backends()
        if self._token is not None:
            try:
                current_run.reset(self._token)
            except ValueError:  # exited in another context than entered: nothing to restore
                current_run.set(None)
            self._token = None
        tasks = self.recorder.tasks
        if self._pending:  # only after an error in the engine itself: keep what ended
            tasks = {n: o for n, o in tasks.items() if isinstance(o, Outcome)}
        results = Results(tasks, self.info(), report)
        self.results = results
        if self.events.run_finished:
            self.events.emit("run_finished", RunFinished(self.name, self.wall, results))
        if failed is not None:
            raise failed
        return results

    def _close_backends(self) -> None:
        for _, runner in self.planner.backends():
            closing = runner.close()
            if closing is not None:
                self._closing.append(closing)

    async def release(self) -> None:
        """Wait until the backends have let go of what they started (a pool's workers, a
        cluster): the run returns only then, so nothing it started outlives it."""
        while self._closing:
            closing = self._closing.pop()
            try:
                await closing
            except Exception as e:  # the results stand; the backend's trouble is logged
                logging.getLogger("forkjoin").warning("closing a backend failed: %r", e)

    def info(self) -> RunInfo:
        """What the report needs beyond the Outcomes."""
        policies = self.policies.report()
        backends: dict[str, Any] = {}
        for name, runner in self.planner.backends():
            shown = runner.info()
            if shown:
                n = sum(1 for k in backends if k.split(" ")[0] == name)
                backends[name if not n else f"{name} {n + 1}"] = shown
        if backends:
            policies = {**policies, "backends": backends}
        return RunInfo(
            wall=self.wall,
            started_at=self.wall0,
            limit=self.options.limit,
            limits=dict(self.admission.group_limits) if self.state != "new" else {},
            run=self.name,
            policies=policies,
            dependencies=dict(self.graph.edges) if self.graph is not None else {},
        )

    def raise_fatal(self) -> None:
        """Re-raise a KeyboardInterrupt or SystemExit a task raised, now that every other
        task has been stopped and recorded."""
        if self.fatal is not None:
            raise self.fatal
        if self.terminated:
            raise SystemExit(EXIT_TERMINATED)

    def task_key(self, name: str, fn: Any, args: tuple[Any, ...]) -> str:
        """The idempotency key of task ``name`` calling ``fn(*args)``: the journal's run id
        and the task's identity, else this run's own id and the task's identity."""
        session = self.session
        if session is not None:
            return session.key_of(name, session.fingerprint(fn, args))
        import hashlib
        import uuid

        from ._journal import call_text

        if self._uid is None:
            self._uid = uuid.uuid4().hex
        text = call_text(fn, args).encode("utf-8", "surrogatepass")
        return f"{self._uid}:{name}:{hashlib.blake2b(text, digest_size=8).hexdigest()}"

    # -- adding tasks --------------------------------------------------------------------

    def prepare(self, tasks: Any) -> list[TaskState]:
        """Validate everything ``gather()`` was given, before anything starts (no partial
        runs): names, task values, their options against the run's policies."""
        if not isinstance(tasks, Mapping):
            if isinstance(tasks, list | tuple):
                close_unstarted(list(tasks))
            raise TypeError(
                f"expected a mapping of task name -> task, got {type(tasks).__name__} "
                "(name your tasks: results are keyed)"
            )
        states: list[TaskState] = []
        append = states.append
        seen_coros: dict[int, str] = {}
        asyncs: dict[int, bool] = {}  # fn id -> async? (the fns stay alive meanwhile)
        plans: dict[bool, Any] = {}  # async? -> the plan of a task with default options
        plan_of = self.planner.plan
        seq = self._seq
        defaults = DEFAULTS
        closures: list[tuple[str, FunctionType]] = []
        try:
            for name, spec in tasks.items():
                if type(name) is not str:
                    raise TypeError(f"task names must be strings, got {name!r}")
                if type(spec) is tuple and spec and callable(spec[0]):
                    fn = spec[0]
                    args = spec[1:]
                    opts = defaults
                else:
                    if type(spec) is Task:  # split()'s first case, without its frame
                        fn, args, opts = spec.fn, spec.args, spec
                    else:
                        fn, args, opts = split(f"tasks[{name!r}]", spec)
                    if (
                        not args
                        and type(fn) is FunctionType
                        and (fn.__closure__ is not None or fn.__name__ == "<lambda>")
                    ):
                        closures.append((name, fn))  # checked below: the late-binding trap
                    elif fn is coroutine_runner:
                        other = seen_coros.setdefault(id(args[0]), name)
                        if other != name:
                            raise InvalidPolicy(
                                f"tasks[{name!r}]: the same coroutine object is also "
                                f"tasks[{other!r}]; a coroutine runs once: give each task "
                                "its own (or pass the function: (fn, *args))"
                            )
                if opts is defaults:
                    is_async = asyncs.get(id(fn))
                    if is_async is None:
                        is_async = asyncs[id(fn)] = is_async_callable(fn)
                    plan = plans.get(is_async)
                    if plan is None:
                        plan = plans[is_async] = plan_of(defaults, None, is_async)
                    if fn is coroutine_runner and plan.reruns:
                        self._state(name, fn, args, opts, seq)  # raises, naming the task
                    append(TaskState(name, fn, args, opts, None, seq, plan, 0.0))
                elif opts.default and fn is opts.fn and fn is not coroutine_runner:
                    # an fj.task whose options leave its call as plain as the defaults (a
                    # priority, what it waits for): the plan of the defaults
                    is_async = opts.is_async
                    plan = plans.get(is_async)
                    if plan is None:
                        plan = plans[is_async] = plan_of(defaults, None, is_async)
                    append(TaskState(name, fn, args, opts, None, seq, plan, 0.0))
                else:
                    append(self._state(name, fn, args, opts, seq))
                seq += 1
            if len(closures) > 1:
                check_late_binding(closures)
            names = self.recorder.tasks
            if names:  # a run that already has tasks (names in one mapping are unique)
                for st in states:
                    if st.name in names:
                        raise DuplicateTaskName(f"task name {st.name!r} is already used")
            if _refs.made:  # only a process that ever described a dependency looks for them
                self._declare(states)
        except BaseException:
            close_unstarted(tasks)
            raise
        self._seq = seq
        self._prepared = states  # until they start (start_all empties the list)
        return states

    def _declare(self, states: list[TaskState]) -> None:
        """Find what the tasks of a gather wait for, and check it all (unknown names,
        cycles) before anything starts; a run where none waits has no graph."""
        graph = self._new_graph()
        if graph.plan(states):
            self._use_graph(graph)

    def resume(self, ended: list[tuple[TaskState, Outcome]]) -> None:
        """End tasks of the run with Outcomes recorded earlier, without calling them (a
        journal's resume), before they are admitted: an ok one counts as ended ok for
        what depends on it, which is given its recorded value (``Outcome.value``)."""
        if self.graph is not None:
            # first out of the graph, all of them: ending one must not release another
            # that is about to be ended too (the middle of a chain)
            self.graph.forget([st for st, _ in ended])
        for st, outcome in ended:
            self._end(st, outcome)

    def _make_graph(self) -> Graph:
        return self._use_graph(self._new_graph())

    def _use_graph(self, graph: Graph) -> Graph:
        self.graph = graph
        self.recorder.set_after(graph.ended)
        return graph

    def _new_graph(self) -> Graph:
        return Graph(
            self.recorder.tasks.get,
            self._ready,
            self._end,
            self._spawn,
            self.elapsed,
            lambda: self._pending,
            self._stalled,
        )

    def _state(self, name: str, fn: Any, args: tuple[Any, ...], opts: Task, seq: int) -> TaskState:
        is_async = opts.is_async if fn is opts.fn else is_async_callable(fn)
        plan = self.planner.plan(opts, opts.group, is_async)
        if fn is coroutine_runner and plan.reruns:
            args[0].close()
            raise InvalidPolicy(
                f"task {name!r}: a coroutine object runs only once, so the run's retry, "
                "hedge or fallback cannot call it again; pass the function and its "
                "arguments: (fn, *args) or fj.task(fn, *args)"
            )
        if opts.weight != 1 and plan.hooks is not None:
            for state in plan.hooks.states:
                if isinstance(state, RateLimitState):
                    state.policy.check_weight(f"task {name!r}: weight", opts.weight)
        return TaskState(name, fn, args, opts, opts.group, seq, plan, 0.0)

    def start_all(
        self, states: list[TaskState], resumed: Mapping[str, Outcome] | None = None
    ) -> None:
        """Put prepared tasks into the run: limited ones queue for a slot, the others are
        fed a batch per loop pass (see _admission.FEED_BATCH); those that wait for others
        stay with the dependency graph. Takes the list over (it is emptied, so a finished
        task's record is not kept alive by it). ``resumed``: the recorded Outcomes of
        tasks that are not to be called (see :meth:`resume`)."""
        names = self.recorder.tasks
        adm = self.admission
        self._pending += len(states)
        for st in states:
            names[st.name] = st
        if self.session is not None:
            # a task that waits for others is looked up when it is released, on the
            # arguments its references were filled with (see _ready)
            nodes = self.graph.nodes if self.graph is not None else ()
            found = self._journaled([st for st in states if st.name not in nodes])
            if found:
                resumed = {**resumed, **found} if resumed else found
        if self.stop_reason is not None:
            for st in states:
                done = resumed.get(st.name) if resumed else None
                self._end(st, done if done is not None else skipped(st, self.stop_reason))
            states.clear()
            return
        subs = self._queued_subs
        if subs:
            name = self.name
            events = self.events
            for st in states:
                event = TaskQueued(name, 0.0, st.name, st.group, st.priority)
                for observer, method in subs:
                    try:
                        method(event)
                    except Exception:
                        events.failed(observer, event)
        ended = [(st, resumed[st.name]) for st in states if st.name in resumed] if resumed else ()
        if self.graph is not None:  # those that wait for others stay out of admission
            held = states
            states = self.graph.hold_all(held)
            held.clear()
        if ended:
            # what they release goes to admission from the graph; the rest is admitted here
            self.resume(list(ended))
            states = [st for st in states if not st.done]
        glimits = adm.group_limits
        if adm.limit is None and not glimits:
            adm.feed_all(states)  # added in the given order, started highest priority first
        elif adm.limit is not None:
            adm.push_all(states)
            adm.admit()
        else:
            for st in states:
                if adm.limited(st.group):
                    adm.push(st)
                else:
                    adm.feed(st)
            if adm.queued:
                adm.admit()
        states.clear()
        adm.feed_now()

    def _journaled(self, states: list[TaskState]) -> dict[str, Outcome]:
        """The Outcomes the journal holds, ok and for the same call, of these tasks (they are
        then not admitted, nor called: the caller ends them with :meth:`resume`)."""
        session = self.session
        assert session is not None
        fingerprint = session.fingerprint
        if session.empty:  # the first run: nothing to resume, only fingerprints to note
            fps = session.fps
            for st in states:
                if st.fn is not fan_out:
                    fps[st.name] = fingerprint(st.fn, st.args)
            return {}
        resume = session.resume
        found: dict[str, Outcome] = {}
        for st in states:
            if st.fn is fan_out:
                continue  # a fan-out group spawns again: its tasks are what resume
            outcome = resume(st.name, fingerprint(st.fn, st.args), st.group, st.seq)
            if outcome is not None:
                if st.fn is coroutine_runner:
                    st.close()  # a coroutine object that will never be awaited
                found[st.name] = outcome
        session.warn_changed()
        return found

    def _spawn(self, name: str, fn: Any, args: tuple[Any, ...], opts: Task) -> None:
        """Add a task of a fan-out group (its arguments are final: nothing to look for)."""
        self.add(name, fn, args, opts, spawned=True)

    def _check_spawned_closure(self, name: str, fn: FunctionType) -> None:
        """The late-binding trap for ``fan.spawn``: zero-argument closures spawned in one
        stretch of the loop (``for n in names: fan.spawn(n, lambda: fetch(n))``), none of
        which can have run yet, are checked as ``gather`` checks a mapping of them. The
        list is forgotten at the next loop pass: a closure spawned after an await may have
        run already, and then it read its own value."""
        recent = self._spawned_closures
        if recent is None:
            recent = self._spawned_closures = []
            self.loop.call_soon(self._forget_spawned_closures)
        recent.append((name, fn))
        if len(recent) > 1:
            check_late_binding(recent)

    def _forget_spawned_closures(self) -> None:
        self._spawned_closures = None

    def add(
        self, name: str, fn: Any, args: tuple[Any, ...], opts: Task, spawned: bool = False
    ) -> None:
        """Add one task to the running run (``Fan.spawn``)."""
        if type(name) is not str:
            raise TypeError(f"task names must be strings, got {name!r}")
        names = self.recorder.tasks
        if name in names:
            if fn is coroutine_runner:
                args[0].close()
            raise DuplicateTaskName(f"task name {name!r} is already used in this run")
        if (
            not args
            and type(fn) is FunctionType
            and (fn.__closure__ is not None or fn.__name__ == "<lambda>")
        ):
            self._check_spawned_closure(name, fn)
        st = self._state(name, fn, args, opts, self._seq)
        found = None
        if _refs.made and not spawned:  # only a process that describes dependencies looks
            try:
                found = dependencies(st)
                if found is not None and self.graph is not None:
                    self.graph.check_spawn(name, found[0])
            except BaseException:
                st.close()
                raise
        self._seq += 1
        st.added = self.clock() - self.t0
        names[name] = st
        self._pending += 1
        if self._queued_subs:
            self._emit_queued(st)
        if self.stop_reason is not None:
            self._end(st, skipped(st, self.stop_reason))
            return
        graph = self.graph
        if found is not None:
            if graph is None:
                graph = self._make_graph()
            if graph.hold(st, *found):
                return  # looked up in the journal when it is released (see _ready)
        elif graph is not None:
            graph.note(st)
        if self.session is not None:
            done = self._journaled([st]).get(name)
            if done is not None:
                self._end(st, done)
                return
        adm = self.admission
        if adm.limited(st.group):
            adm.push(st)
            adm.admit_soon()  # on the next pass, so tasks spawned together start by priority
        else:
            adm.take(st.group)
            self._start(st)

    def _ready(self, st: TaskState) -> None:
        """What ``st`` waited for has ended: admit it (or end it with the journal's
        Outcome of the same call, its references filled in)."""
        if self.stop_reason is not None:
            self._end(st, skipped(st, self.stop_reason))
            return
        if self.session is not None:
            done = self._journaled([st]).get(st.name)
            if done is not None:
                self._end(st, done)
                return
        # queued even with no limit: the task whose ending released it runs it next, in its
        # own asyncio Task (see _finish: no new Task, no loop pass); anything else waiting
        # is admitted on the next pass
        adm = self.admission
        adm.push(st)
        adm.admit_soon()

    def _stalled(self) -> None:
        """Every task left waits for one that is not in the run: wake who waits (a Fan
        that closes skips them; ``as_completed`` ends)."""
        self._wake()
        self.recorder.wake_stream()

    @property
    def stalled(self) -> bool:
        """Whether every task left waits for a task that is not in the run."""
        return self.graph is not None and self.graph.stalled

    def _emit_queued(self, st: TaskState) -> None:
        event = TaskQueued(self.name, st.added, st.name, st.group, st.priority)
        for observer, method in self._queued_subs:
            try:
                method(event)
            except Exception:
                self.events.failed(observer, event)

    # -- running -------------------------------------------------------------------------

    def _start(self, st: TaskState) -> None:
        """Admission gave ``st`` a slot: run it."""
        plan = st.plan
        if plan.starts:
            reason = plan.start(st)
            if reason is not None:
                self.admission.release(st.group)
                if reason is WAITING:  # it may fit once what is in flight has settled
                    self._parked.append(st)
                else:  # e.g. its estimate can never fit the budget
                    self._end(st, skipped(st, reason))
                return
        handoff = self._handoff
        if handoff is not None:
            # the Task of the task that just finished runs this one next, in the same loop
            # pass: no new Task, no extra pass before its first step (bench workload 3)
            self._handoff = None
            self._handed = st
            st.handle = handoff
            return
        st.handle = self._task(self._drive(st))

    async def _drive(self, st: TaskState) -> None:
        """The asyncio Task of a task: call it, write its Outcome, and go on with the
        task admitted into the slot it freed, if any (like a pool's worker: a slot freed
        and refilled costs no new Task and no loop pass)."""
        clock = self.clock
        t0 = self.t0
        new = tuple.__new__  # an Outcome without its NamedTuple __new__ frame
        chained = 0
        while True:
            start = clock()
            st.started = start
            subs = self._started_subs
            if subs:
                event = AttemptStarted(self.name, start - t0, st.name, st.group, 1)
                for observer, method in subs:
                    try:
                        method(event)
                    except Exception:
                        self.events.failed(observer, event)
            call = st.plan.call
            try:
                if call is None:  # the plain path: no frame, no timeout scope, no policy
                    value = await st.fn(*st.args)
                else:
                    value = await call(st)
            except BaseException as e:
                outcome = outcome_of(st, None, e, st.started, clock(), t0)
                if isinstance(e, FATAL):
                    self._fatal(e)
            else:
                if st.calls is None:  # no call log (the plain path, or a light gate)
                    s = st.started - t0
                    outcome = new(Outcome, (st.name, _OK, value, None, None, 1, s, clock() - t0,
                                            None, st.group, st.seq, (), False, None,
                                            s - st.added, False))  # fmt: skip
                else:
                    # a policy that made the call wait moved its start (st.started)
                    outcome = outcome_of(st, value, None, st.started, clock(), t0)
                    if st.plan.accounts:
                        # the next task this Task runs must not charge this one
                        current_account.set(None)
            nxt = self._finish(st, outcome, chained < CHAIN_MAX)
            if nxt is None:
                return
            st = nxt
            chained += 1

    def _fatal(self, error: BaseException) -> None:
        if self.fatal is None:
            self.fatal = error
        self.stop("aborted")

    # -- ending --------------------------------------------------------------------------

    def _finish(self, st: TaskState, outcome: Outcome, chain: bool) -> TaskState | None:
        """Write a started task's Outcome and free its slot. With ``chain`` the first
        task admitted into the freed room is returned, for this Task to run next."""
        if st.done:  # abandoned meanwhile (it ignored a cancellation): already recorded
            return None
        task = st.handle
        st.done = True
        adm = self.admission
        group = st.group
        if group is None:
            adm.running -= 1
        else:
            adm.release(group)
        self._pending -= 1
        self.recorder.record(outcome)  # the record is dropped there (by its name)
        nxt = None
        if adm.queued:
            # a cancellation requested of this Task and not yet delivered (3.11 cannot take
            # one back) would hit the next task: then that one gets a Task of its own
            if chain and task is not None and not task.cancelling():
                self._handoff = task
                try:
                    adm.admit_freed(group)
                finally:
                    nxt, self._handed, self._handoff = self._handed, None, None
                if nxt is not None and nxt.done:
                    nxt = None  # the run stopped while admitting: it was skipped already
            else:
                adm.admit_freed(group)
        if self._pending == 0:
            self._wake()
        return nxt

    def _end(self, st: TaskState, outcome: Outcome) -> None:
        """Write the Outcome of a task that holds no slot (never started)."""
        st.done = True
        self._pending -= 1
        self.recorder.record(outcome)
        if self._pending == 0:
            self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def stop(self, reason: str) -> None:
        """Stop the run early: waiting tasks are skipped, running ones cancelled (and
        abandoned if they have not ended ABANDON_GRACE seconds later)."""
        if self.stop_reason is not None or self.state == "closed":
            return
        self.stop_reason = reason
        if self.state == "new":
            return
        self.stopped_at = self.clock()
        parked, self._parked = self._parked, []
        for st in [*parked, *self.admission.drain()]:
            self._end(st, skipped(st, reason))
        cancelled = []
        if self.graph is not None:
            for st in self.graph.drain():
                self._end(st, skipped(st, reason))
        for st in [v for v in self.recorder.tasks.values() if type(v) is TaskState]:
            if not st.done:
                self._cancel(st, reason)
                if not st.done:
                    cancelled.append(st)
        if cancelled:
            self.loop.call_at(self.clock() + ABANDON_GRACE, self._abandon_stopped, cancelled)
        for listener in self._stop_listeners:
            listener(reason)

    def _abandon_stopped(self, states: list[TaskState]) -> None:
        reason = self.stop_reason or "cancelled"
        for st in states:
            if not st.done:
                status = Status.TIMED_OUT if reason == "deadline" else Status.CANCELLED
                self._abandon(st, status, stopped_error(st.name, reason))

    def _abandon(self, st: TaskState, status: Status, error: BaseException) -> None:
        """Record a task whose call ignored its cancellation as abandoned, and free its
        slot: the run no longer waits for it (whatever it does later is dropped)."""
        hooks = st.plan.hooks
        if hooks is not None:
            for settle in hooks.settle:
                settle(st)
        st.done = True
        calls = st.calls
        attempts = calls.attempts if calls is not None else 1
        started = None if st.started is None else st.started - self.t0
        fields = (st.name, status, None, error, "abandoned", attempts, started, self.elapsed(),
                  None, st.group, st.seq, tuple(calls.log) if calls is not None else (), False,
                  None, None if started is None else started - st.added, False)  # fmt: skip
        adm = self.admission
        adm.release(st.group)
        self._pending -= 1
        self.recorder.record(tuple.__new__(Outcome, fields))
        if adm.queued:
            adm.admit_freed(st.group)
        if self._pending == 0:
            self._wake()

    def _cancel(self, st: TaskState, reason: str) -> None:
        if st.handle is None:
            return
        st.cancel_reason = reason
        if st is self._handed:
            # handed to a finishing task's Task, which is running this very code: that Task
            # is not cancelled, it just does not run this one
            self.admission.release(st.group)
            self._end(st, skipped(st, reason))
            return
        st.handle.cancel()
        if st.started is None:
            # its asyncio Task never ran a step, so _drive will not run: write it here
            self.admission.release(st.group)
            self._end(st, skipped(st, reason))


def _drive_frame(f: dict[str, Any]) -> tuple[Any, str, Any, tuple[Any, ...]]:
    st = f["st"]
    return f["self"], st.name, st.fn, st.args


register_frame(Engine._drive.__code__, _drive_frame)
