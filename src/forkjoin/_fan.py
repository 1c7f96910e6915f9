"""The façades of named tasks: ``Fan`` (streaming, dynamic fan-out), ``gather`` and ``run``.

Each builds one :class:`~._options.RunOptions` and drives one :class:`~._engine.Engine`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any, Unpack

from ._backends._base import worker_backend
from ._engine import Engine
from ._errors import FanClosed, Interrupted
from ._options import RunKwargs, build_options
from ._outcome import Outcome, Results, fan_error
from ._refs import Each, fan_out
from ._task import UNSET, Task, close_unstarted, split
from ._task import task as make_task

__all__ = ["Fan", "current_fan", "gather", "run"]

_current_fan: contextvars.ContextVar[Fan | None] = contextvars.ContextVar(
    "forkjoin_current_fan", default=None
)


class Fan:
    """A run: add tasks with :meth:`spawn`, stream their Outcomes, get keyed :attr:`results`.

    Use it as ``async with fj.Fan(...) as fan:``. Leaving the block waits for every task
    (an exception in the block cancels the rest first). Options (the same for ``gather``,
    ``run``, ``map``, ``imap`` and ``map_reduce``):

    - ``limit``: most tasks running at once; ``limits``: ``{group: most running}`` (an int
      or an :class:`AdaptiveLimit`);
    - ``deadline``: seconds for the whole run — running tasks then end ``timed_out``
      (reason ``"deadline"``), waiting ones ``skipped``;
    - ``timeout``: default seconds per call of a task; ``retry``: default :class:`Retry`;
    - ``on_error``: ``"collect"`` (default) or ``"fail_fast"`` (the first failure cancels
      the rest and leaving the block raises :class:`FanError`); ``max_failures``: stop the
      same way once this many tasks have failed for good (``fail_fast`` is 1);
    - ``quorum``: stop once this many tasks are ok (the rest: cancelled / skipped);
    - ``observers``: objects with ``on_event(event)`` or ``on_<event>(event)`` methods;
    - ``progress``: True for a live display on stderr when it is a terminal (or a
      :class:`ProgressObserver`);
    - ``name``: the run's name in events and the report;
    - ``journal``: a file path or a :class:`Journal`: Outcomes are recorded there, and a
      task recorded ok earlier for the same call is not called again (``resumed``);
    - policies: ``budget`` (:class:`Budget`), ``rate`` (a :class:`RateLimit` for the whole
      run), ``rates`` (``{group: RateLimit}``), ``groups`` (``{group: Group(...)}``),
      ``breaker`` (a :class:`CircuitBreaker` for every group);
    - ``backend``: where calls run — ``"loop"`` (async functions' default), ``"thread"``
      (sync functions' default), ``"process"`` / :class:`ProcessBackend` (CPU-bound work),
      ``"dask"`` / :class:`DaskBackend` (a cluster). Only the call moves: every policy
      stays in this process. A pool or cluster the run names up front starts before the
      run's clock does, and is closed before the run returns.

    A task's own option wins over its group's, which wins over the run's. Tasks waiting
    for a slot start by ``priority``, higher first, then in the order they were added.
    """

    __slots__ = ("_engine", "_token")

    def __init__(self, **options: Unpack[RunKwargs]) -> None:
        self._engine = Engine(build_options(options))
        self._token: contextvars.Token[Fan | None] | None = None

    @classmethod
    def _over(cls, engine: Engine) -> Fan:
        fan = cls.__new__(cls)
        fan._engine = engine
        fan._token = None
        return fan

    @property
    def name(self) -> str:
        """The run's name (``run-N`` unless given)."""
        return self._engine.name

    def __repr__(self) -> str:
        e = self._engine
        return f"<Fan {e.name} {e.state}: {len(e.recorder.tasks)} tasks>"

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Fan:
        await self._engine.begin()
        self._token = _current_fan.set(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        engine = self._engine
        try:
            if exc is not None:
                engine.stop("cancelled" if isinstance(exc, asyncio.CancelledError) else "aborted")
            await engine.wait()
        finally:
            try:
                engine.close()
                if self._token is not None:
                    try:
                        _current_fan.reset(self._token)
                    except ValueError:  # exited in another context than entered
                        _current_fan.set(None)
                    self._token = None
            finally:
                await engine.release()
        engine.raise_fatal()
        if exc is None and engine.recorder.stopped_by_failures:
            results = self.results
            raise fan_error(results, results.failures())
        return False

    @property
    def results(self) -> Results:
        """Every task's Outcome, keyed by name, in the order added (once the run ended)."""
        results = self._engine.results
        if results is None:
            raise RuntimeError("Fan.results is available once the run has ended")
        return results

    @property
    def closed(self) -> bool:
        """True once the run has ended (spawn then raises FanClosed)."""
        return self._engine.state == "closed"

    def elapsed(self) -> float:
        """Seconds since the run started, on the run's clock."""
        return self._engine.elapsed()

    # -- adding tasks --------------------------------------------------------------------

    def spawn(
        self,
        name: str | Any,
        fn: Callable[..., Any] | Task | Any = None,
        /,
        *args: Any,
        timeout: float | None = UNSET,
        retry: Any = UNSET,
        group: str | None = UNSET,
        priority: float = UNSET,
        cost: float | None = UNSET,
        tokens: float | None = UNSET,
        weight: float = UNSET,
        idempotent: bool = UNSET,
        hedge: Any = UNSET,
        fallback: Callable[..., Any] | None = UNSET,
        backend: Any = UNSET,
        after: Any = UNSET,
        on_dependency_failure: str = UNSET,
    ) -> None:
        """Add a task named ``name`` that calls ``fn(*args)`` to the running run.

        ``fn`` may also be a :class:`Task` (its options, overridden by any given here), a
        coroutine object or an :func:`forkjoin.each` group (``fan.spawn("deep",
        fj.each("search", fetch, fj.item()))``; ``fan.spawn(fj.each("search", ...))`` names
        the group ``"search/each"``). Works from inside a running task too (dynamic
        fan-out), also from a sync task's thread. The options are those of
        :func:`forkjoin.task`; ``after`` may name tasks not spawned yet: a task still
        waiting for one that was never spawned when the Fan closes is skipped (reason
        ``"dependency"``).
        """
        if type(name) is Each and fn is None:
            name, fn = f"{name.source}/each", name
        engine = self._engine
        if engine.state != "running":
            if engine.state == "closed":
                raise FanClosed(f"run {engine.name!r} has ended: no more tasks can be added")
            raise RuntimeError("use `async with fj.Fan(...) as fan:` before fan.spawn(...)")
        if (
            timeout is UNSET and retry is UNSET and group is UNSET and priority is UNSET
            and cost is UNSET and tokens is UNSET and weight is UNSET and idempotent is UNSET
            and hedge is UNSET and fallback is UNSET and backend is UNSET and after is UNSET
            and on_dependency_failure is UNSET
        ):  # fmt: skip
            # the common spawn: no options (no dict of them to build and filter)
            if _running_loop() is not engine.loop:
                return _on_loop(engine.loop, functools.partial(self.spawn, name, fn, *args))
            if isinstance(fn, Task):
                if args:
                    raise TypeError(
                        "spawn(): arguments go into fj.task(fn, *args), not after a Task"
                    )
                engine.add(name, fn.fn, fn.args, fn)
                return
            if type(fn) is Each:
                if args:
                    raise TypeError("spawn(): options and arguments go into fj.each(...)")
                engine.add(name, fan_out, (fn,), fn.node)
                return
            if not args or callable(fn):
                call, call_args, opts = split(f"spawn({name!r})", (fn, *args) if args else fn)
                engine.add(name, call, call_args, opts)
                return
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
            "backend": backend,
            "after": after,
            "on_dependency_failure": on_dependency_failure,
        }
        if _running_loop() is not engine.loop:
            # from a sync task's worker thread: the run's state belongs to the loop thread
            # (and a loop asleep in select() would not notice a plain call_soon), so the
            # spawn is handed over and waited for; its errors still raise here
            return _on_loop(engine.loop, functools.partial(self.spawn, name, fn, *args, **options))
        if isinstance(fn, Task):
            if args:
                raise TypeError("spawn(): arguments go into fj.task(fn, *args), not after a Task")
            t = fn.with_options(**options)
        elif type(fn) is Each:
            raise TypeError("spawn(): options and arguments go into fj.each(...)")
        else:
            given = {k: v for k, v in options.items() if v is not UNSET}
            t = make_task(fn, *args, **given)
        engine.add(name, t.fn, t.args, t)

    # -- streaming -----------------------------------------------------------------------

    async def as_completed(self) -> AsyncIterator[Outcome]:
        """Yield each task's Outcome as it finishes (those already finished first).

        Ends when no task is left unfinished (or every one left waits for a task not
        spawned yet); tasks spawned meanwhile (also from the loop body) are included.
        """
        engine = self._engine
        recorder = engine.recorder
        stream = recorder.open_stream()
        while True:
            if stream:
                yield stream.popleft()
                continue
            if engine.pending == 0 or engine.state != "running" or engine.stalled:
                return  # (stalled: what is left waits for tasks nobody has spawned)
            waiter = recorder.stream_waiter = engine.loop.create_future()
            await waiter


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # a thread with no loop: a sync task's worker thread
        return None


def _on_loop(loop: asyncio.AbstractEventLoop, call: Callable[[], None]) -> None:
    done: concurrent.futures.Future[None] = concurrent.futures.Future()

    def on_loop() -> None:
        try:
            call()
        except BaseException as e:
            done.set_exception(e)
        else:
            done.set_result(None)

    loop.call_soon_threadsafe(on_loop)
    done.result()


def current_fan() -> Fan:
    """The Fan the calling task runs in (e.g. to spawn more tasks from inside a task)."""
    fan = _current_fan.get()
    if fan is None or fan.closed:
        backend = worker_backend.get()
        if backend is not None:
            raise RuntimeError(
                f"current_fan() is not available in a call running on the {backend} "
                "backend: the call runs in a worker process and spawning stays in the "
                "caller (return what to spawn, or spawn from a task on the loop or a thread)"
            )
        raise RuntimeError("current_fan() is only available inside a running fj.Fan or gather")
    return fan


def _prepared(tasks: Any, options: Mapping[str, Any]) -> tuple[Engine, list[Any]]:
    """The engine of a gather/run and its validated tasks (nothing runs if either fails)."""
    try:
        total = len(tasks) if isinstance(tasks, Mapping) else None
        engine = Engine(build_options(options, total=total))
    except BaseException:
        if isinstance(tasks, Mapping):
            close_unstarted(tasks)
        raise
    return engine, engine.prepare(tasks)


async def gather(tasks: Mapping[str, Any], /, **options: Unpack[RunKwargs]) -> Results:
    """Run named tasks concurrently; return every task's Outcome, keyed by name.

    Each value may be ``fj.task(fn, *args, ...)``, a ``(fn, *args)`` tuple, a zero-argument
    callable or a coroutine object. See :class:`Fan` for the options. With
    ``on_error="fail_fast"`` (or ``max_failures``) the run stops at that failure and raises
    :class:`FanError`, which carries the results; otherwise failures are in the Results.
    """
    engine, states = _prepared(tasks, options)
    try:
        async with Fan._over(engine):
            engine.start_all(states)
    except BaseException:
        _close_unrun(engine, states)
        raise
    assert engine.results is not None
    return engine.results


def _close_unrun(engine: Engine, states: list[Any]) -> None:
    """The run never opened (a backend failed to start): its tasks' coroutine objects
    will never run."""
    if engine.state == "new":
        for st in states:
            st.close()


def run(tasks: Mapping[str, Any], /, **options: Unpack[RunKwargs]) -> Results:
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
            "fj.run() cannot be called from a running event loop; "
            "use `results = await fj.gather(tasks, ...)` there"
        )
    engine, states = _prepared(tasks, options)

    async def main() -> Results:
        try:
            async with Fan._over(engine):
                engine.start_all(states)
        except BaseException:
            _close_unrun(engine, states)
            raise
        assert engine.results is not None
        return engine.results

    try:
        return asyncio.run(main())
    except KeyboardInterrupt as e:
        if engine.results is not None and not isinstance(e, Interrupted):
            raise Interrupted(engine.results) from e
        raise
