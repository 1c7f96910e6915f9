"""Placeholders for what a task needs from other tasks: ``fj.ref``, ``fj.item``, ``fj.each``.

- ``fj.ref("a", "field", 0)`` anywhere in a task's arguments (inside lists, tuples, dicts and
  the arguments of a ``functools.partial``) stands for task ``a``'s value (and a path into
  it); the task then depends on ``a``.
- ``fj.each("a", fn, *args)`` is a task value that spawns one task per element of ``a``'s
  value, each getting its element where ``fj.item()`` stands in its arguments.

These are values only; the engine's dependency graph (:mod:`._deps`) finds and replaces
them. Looking for them costs a pass over every task's arguments, so the engine looks only
in a process that has described a dependency at all (:data:`made`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from ._errors import InvalidPolicy

if TYPE_CHECKING:
    from ._policies._hedge import Hedge
    from ._retry import Retry
    from ._task import Task

__all__ = [
    "MISSING",
    "ON_DEPENDENCY_FAILURE",
    "Each",
    "Item",
    "Ref",
    "each",
    "fan_out",
    "item",
    "made",
    "mark",
    "pick",
    "placeholders",
    "ref",
    "substitute",
]

ON_DEPENDENCY_FAILURE: Final = ("skip", "run")
MISSING: Any = object()  # no default given

# Whether this process has described a dependency (an ``after``, a ref, an item, an each):
# until it has, no run looks for them, so runs without dependencies pay nothing for them.
made = False


def mark() -> None:
    """Note that this process describes dependencies (see :data:`made`)."""
    global made
    made = True


def _check_path(where: str, path: tuple[Any, ...]) -> tuple[str | int, ...]:
    for key in path:
        if isinstance(key, bool) or not isinstance(key, str | int):
            raise InvalidPolicy(
                f"{where}: a path is made of keys (str) and indexes (int), got {key!r}"
            )
    return path


class Ref:
    """A task's value (or a path into it), standing in another task's arguments. Build it
    with :func:`forkjoin.ref`."""

    __slots__ = ("default", "name", "path")

    def __init__(self, name: str, path: tuple[str | int, ...], default: Any = MISSING) -> None:
        self.name = name
        self.path = path
        self.default = default

    def __repr__(self) -> str:
        parts = [repr(self.name), *map(repr, self.path)]
        if self.default is not MISSING:
            parts.append(f"default={self.default!r}")
        return f"fj.ref({', '.join(parts)})"


class Item:
    """The element (or a path into it) a task spawned by :func:`forkjoin.each` works on."""

    __slots__ = ("path",)

    def __init__(self, path: tuple[str | int, ...]) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"fj.item({', '.join(map(repr, self.path))})"


def ref(name: str, /, *path: str | int, default: Any = MISSING) -> Any:
    """Task ``name``'s value, in place of this placeholder, once that task has ended ok.

    Put it anywhere in a task's arguments (also inside lists, tuples, dicts and the
    arguments of a ``functools.partial``): the task then depends on ``name`` (as with
    ``after=[name]``) and is called with the value. ``path`` reads into the value, one key
    or index at a time (``fj.ref("search", "urls", 0)`` is ``value["urls"][0]``; a key that
    is no item is read as an attribute). ``default`` stands in for the value of a dependency
    that did not end ok, for a task that runs anyway (``on_dependency_failure="run"``;
    without it, None). A reference to a fan-out group (:func:`each`) is the list of the
    values of its tasks that ended ok.
    """
    if not name or not isinstance(name, str):
        raise InvalidPolicy(f"fj.ref: expected a task name, got {name!r}")
    if not made:
        mark()
    return Ref(name, _check_path("fj.ref", path) if path else path, default)


def item(*path: str | int) -> Any:
    """The element of the value a task of :func:`each` was spawned for (``path`` reads into
    it, as for :func:`ref`)."""
    mark()
    return Item(_check_path("fj.item", path))


async def fan_out(group: Each) -> Any:
    """The call of a fan-out group's own entry: never made (the dependency graph spawns
    the group's tasks and ends the group itself)."""
    raise RuntimeError("a fan-out group is not called")  # pragma: no cover - never admitted


class Each:
    """A fan-out from a result: one task per element of a task's value. Build it with
    :func:`forkjoin.each`.

    ``source`` names the task (``path`` reads into its value), ``template`` is the task made
    for every element (with ``fj.item()`` placeholders), ``key`` names each task from its
    element, ``node`` holds the group's own options (what it waits for, its priority).
    """

    __slots__ = ("key", "node", "path", "source", "template")

    def __init__(
        self,
        source: str,
        path: tuple[str | int, ...],
        template: Task,
        key: Callable[[Any], str] | None,
        node: Task,
    ) -> None:
        self.source = source
        self.path = path
        self.template = template
        self.key = key
        self.node = node

    def __repr__(self) -> str:
        return f"fj.each({self.source!r}, {self.template.fn!r})"


