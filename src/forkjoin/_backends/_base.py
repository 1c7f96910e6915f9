"""The protocol of a backend: where one call of a task runs.

A call is a function, its arguments and a per-call timeout; it comes back as a value or an
error. The engine stops a call by cancelling the coroutine awaiting :meth:`Runner.call`:
a backend that can stop its call (the loop; a process pool, by killing the worker) lets
the cancellation through once it has; one that cannot (a thread, a sync call on a Dask
worker) marks the task ``abandoned`` before re-raising, so the run neither waits for it
nor reports it as stopped. What a call spends (``fj.charge``) goes to ``task.account``;
where it ran goes to ``task.where``.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Awaitable, Callable
from inspect import CO_COROUTINE
from types import FunctionType
from typing import Any, Protocol

__all__ = ["Backend", "CallSite", "Runner", "is_async_callable", "worker_backend"]


class CallSite(Protocol):
    """What a backend may see of the task whose call it runs."""

    name: str
    abandoned: bool  # set by a backend that could not stop a cancelled call
    account: Any  # the task's usage account for fj.charge(), or None
    # set by a backend for each call: where it ran ("thread", "pid 4242", a Dask worker's
    # address); None is the run's event loop
    where: str | None


class Runner(Protocol):
    """A backend bound to one run."""

    async def call(
        self, task: CallSite, fn: Callable[..., Any], args: tuple[Any, ...], timeout: float | None
    ) -> Any:
        """Run ``fn(*args)`` (sync or async) and return its value (or raise its error).
        ``timeout`` is the call's own, for a backend that also enforces it where the call
        runs; the engine enforces it in any case."""
        ...

    async def start(self) -> int | None:
        """Get ready for calls (a pool's workers, a cluster and its client) and say how many
        calls are worth having in flight at once (None: as many as it is given). The engine
        awaits it before the run's clock starts for the backends it knows of then; a runner
        not started yet starts inside its first call."""
        ...

    def info(self) -> dict[str, Any]:
        """What the run report shows of this backend (empty: nothing worth showing)."""
        ...

    def close(self) -> Awaitable[None] | None:
        """The run ended: release what the backend holds (nothing may outlive the run).
        An awaitable when that takes waiting (a cluster's shutdown): the run awaits it
        before it returns."""
        ...


class Backend(Protocol):
    """Where calls run; :meth:`open` binds it to one run."""

    name: str

    def open(self, run_name: str, limit: int | None) -> Runner: ...


# The backend whose worker the current code runs in ("process", "dask"), set around each
# call there: what fj.current_fan() reads to say why it is not available.
worker_backend: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "forkjoin_worker_backend", default=None
)


def is_async_callable(fn: Any) -> bool:
    """Whether calling ``fn`` returns a coroutine (async def, a partial of one, an object
    with an ``async def __call__``)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if type(fn) is FunctionType:  # the common case, without inspect's general checks
        return bool(fn.__code__.co_flags & CO_COROUTINE)
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    return (
        call is not None
        and not inspect.isfunction(fn)
        and not inspect.ismethod(fn)
        and inspect.iscoroutinefunction(call)
    )
