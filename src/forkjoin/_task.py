"""Task: an immutable description of one unit of work and its options; what gather accepts."""

from __future__ import annotations

import dis
import inspect
from collections.abc import Callable, Coroutine, Iterable, Mapping
from inspect import CO_COROUTINE
from types import CoroutineType, FunctionType, ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

from . import _refs
from ._backends._base import is_async_callable
from ._errors import InvalidPolicy
from ._refs import ON_DEPENDENCY_FAILURE, Each, check_after, fan_out, mark
from ._validate import check_amount, check_backend, check_group_name, check_seconds

if TYPE_CHECKING:
    from ._backends._base import Backend
    from ._policies._hedge import Hedge
    from ._retry import Retry

__all__ = ["Task", "check_late_binding", "coroutine_runner", "is_async_callable", "split", "task"]

UNSET: Any = object()  # an option left out (not the same as None)


async def coroutine_runner(coro: Coroutine[Any, Any, Any]) -> Any:
    """The call of a task given as a coroutine object (which can run only once)."""
    return await coro


class _TaskFields(NamedTuple):
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    timeout: float | None = None
    retry: Retry | bool | None = None
    group: str | None = None
    priority: float = 0
    cost: float | None = None
    tokens: float | None = None
    weight: float = 1
    idempotent: bool = False
    hedge: Hedge | None = None
    fallback: Callable[..., Any] | None = None
    backend: Backend | None = None
    after: tuple[str, ...] = ()
    on_dependency_failure: str = "skip"
    is_async: bool = False
    default: bool = True


# A Task is one per task in most runs, so it is built like an Outcome: a tuple with named
# fields (a frozen dataclass of these fields costs 2.4 us to build, this 0.6 us).
class Task(_TaskFields):
    """One unit of work: ``fn(*args)`` and its options. Build it with :func:`task`.

    A Task is immutable and can be called again (a retry calls ``fn(*args)`` anew), except
    one made from a coroutine object, which can run only once. ``after`` names the tasks it
    waits for; ``is_async`` says whether ``fn`` is a coroutine function; ``default``
    whether every option that shapes its call is at its default (a priority and what it
    waits for do not: they decide when it runs, not how); ``backend`` is where its calls
    run, validated (a string given is its backend value).
    """

    __slots__ = ()

    def __new__(
        cls,
        fn: Callable[..., Any],
        args: tuple[Any, ...] = (),
        timeout: float | None = None,
        retry: Retry | bool | None = None,
        group: str | None = None,
        priority: float = 0,
        cost: float | None = None,
        tokens: float | None = None,
        weight: float = 1,
        idempotent: bool = False,
        hedge: Hedge | None = None,
        fallback: Callable[..., Any] | None = None,
        backend: Backend | str | None = None,
        after: Iterable[str] | str | None = (),
        on_dependency_failure: str = "skip",
    ) -> Task:
        return _build(cls, fn, args, timeout, retry, group, priority, cost, tokens, weight,
                      idempotent, hedge, fallback, backend, after,
                      on_dependency_failure)  # fmt: skip

    @property
    def coro(self) -> Coroutine[Any, Any, Any] | None:
        """The coroutine object this task was made from, if it was."""
        return self.args[0] if self.fn is coroutine_runner else None

    def with_options(self, **options: Any) -> Task:
        """A copy with some options replaced (options left out are kept)."""
        given = {k: v for k, v in options.items() if v is not UNSET}
        if not given:
            return self
        fields = self._asdict()
        del fields["is_async"], fields["default"]
        fields.update(given)
        return Task(**fields)

    def __repr__(self) -> str:
        shown = [f"fn={self.fn!r}"]
        if self.args:
            shown.append(f"args={self.args!r}")
        defaults = _TaskFields._field_defaults
        for name in _OPTIONS:
            value = getattr(self, name)
            if value != defaults[name]:
                shown.append(f"{name}={value!r}")
        return f"Task({', '.join(shown)})"

    def __eq__(self, other: object) -> bool:
        return self is other  # tasks are not compared by value (their functions may be)

    def __hash__(self) -> int:
        return id(self)

    # a tuple's own methods would mislead on a task
    def __getnewargs__(self) -> tuple[Any, ...]:
        return tuple(self[:15])


