"""The dependency graph of one run: who waits for whom, and what an ending releases.

A run has a :class:`Graph` only once one of its tasks depends on another (``after=``, an
``fj.ref`` in its arguments, an ``fj.each`` group); a run without dependencies has none and
pays nothing for it. The graph holds the tasks that wait (they are in the run — counted,
keyed — but not in admission), and hears every Outcome from the recorder (the one path
every Outcome takes). When a task ends:

- ok: each task waiting for it has one dependency fewer; one with none left is *released*:
  its references are replaced by the values (:func:`._refs.substitute`), it inherits the
  highest priority of what it waited for unless it has its own, and it goes to admission;
- not ok: each task waiting for it ends skipped (reason ``"dependency"``, a
  :class:`DependencyFailed` naming it), which in turn skips their own dependents — unless
  the task runs anyway (``on_dependency_failure="run"``).

A fan-out group (``fj.each``) waits for its source like any task; released, it spawns one
task per element of the source's value and then waits for them: once they all have ended
it ends ok with their values, or skipped (naming the first that was not ok). Endings are
processed one after another from a queue (a skip ends more tasks, whose endings come back
here), so a long chain does not recurse.

Everything the graph does to the run goes through the callables the engine gives it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Final

from ._call import TaskState
from ._errors import DependencyFailed, InvalidPolicy
from ._outcome import Outcome, Status
from ._refs import MISSING, Each, Ref, fan_out, pick, placeholders, substitute
from ._task import Task

__all__ = ["Graph", "dependencies"]

_OK: Final = Status.OK
_FAILED: Final = Status.FAILED
_SKIPPED: Final = Status.SKIPPED
_DETAIL_CHARS: Final = 200


def _base(name: str) -> str:
    """``"deep/*"`` (the tasks of group ``deep``) waits for the group itself."""
    return name[:-2] if name.endswith("/*") else name


def dependencies(
    st: TaskState, seen: dict[int, Any] | None = None
) -> tuple[tuple[str, ...], bool] | None:
    """What ``st`` waits for (distinct names) and whether its arguments hold references,
    or None when it waits for nothing."""
    opts = st.opts
    if st.fn is fan_out:
        group: Each = st.args[0]
        template = group.template
        refs, _ = placeholders(template.fn, template.args, seen)
        names = (*opts.after, *(r.name for r in refs))
        return tuple(dict.fromkeys(_base(n) for n in names)), bool(refs)
    refs, items = placeholders(st.fn, st.args, seen)
    if items:
        raise InvalidPolicy(
            f"task {st.name!r}: fj.item() stands for an element in a task of fj.each(...), "
            "and this task is not one"
        )
    after = opts.after
    if not refs and not after:
        return None
    names = (*after, *(r.name for r in refs))
    return tuple(dict.fromkeys(_base(n) for n in names)), bool(refs)


class _Node:
    """A task that waits: for ``missing`` of its ``deps`` still."""

    __slots__ = ("deps", "done", "failure", "group", "inherit", "missing", "refs", "run_anyway",
                 "st")  # fmt: skip

    def __init__(self, st: TaskState, deps: tuple[str, ...], refs: bool) -> None:
        self.st = st
        self.deps = deps
        self.refs = refs
        self.missing = 0
        self.done = False
        self.inherit = st.priority == 0
        self.run_anyway = st.opts.on_dependency_failure == "run"
        # a fan-out: its Each until released, then the names of the tasks it spawned
        self.group: Each | list[str] | None = st.args[0] if st.fn is fan_out else None
        # a group's first task that did not end ok (the group ends once all have ended)
        self.failure: tuple[str, Outcome] | None = None


class Graph:
    """The dependencies of one run (see the module docstring).

    ``lookup(name)`` is the run's record of a task (its state while it is in the run, its
    Outcome once it ended, None if unknown); ``ready(st)`` admits a released task; ``end(st,
    outcome)`` records the Outcome of one that will not start; ``spawn(name, fn, args,
    opts)`` adds a task of a fan-out; ``pending()`` counts the run's tasks with no Outcome;
    ``stalled()`` is called when every one of them waits for a task that is not in the run.
    """

    __slots__ = ("_busy", "_declared", "_elapsed", "_end", "_lookup", "_pending", "_queue",
                 "_ready", "_spawn", "_stalled", "edges", "groups", "nodes", "priority",
                 "waiting")  # fmt: skip

    def __init__(
        self,
        lookup: Callable[[str], Any],
        ready: Callable[[TaskState], None],
        end: Callable[[TaskState, Outcome], None],
        spawn: Callable[[str, Any, tuple[Any, ...], Task], None],
        elapsed: Callable[[], float],
        pending: Callable[[], int],
        stalled: Callable[[], None],
    ) -> None:
        self._lookup = lookup
        self._ready = ready
        self._end = end
        self._spawn = spawn
        self._elapsed = elapsed
        self._pending = pending
        self._stalled = stalled
        self.nodes: dict[str, _Node] = {}  # the tasks that wait, by name
        self.waiting: dict[str, list[_Node]] = {}  # name -> the tasks that wait for it
        # every task that waited -> what for (the report draws the critical path from it)
        self.edges: dict[str, tuple[str, ...]] = {}
        self.groups: dict[str, list[str]] = {}  # fan-out group -> its tasks, once spawned
        self.priority: dict[str, float] = {}  # name -> its priority, when not 0
        self._declared: list[tuple[TaskState, tuple[str, ...], bool]] = []
        self._queue: deque[Outcome] = deque()
        self._busy = False

    # -- a gather's tasks: declared, checked, then held -----------------------------------

    def declare(self, st: TaskState, deps: tuple[str, ...], refs: bool) -> None:
        """A task of a gather that waits for ``deps`` (checked by :meth:`check`)."""
        self._declared.append((st, deps, refs))

    def check(self, states: Iterable[TaskState]) -> None:
        """Every name a declared task waits for is a task of ``states`` (``x/*`` a fan-out
        group), and no task waits for itself through others: InvalidPolicy otherwise."""
        known = {st.name: st for st in states}
        node_deps: dict[str, tuple[str, ...]] = {}
        for st, deps, _ in self._declared:
            for d in deps:
                if d not in known:
                    import difflib

                    close = difflib.get_close_matches(d, known, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise InvalidPolicy(
                        f"tasks[{st.name!r}]: waits for {d!r}, which is not a task of this "
                        f"run{hint}"
                    )
            for raw in st.opts.after:
                if raw.endswith("/*") and known[raw[:-2]].fn is not fan_out:
                    raise InvalidPolicy(
                        f"tasks[{st.name!r}]: {raw!r} stands for the tasks of a fan-out group, "
                        f"and {raw[:-2]!r} is not an fj.each(...)"
                    )
            node_deps[st.name] = deps
        cycle = _cycle(node_deps)
        if cycle:
            steps = f"{cycle[0]!r} waits for {cycle[1]!r}" + "".join(
                f", which waits for {n!r}" for n in cycle[2:]
            )
            raise InvalidPolicy(f"dependency cycle: {steps}")

    def hold_all(self, states: list[TaskState]) -> list[TaskState]:
        """Hold the declared tasks of ``states`` (all in the run by now); the others, to
        admit now, are returned."""
        priority = self.priority
        for st in states:
            if st.priority:
                priority[st.name] = st.priority
        declared, self._declared = self._declared, []
        for st, deps, refs in declared:
            self.hold(st, deps, refs)
        nodes = self.nodes
        return [st for st in states if st.name not in nodes and not st.done]

    # -- one task at a time ------------------------------------------------------------

    def check_spawn(self, name: str, deps: tuple[str, ...]) -> None:
        """A task about to be spawned would close no cycle (InvalidPolicy naming it)."""
        if name in deps:
            raise InvalidPolicy(f"task {name!r}: waits for itself")
        if name not in self.waiting:
            return  # nothing waits for it: it cannot be part of a cycle
        # is ``name`` reachable from its own dependencies through tasks that wait?
        parent: dict[str, str] = {}
        stack = [d for d in deps if d in self.nodes]
        for d in stack:
            parent.setdefault(d, name)
        while stack:
            n = stack.pop()
            for d in self.nodes[n].deps:
                if d == name:
                    path = [n]
                    while path[-1] != name:
                        path.append(parent[path[-1]])
                    cycle = [name, *reversed(path[:-1]), name]
                    steps = f"{cycle[0]!r} would wait for {cycle[1]!r}" + "".join(
                        f", which waits for {c!r}" for c in cycle[2:]
                    )
                    raise InvalidPolicy(f"dependency cycle: {steps}")
                if d in self.nodes and d not in parent:
                    parent[d] = n
                    stack.append(d)

    def note(self, st: TaskState) -> None:
        """A task that waits for nothing was added (its priority may be inherited)."""
        if st.priority:
            self.priority[st.name] = st.priority

    def hold(self, st: TaskState, deps: tuple[str, ...], refs: bool) -> bool:
        """Take ``st``, which waits for ``deps``, unless all of them ended ok already:
        False then (its references replaced), for the caller to admit it now."""
        node = _Node(st, deps, refs)
        self.edges[st.name] = deps
        if type(node.group) is Each:
            self.groups[st.name] = []
        lookup = self._lookup
        waiting = self.waiting
        missing = 0
        for d in deps:
            found = lookup(d)
            if type(found) is not Outcome:  # in the run (or not yet spawned): wait for it
                waiting.setdefault(d, []).append(node)
                missing += 1
            elif found.status is not _OK and not node.run_anyway:
                node.done = True
                self._end(st, _dependency_skip(st, d, found))
                return True
        node.missing = missing
        if missing:
            self.nodes[st.name] = node
            return True
        return self._release(node, direct=True)

    # -- endings ------------------------------------------------------------------------

    def ended(self, outcome: Outcome) -> None:
        """A task of the run has its Outcome (the recorder calls this for every one)."""
        if self._busy:
            self._queue.append(outcome)
            return
        self._busy = True
        try:
            self._process(outcome)
            queue = self._queue
            while queue:
                self._process(queue.popleft())
        finally:
            self._busy = False
        nodes = self.nodes
        if nodes and self._pending() == len(nodes):
            self._stalled()

    def _process(self, outcome: Outcome) -> None:
        name = outcome.name
        node = self.nodes.pop(name, None)
        if node is not None:  # it ended while it waited (the run stopped, a journal...)
            node.done = True
        waiting = self.waiting.pop(name, None)
        if waiting is None:
            return
        ok = outcome.status is _OK
        nodes = self.nodes
        for node in waiting:
            if node.done:
                continue
            if not ok and type(node.group) is list:
                # a task of a fan-out group: the group ends when all of them have
                if node.failure is None:
                    node.failure = (name, outcome)
            elif not ok and not node.run_anyway:
                node.done = True
                del nodes[node.st.name]
                self._end(node.st, _dependency_skip(node.st, name, outcome))
                continue
            node.missing -= 1
            if node.missing == 0:
                node.done = True
                del nodes[node.st.name]
                self._release(node, direct=False)

    def _release(self, node: _Node, direct: bool) -> bool:
        """Every dependency of ``node`` has ended: run it (or spawn its group, or end the
        group). Returns False when the caller admits it (``direct``)."""
        st = node.st
        group = node.group
        if type(group) is list:  # a fan-out group whose tasks have all ended
            if node.failure is not None:
                self._end(st, _dependency_skip(st, *node.failure))
            else:
                self._end(st, _ok(st, [self._lookup(n).value for n in group]))
            return True
        if node.inherit:
            priority = self.priority
            best = max((priority.get(d, 0) for d in node.deps), default=0)
            if best:
                st.priority = best
        if st.priority:
            self.priority[st.name] = st.priority
        if group is not None:
            assert type(group) is Each
            self._fan_out(node, group)
            return True
        if node.refs:
            try:
                st.fn, st.args = substitute(st.fn, st.args, self._value)
            except Exception as e:  # a path that is not in the value, a property that raised
                self._end(st, _failed(st, e))
                return True
        st.added = self._elapsed()  # what it waits from now on is for a slot, not for others
        if direct:
            return False
        self._ready(st)
        return True

    def _value(self, ref: Ref) -> Any:
        """What ``ref`` stands for, now that its task has ended."""
        found = self._lookup(ref.name)
        if type(found) is Outcome and found.status is _OK:
            value = found.value
        elif ref.name in self.groups:  # a group not all ok: the values of those that are
            value = [
                o.value
                for n in self.groups[ref.name]
                if type(o := self._lookup(n)) is Outcome and o.status is _OK
            ]
        else:
            return None if ref.default is MISSING else ref.default
        return pick(value, ref.path, repr(ref)) if ref.path else value

    def _fan_out(self, node: _Node, group: Each) -> None:
        """Spawn one task per element of the source's value; the group then waits for them."""
        st = node.st
        name = st.name
        template = group.template
        try:
            source = self._lookup(group.source)
            value = source.value if source.status is _OK else None
            if group.path and value is not None:
                value = pick(value, group.path, f"fj.each({group.source!r})")
            if value is None:
                elements: list[Any] = []
            elif isinstance(value, str | bytes | dict):
                raise TypeError(
                    f"fj.each({group.source!r}): its value is a {type(value).__name__}, not a "
                    "list of elements (give a path to the list: fj.ref(name, key))"
                )
            else:
                elements = list(value)
            if group.key is None:
                names = [f"{name}/{i}" for i in range(len(elements))]
            else:
                names = []
                for e in elements:
                    k = group.key(e)
                    if not isinstance(k, str):
                        raise TypeError(f"fj.each key: expected a string, got {k!r} for {e!r}")
                    names.append(f"{name}/{k}")
                if len(set(names)) != len(names):
                    dup = next(n for n in names if names.count(n) > 1)
                    raise InvalidPolicy(f"fj.each key: two elements are both named {dup!r}")
            for n in names:
                if self._lookup(n) is not None:
                    raise InvalidPolicy(f"fj.each: a task named {n!r} is already in the run")
            calls = [substitute(template.fn, template.args, self._value, e) for e in elements]
        except Exception as e:
            self._end(st, _failed(st, e))
            return
        if not names:
            self._end(st, _ok(st, []))
            return
        opts = template
        if opts.priority == 0 and st.priority:
            opts = opts.with_options(priority=st.priority)
        node.group = names
        node.missing = len(names)
        node.done = False
        node.run_anyway = False
        self.groups[name] = names
        self.nodes[name] = node
        waiting = self.waiting
        edges = self.edges
        for n in names:
            waiting.setdefault(n, []).append(node)
            edges[n] = node.deps
        for n, (fn, args) in zip(names, calls, strict=True):
            self._spawn(n, fn, args, opts)
        self.edges[name] = tuple(names)

    # -- the run stops, or can go no further ---------------------------------------------

    def drain(self) -> list[TaskState]:
        """Remove and return every task that waits (the run is stopping)."""
        nodes = list(self.nodes.values())
        self.nodes.clear()
        for node in nodes:
            node.done = True
        return [node.st for node in nodes]

    @property
    def stalled(self) -> bool:
        """Whether every task left waits for a task that is not in the run."""
        return bool(self.nodes) and self._pending() == len(self.nodes)

    def abandon(self) -> None:
        """Skip the tasks that wait for a task that was never added (a Fan closes)."""
        for name in [n for n in self.waiting if self._lookup(n) is None]:
            for node in self.waiting.pop(name):
                if not node.done:
                    node.done = True
                    del self.nodes[node.st.name]
                    st = node.st
                    st.close()
                    self._end(st, _skip(st, DependencyFailed(name, None)))


def _cycle(deps_of: dict[str, tuple[str, ...]]) -> list[str] | None:
    """A cycle among the tasks that wait (each waits for the next), or None (Kahn's
    algorithm: linear in the number of edges)."""
    users: dict[str, list[str]] = {}
    indegree: dict[str, int] = {}
    for name, deps in deps_of.items():
        k = 0
        for d in deps:
            if d in deps_of:
                k += 1
                users.setdefault(d, []).append(name)
        indegree[name] = k
    free = [n for n, k in indegree.items() if k == 0]
    done = 0
    while free:
        n = free.pop()
        done += 1
        for u in users.get(n, ()):
            indegree[u] -= 1
            if indegree[u] == 0:
                free.append(u)
    if done == len(deps_of):
        return None
    # every task left waits for another task left: follow them until one comes back
    start = next(n for n, k in indegree.items() if k > 0)
    path: list[str] = []
    at: dict[str, int] = {}
    n = start
    while n not in at:
        at[n] = len(path)
        path.append(n)
        n = next(d for d in deps_of[n] if indegree.get(d, 0) > 0)
    return [*path[at[n] :], n]


def _skip(st: TaskState, error: DependencyFailed) -> Outcome:
    return Outcome(
        st.name, _SKIPPED, None, error, "dependency", 0, None, None, None, st.group, st.seq
    )


def _dependency_skip(st: TaskState, dependency: str, outcome: Outcome) -> Outcome:
    """The Outcome of ``st``, skipped because ``dependency`` ended not ok (``outcome``)."""
    st.close()
    err = outcome.error
    status = outcome.status.value
    if isinstance(err, DependencyFailed):
        error = DependencyFailed(dependency, status, err.root, err.root_status or "never")
    else:
        detail = None
        if err is not None and outcome.status is _FAILED:
            text = str(err)
            detail = (f"{type(err).__name__}: {text}" if text else type(err).__name__)[
                :_DETAIL_CHARS
            ]
        elif outcome.reason and outcome.reason != "timeout":
            detail = f"({outcome.reason})"  # why it was stopped: "deadline", "budget"...
        error = DependencyFailed(dependency, status, detail=detail)
    return _skip(st, error)


def _failed(st: TaskState, error: BaseException) -> Outcome:
    """A task whose arguments could not be made (a reference into a value that lacks it)."""
    st.close()
    return Outcome(st.name, _FAILED, None, error, None, 0, None, None, None, st.group, st.seq)


def _ok(st: TaskState, value: Any) -> Outcome:
    """A fan-out group whose tasks all ended ok (it made no call of its own)."""
    return Outcome(st.name, _OK, value, None, None, 0, None, None, None, st.group, st.seq)
