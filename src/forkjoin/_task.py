"""Task: an immutable, re-invocable description of one unit of work and its options."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from inspect import CO_COROUTINE
from types import FunctionType
from typing import Any

from ._errors import InvalidPolicy
from ._policies._hedge import Hedge
from ._retry import Retry

__all__ = ["Task", "task"]

_UNSET: Any = object()


def _is_async_callable(fn: Any) -> bool:
    if type(fn) is FunctionType:  # the common case, without inspect's general checks
        return bool(fn.__code__.co_flags & CO_COROUTINE)
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    return (
        call is not None
        and not inspect.isfunction(fn)
        and not inspect.ismethod(fn)
        and inspect.iscoroutinefunction(call)
    )


def check_timeout(where: str, value: Any) -> float | None:
    """Validate a duration in seconds (> 0) or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise InvalidPolicy(f"{where}: expected seconds > 0, got {value!r}")
    if value <= 0:
        raise InvalidPolicy(f"{where}: must be > 0 seconds, got {value!r}")
    return float(value)


def check_retry(where: str, value: Any) -> Retry | bool | None:
    if value is None or value is False or isinstance(value, Retry):
        return value
    if value is True:
        return Retry()
    raise InvalidPolicy(f"{where}: expected fj.Retry(...), False or None, got {value!r}")


@dataclass(frozen=True, slots=True, eq=False)
class Task:
    """One unit of work: ``fn(*args)`` and its options. Build it with :func:`task`.

    A Task is immutable and can be called again (a retry calls ``fn(*args)`` anew), except
    one made from a bare coroutine object, which can run only once.
    """

    fn: Callable[..., Any] | None
    args: tuple[Any, ...] = ()
    timeout: float | None = None
    retry: Retry | bool | None = None
    group: str | None = None
    priority: int = 0
    cost: float | None = None
    coro: Coroutine[Any, Any, Any] | None = field(default=None, repr=False)
    is_async: bool = field(default=False, repr=False)
    tokens: float | None = None
    weight: float = 1
    idempotent: bool = False
    hedge: Hedge | None = None
    fallback: Callable[..., Any] | None = None
    # True when a policy may need to wrap the call (so the engine checks only this)
    policied: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        check_timeout("task.timeout", self.timeout)
        object.__setattr__(self, "retry", check_retry("task.retry", self.retry))
        if self.group is not None and not isinstance(self.group, str):
            raise InvalidPolicy(f"task.group: expected a string, got {self.group!r}")
        if isinstance(self.priority, bool) or not isinstance(self.priority, int | float):
            raise InvalidPolicy(f"task.priority: expected a number, got {self.priority!r}")
        if self.cost is not None and (
            isinstance(self.cost, bool)
            or not isinstance(self.cost, int | float)
            or not self.cost >= 0
        ):
            raise InvalidPolicy(f"task.cost: expected a number >= 0, got {self.cost!r}")
        if self.tokens is not None and not _nonneg(self.tokens):
            raise InvalidPolicy(f"task.tokens: expected a number >= 0, got {self.tokens!r}")
        if not _nonneg(self.weight) or self.weight == 0:
            raise InvalidPolicy(f"task.weight: expected a number > 0, got {self.weight!r}")
        if not isinstance(self.idempotent, bool):
            raise InvalidPolicy(f"task.idempotent: expected True or False, got {self.idempotent!r}")
        if self.hedge is not None:
            if not isinstance(self.hedge, Hedge):
                raise InvalidPolicy(f"task.hedge: expected fj.Hedge(...), got {self.hedge!r}")
            if not self.idempotent:
                raise InvalidPolicy(
                    "task.hedge: a hedged task is called twice at once; mark it "
                    "idempotent=True if that is safe"
                )
        if self.fallback is not None and not callable(self.fallback):
            raise InvalidPolicy(f"task.fallback: expected a callable, got {self.fallback!r}")
        policied = (
            self.group is not None
            or self.hedge is not None
            or self.fallback is not None
            or self.cost is not None
            or self.tokens is not None
        )
        object.__setattr__(self, "policied", policied)
        if self.coro is None:
            if not callable(self.fn):
                raise TypeError(f"task: expected a callable, got {self.fn!r}")
            object.__setattr__(self, "is_async", _is_async_callable(self.fn))

    def with_options(self, **options: Any) -> Task:
        """A copy with some options replaced (``None`` values are ignored)."""
        given = {k: v for k, v in options.items() if v is not _UNSET}
        return replace(self, **given) if given else self


def _nonneg(value: Any) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and value >= 0
        and not math.isinf(value)
    )


async def _never_called() -> None:  # pragma: no cover - placeholder fn of _DEFAULTS
    """The fn of the shared default options; never called."""


# The options of a task given as (fn, *args) or a bare callable: all defaults.
_DEFAULTS = Task(_never_called)


def task(
    fn: Callable[..., Any],
    /,
    *args: Any,
    timeout: float | None = None,
    retry: Retry | bool | None = None,
    group: str | None = None,
    priority: int = 0,
    cost: float | None = None,
    tokens: float | None = None,
    weight: float = 1,
    idempotent: bool = False,
    hedge: Hedge | None = None,
    fallback: Callable[..., Any] | None = None,
) -> Task:
    """Describe a call of ``fn(*args)`` with its options.

    ``fn`` may be async or sync (a sync ``fn`` runs in a worker thread; if it returns an
    awaitable, that is awaited on the loop). Pass keyword arguments for ``fn`` with
    :func:`functools.partial`. ``retry=False`` turns a run's default retry off for this task
    (``None`` inherits the group's or run's). ``cost``/``tokens``: estimates reserved
    against the run's :class:`Budget`; ``weight``: what a :class:`RateLimit` counts for each
    call; ``hedge``: a :class:`Hedge` (needs ``idempotent=True``); ``fallback``: called with
    the task's arguments when the task has failed for good.
    """
    extra: dict[str, Any] = {
        "tokens": tokens,
        "weight": weight,
        "idempotent": idempotent,
        "hedge": hedge,
        "fallback": fallback,
    }
    if inspect.iscoroutine(fn):
        if args:
            fn.close()
            raise TypeError("task: a coroutine object takes no arguments")
        try:
            return Task(None, (), timeout, retry, group, priority, cost, coro=fn, **extra)
        except BaseException:
            fn.close()
            raise
    return Task(fn, args, timeout, retry, group, priority, cost, **extra)


def as_task(where: str, spec: Any) -> Task:
    """Turn what gather() accepts into a Task: a Task, ``(fn, *args)``, a callable or a
    coroutine object."""
    if isinstance(spec, Task):
        return spec
    if isinstance(spec, tuple):
        if not spec or not callable(spec[0]):
            raise TypeError(f"{where}: a tuple must be (fn, *args), got {spec!r}")
        return Task(spec[0], tuple(spec[1:]))
    if inspect.iscoroutine(spec):
        return Task(None, coro=spec)
    if callable(spec):
        return Task(spec)
    raise TypeError(
        f"{where}: expected fj.task(...), (fn, *args), a callable or a coroutine, "
        f"got {type(spec).__name__}"
    )


def close_unstarted(specs: Mapping[str, Any] | list[Any]) -> None:
    """Close coroutine objects that will never run (avoids 'never awaited' warnings)."""
    values = specs.values() if isinstance(specs, Mapping) else specs
    for spec in values:
        coro = spec.coro if isinstance(spec, Task) else spec
        if inspect.iscoroutine(coro):
            coro.close()