# The body of Task(): a plain function, so fj.task() builds a Task without going through
# the class call (a class with a Python __new__ costs several times a function call).
def _build(
    cls: type[Task],
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    timeout: float | None,
    retry: Retry | bool | None,
    group: str | None,
    priority: float,
    cost: float | None,
    tokens: float | None,
    weight: float,
    idempotent: bool,
    hedge: Hedge | None,
    fallback: Callable[..., Any] | None,
    backend: Backend | str | None,
    after: Iterable[str] | str | None,
    on_dependency_failure: str,
) -> Task:
    if not callable(fn):
        raise TypeError(f"task: expected a callable, got {fn!r}")
    default = True
    if timeout is not None:
        check_seconds("task.timeout", timeout)
        default = False
    if retry is not None:
        from ._retry import check_retry

        retry = check_retry("task.retry", retry)
        default = False
    if group is not None:
        check_group_name("task.group", group)
        default = False
    if (priority != 0 or type(priority) is not int) and (
        isinstance(priority, bool) or not isinstance(priority, int | float)
    ):
        raise InvalidPolicy(f"task.priority: expected a number, got {priority!r}")
    if cost is not None:
        check_amount("task.cost", cost)
        default = False
    if tokens is not None:
        check_amount("task.tokens", tokens)
        default = False
    if weight != 1:
        if check_amount("task.weight", weight) == 0:
            raise InvalidPolicy(f"task.weight: expected a number > 0, got {weight!r}")
        default = False
    if idempotent is not False:
        if not isinstance(idempotent, bool):
            raise InvalidPolicy(f"task.idempotent: expected True or False, got {idempotent!r}")
        default = False
    if hedge is not None:
        from ._policies._hedge import Hedge

        if not isinstance(hedge, Hedge):
            raise InvalidPolicy(f"task.hedge: expected fj.Hedge(...), got {hedge!r}")
        if not idempotent:
            raise InvalidPolicy(
                "task.hedge: a hedged task is called twice at once; mark it "
                "idempotent=True if that is safe"
            )
        default = False
    if fallback is not None:
        if not callable(fallback):
            raise InvalidPolicy(f"task.fallback: expected a callable, got {fallback!r}")
        default = False
    if backend is not None:
        backend = check_backend("task.backend", backend)
        default = False
    deps: tuple[str, ...] = ()
    if after:
        deps = check_after("task.after", after)
        if deps and not _refs.made:
            mark()
    if on_dependency_failure != "skip" and on_dependency_failure not in ON_DEPENDENCY_FAILURE:
        raise InvalidPolicy(
            f"task.on_dependency_failure: expected 'skip' or 'run', got {on_dependency_failure!r}"
        )
    if fn is coroutine_runner and (
        retry not in (None, False) or hedge is not None or fallback is not None
    ):
        args[0].close()
        raise InvalidPolicy(
            "task: a coroutine object runs only once, so it cannot be retried, hedged or "
            "given a fallback; pass the function and its arguments: fj.task(fn, *args, ...)"
        )
    if type(fn) is FunctionType:  # is_async_callable's common case, without its frame
        is_async = bool(fn.__code__.co_flags & CO_COROUTINE)
    else:
        is_async = is_async_callable(fn)
    fields = (fn, args, timeout, retry, group, priority, cost, tokens, weight, idempotent,
              hedge, fallback, backend, deps, on_dependency_failure, is_async,
              default)  # fmt: skip
    return tuple.__new__(cls, fields)


_OPTIONS = ("timeout", "retry", "group", "priority", "cost", "tokens", "weight", "idempotent",
            "hedge", "fallback", "backend", "after", "on_dependency_failure")  # fmt: skip


# The options of a task given as (fn, *args), a bare callable or a coroutine: all defaults.
DEFAULTS = Task(coroutine_runner)


def task(
    fn: Callable[..., Any] | Coroutine[Any, Any, Any],
    /,
    *args: Any,
    timeout: float | None = None,
    retry: Retry | bool | None = None,
    group: str | None = None,
    priority: float = 0,
    cost: float | None = None,
    tokens: float | None = None,
    weight: float = 1,
    idempotent: bool = False,
    hedge: Hedge | None = None,
    fallback: Callable[..., Any] | None = None,
    backend: Backend | str | None = None,
    after: Iterable[str] | str | None = None,
    on_dependency_failure: str = "skip",
) -> Task:
    """Describe a call of ``fn(*args)`` with its options.

    ``fn`` may be async or sync (a sync ``fn`` runs in a worker thread; if it returns an
    awaitable, that is awaited on the loop), or a coroutine object (run once). Pass keyword
    arguments for ``fn`` with :func:`functools.partial`. ``timeout``: seconds per call;
    ``retry=False`` turns a run's default retry off for this task (``None`` inherits the
    group's or run's); ``priority``: higher runs first when tasks wait for a slot;
    ``cost``/``tokens``: estimates reserved against the run's :class:`Budget`; ``weight``:
    what a :class:`RateLimit` counts for each call; ``hedge``: a :class:`Hedge` (needs
    ``idempotent=True``); ``fallback``: called with the task's arguments when the task has
    failed for good; ``backend``: where its calls run (``"loop"``, ``"thread"``,
    ``"process"`` or :class:`ProcessBackend`, ``"dask"`` or :class:`DaskBackend`; None
    inherits the group's or run's, else async functions run on the loop, sync ones in a
    thread). ``after``: names of tasks of the same run this one waits for — it is
    admitted once every one has ended ok (an ``fj.ref(...)`` in ``args`` implies it); if
    one does not end ok, this task is skipped (reason ``"dependency"``), unless
    ``on_dependency_failure="run"``. A task whose priority is left at 0 takes the highest
    priority of what it waits for.
    """
    if isinstance(fn, CoroutineType):  # what inspect.iscoroutine asks, without its frame
        if args:
            fn.close()
            raise TypeError("task: a coroutine object takes no arguments")
        try:
            return _build(Task, coroutine_runner, (fn,), timeout, retry, group, priority, cost,
                          tokens, weight, idempotent, hedge, fallback, backend, after,
                          on_dependency_failure)  # fmt: skip
        except BaseException:
            fn.close()
            raise
    return _build(Task, fn, args, timeout, retry, group, priority, cost, tokens, weight,  # type: ignore[arg-type]
                  idempotent, hedge, fallback, backend, after, on_dependency_failure)  # fmt: skip