def each(
    source: str | Any,
    fn: Callable[..., Any] | Task,
    /,
    *args: Any,
    key: Callable[[Any], str] | None = None,
    after: Iterable[str] | str | None = None,
    on_dependency_failure: str = "skip",
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
    backend: Any = None,
) -> Any:
    """Spawn ``fn(*args)`` once per element of task ``source``'s value, once it is ok.

    Use it as a task value in ``gather``/``run`` (``{"deep": fj.each("search", fetch,
    fj.item("url"))}``) or with ``fan.spawn("deep", fj.each(...))``: that name names the
    group. Its tasks are named ``deep/0``, ``deep/1`` ... (``key(element)`` instead of the
    index when given), get their element where ``fj.item()`` stands in their arguments, and
    start as soon as they are spawned. ``source`` may be ``fj.ref("search", "urls")`` to
    iterate over a path into the value. The group itself ends once all its tasks have:
    ok, with the list of their values (in element order), when every one is ok, else
    skipped (reason ``"dependency"``, naming the first that was not). ``after=["deep"]``
    (or ``"deep/*"``) and ``fj.ref("deep")`` wait for the whole group. ``after`` and
    ``on_dependency_failure`` are the group's own (it may wait for more than ``source``);
    the other options are those of :func:`forkjoin.task`, for each spawned task.
    """
    from ._task import Task, task

    if isinstance(source, Ref):
        name, path = source.name, source.path
    elif isinstance(source, str) and source:
        name, path = source, ()
    else:
        raise InvalidPolicy(
            f"fj.each: expected the name of a task (or fj.ref(...)), got {source!r}"
        )
    if key is not None and not callable(key):
        raise InvalidPolicy(f"fj.each: key must be a function of the element, got {key!r}")
    options: dict[str, Any] = {
        "timeout": timeout, "retry": retry, "group": group, "priority": priority, "cost": cost,
        "tokens": tokens, "weight": weight, "idempotent": idempotent, "hedge": hedge,
        "fallback": fallback, "backend": backend,
    }  # fmt: skip
    if inspect.iscoroutine(fn):
        fn.close()
        raise InvalidPolicy("fj.each: give a function (it is called once per element)")
    if isinstance(fn, Task):
        if args:
            raise TypeError("fj.each: arguments go into fj.task(fn, *args), not after a Task")
        template = fn.with_options(**{k: v for k, v in options.items() if v != _DEFAULT[k]})
    else:
        template = task(fn, *args, **options)
    if template.coro is not None:
        template.coro.close()
        raise InvalidPolicy("fj.each: give a function (it is called once per element)")
    deps = [name, *check_after("fj.each: after", after)]
    mark()
    node = Task(fan_out, (), priority=template.priority, after=deps,
                on_dependency_failure=on_dependency_failure)  # fmt: skip
    return Each(name, path, template, key, node)


_DEFAULT = {"timeout": None, "retry": None, "group": None, "priority": 0, "cost": None,
            "tokens": None, "weight": 1, "idempotent": False, "hedge": None,
            "fallback": None, "backend": None}  # fmt: skip


def check_after(where: str, after: Iterable[str] | str | None) -> tuple[str, ...]:
    """``after=`` as a tuple of distinct task names (InvalidPolicy naming ``where``); the
    tasks of a fan-out group, ``"deep/*"``, are waited for as the group, ``"deep"``."""
    if after is None:
        return ()
    if type(after) is str:
        return check_after(where, (after,))
    try:
        names = after if type(after) is tuple else tuple(after)
    except TypeError:
        raise InvalidPolicy(f"{where}: expected a list of task names, got {after!r}") from None
    globbed = False
    for n in names:
        if type(n) is not str or not n:
            raise InvalidPolicy(f"{where}: expected task names, got {n!r}")
        if n[-1] == "*":
            globbed = True
    if globbed:
        names = tuple(n[:-2] if n.endswith("/*") else n for n in names)
    k = len(names)
    if (names[0] == names[1]) if k == 2 else (k > 2 and len(set(names)) < k):
        names = tuple(dict.fromkeys(names))
    return names


# -- finding and replacing placeholders ----------------------------------------------------

_CONTAINERS: Final = (tuple, list, dict)