def split(where: str, spec: Any) -> tuple[Callable[..., Any], tuple[Any, ...], Task]:
    """What gather() accepts, as ``(fn, args, options)``: an fj.task(...), ``(fn, *args)``, a
    zero-argument callable, a coroutine object or an fj.each(...)."""
    if isinstance(spec, Task):
        return spec.fn, spec.args, spec
    if isinstance(spec, tuple):
        if not spec or not callable(spec[0]):
            raise TypeError(f"{where}: a tuple must be (fn, *args), got {spec!r}")
        return spec[0], spec[1:], DEFAULTS
    if inspect.iscoroutine(spec):
        return coroutine_runner, (spec,), DEFAULTS
    if callable(spec):
        return spec, (), DEFAULTS
    if isinstance(spec, Each):  # a fan-out group: the dependency graph runs it
        return fan_out, (spec,), spec.node
    raise TypeError(
        f"{where}: expected fj.task(...), (fn, *args), a callable, a coroutine or fj.each(...), "
        f"got {type(spec).__name__}"
    )


def close_unstarted(specs: Mapping[str, Any] | list[Any]) -> None:
    """Close coroutine objects that will never run (avoids 'never awaited' warnings)."""
    values = specs.values() if isinstance(specs, Mapping) else specs
    for spec in values:
        coro = spec.coro if isinstance(spec, Task) else spec
        if inspect.iscoroutine(coro):
            coro.close()


_UNBOUND = object()  # an empty cell: never the same value as another


def check_late_binding(closures: list[tuple[str, FunctionType]]) -> None:
    """InvalidPolicy when several tasks are one function's code that sees the same values:
    ``{n: lambda: fetch(n) for n in names}`` reads ``n`` when each task runs, not when
    it was made, so every task would run with the last ``n``. The same holds for a lambda
    made in a loop at module level, where ``n`` is a global. Only zero-argument functions
    with free variables, and zero-argument lambdas, are looked at (the engine passes those).
    """
    by_code: dict[Any, list[tuple[str, FunctionType]]] = {}
    for name, fn in closures:
        code = fn.__code__
        if code.co_argcount == 0 and not code.co_kwonlyargcount:
            by_code.setdefault(code, []).append((name, fn))
    for code, same_code in by_code.items():
        if len(same_code) < 2:
            continue
        if code.co_freevars:
            variables: tuple[str, ...] = code.co_freevars
            values = [tuple(_cell(c) for c in fn.__closure__ or ()) for _, fn in same_code]
            kind = "closure"
        elif len({id(fn) for _, fn in same_code}) > 1:
            # lambdas made one by one (one function under several names is meant); what
            # they read as globals, except the functions, classes and modules they call
            variables = _data_globals(code, same_code[0][1].__globals__)
            values = [
                tuple(fn.__globals__.get(v, _UNBOUND) for v in variables) for _, fn in same_code
            ]
            kind = "global"
        else:
            continue
        first = values[0]
        if (
            not variables
            or any(v is _UNBOUND for v in first)
            or any(
                any(a is not b for a, b in zip(first, other, strict=True)) for other in values[1:]
            )
        ):
            continue
        names = [name for name, _ in same_code]
        what = "lambda" if code.co_name == "<lambda>" else f"function {code.co_name}()"
        seen = list(zip(variables, first, strict=True))
        shown = ", ".join(f"{var}={_short(v)}" for var, v in seen)
        # for the fix: the variable that is data, and the function the closure calls
        var = next((k for k, v in seen if not callable(v)), seen[0][0])
        called = [k for k, v in seen if callable(v)] + [n for n in code.co_names if n != var]
        call = called[0] if called else "fn"
        why = (
            "a closure reads its variables when it runs, not when it is made"
            if kind == "closure"
            else "a lambda reads its globals when it runs, not when it is made"
        )
        raise InvalidPolicy(
            f"tasks[{names[0]!r}], tasks[{names[1]!r}]"
            + (f" and {len(names) - 2} more" if len(names) > 2 else "")
            + f" are the same {what}, and it sees the same {shown} for all of them: {why}, "
            "so every task would run with the last value. Bind the value when the task is "
            f"made: `lambda {var}={var}: {call}({var})`, or pass the function and its "
            f"arguments: `({call}, {var})` or `fj.task({call}, {var})`"
        )


def _data_globals(code: Any, namespace: dict[str, Any]) -> tuple[str, ...]:
    """The globals ``code`` loads that are data (not modules, classes or functions), in the
    order it first loads them."""
    loaded = dict.fromkeys(
        i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")
    )
    return tuple(
        name
        for name in loaded
        if name in namespace
        and not callable(namespace[name])
        and not isinstance(namespace[name], ModuleType)
    )


def _cell(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:
        return _UNBOUND


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