def placeholders(
    fn: Any, args: tuple[Any, ...], seen: dict[int, Any] | None = None
) -> tuple[list[Ref], bool, bool]:
    """The references in a call's arguments (and in a partial's), whether an ``fj.item()``
    is among them, and whether any is inside a container or a partial (not only a
    top-level argument). ``seen`` caches what containers hold, by id, while the caller
    keeps them alive (one big argument shared by many tasks is looked at once)."""
    refs: list[Ref] = []
    items = False
    stack: list[Any] = []
    for a in args:
        t = type(a)
        if t is Ref:
            refs.append(a)
        elif t is Item:
            items = True
        elif t in _CONTAINERS or t is functools.partial:
            stack.append(a)
    if type(fn) is functools.partial:
        stack.append(fn)
    if not stack:
        return refs, items, False
    if seen is None:
        seen = {}
    nested = False
    for top in stack:
        found = _scan(top, seen)
        if found is not None:
            nested = True
            refs.extend(found[0])
            items = items or found[1]
    return refs, items, nested


def _scan(root: Any, seen: dict[int, Any]) -> tuple[list[Ref], bool] | None:
    """What one container holds, cached by id (None: no placeholder)."""
    key = id(root)
    if key in seen:
        return seen[key]  # type: ignore[no-any-return]
    seen[key] = None  # a container that holds itself is looked at once
    refs: list[Ref] = []
    items = False
    t = type(root)
    if t is dict:
        values: Iterable[Any] = root.values()
    elif t is functools.partial:
        values = (root.func, *root.args, *root.keywords.values())
    else:
        values = root
    for v in values:
        vt = type(v)
        if vt is Ref:
            refs.append(v)
        elif vt is Item:
            items = True
        elif vt in _CONTAINERS or vt is functools.partial:
            inner = _scan(v, seen)
            if inner is not None:
                refs.extend(inner[0])
                items = items or inner[1]
    found = (refs, items) if refs or items else None
    seen[key] = found
    return found


def pick(value: Any, path: tuple[str | int, ...], what: str) -> Any:
    """``value[path[0]][path[1]]...`` (a key that is no item is read as an attribute);
    LookupError naming ``what`` and the missing step."""
    for step in path:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError) as e:
            if isinstance(step, str) and not isinstance(e, KeyError | IndexError):
                try:
                    value = getattr(value, step)
                    continue
                except AttributeError:
                    pass
            raise LookupError(
                f"{what}: the value has no {step!r} (it is {_describe(value)})"
            ) from None
    return value


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        keys = ", ".join(repr(k) for k in list(value)[:8])
        return f"a dict with keys {keys}" if keys else "an empty dict"
    if isinstance(value, list | tuple):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def substitute(
    fn: Any, args: tuple[Any, ...], value_of: Callable[[Ref], Any], element: Any = MISSING
) -> tuple[Any, tuple[Any, ...]]:
    """The call with every placeholder replaced: a reference by ``value_of(ref)``, an item
    by (a path into) ``element``. Containers holding none are kept as they are."""
    if element is MISSING and type(fn) is not functools.partial:
        for a in args:
            if type(a) in _CONTAINERS:
                break
        else:  # only top-level references (the common case): no walk, no memo
            return fn, tuple(value_of(a) if type(a) is Ref else a for a in args)
    memo: dict[int, Any] = {}

    def sub(v: Any) -> Any:
        t = type(v)
        if t is Ref:
            return value_of(v)
        if t is Item:
            if element is MISSING:
                raise LookupError(f"{v!r} is only meaningful in a task of fj.each(...)")
            return pick(element, v.path, repr(v)) if v.path else element
        if t not in _CONTAINERS and t is not functools.partial:
            return v
        key = id(v)
        if key in memo:
            return memo[key]
        memo[key] = v
        if t is dict:
            new: Any = {k: sub(x) for k, x in v.items()}
            changed = any(new[k] is not x for k, x in v.items())
        elif t is functools.partial:
            func = sub(v.func)
            pargs = tuple(sub(x) for x in v.args)
            kw = {k: sub(x) for k, x in v.keywords.items()}
            changed = (
                func is not v.func
                or any(a is not b for a, b in zip(pargs, v.args, strict=True))
                or any(kw[k] is not x for k, x in v.keywords.items())
            )
            new = functools.partial(func, *pargs, **kw) if changed else v
        else:
            items = [sub(x) for x in v]
            changed = any(a is not b for a, b in zip(items, v, strict=True))
            new = t(items) if changed else v
        result = new if changed else v
        memo[key] = result
        return result

    return sub(fn), tuple(sub(a) for a in args)
