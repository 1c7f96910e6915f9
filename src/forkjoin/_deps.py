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

import functools
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from ._call import TaskState
from ._errors import DependencyFailed, InvalidPolicy
from ._outcome import Outcome, Status
from ._refs import MISSING, Each, Item, Ref, fan_out, pick, placeholders, substitute
from ._task import Task

__all__ = ["Graph", "dependencies"]

_OK: Final = Status.OK
_FAILED: Final = Status.FAILED
_SKIPPED: Final = Status.SKIPPED
_DETAIL_CHARS: Final = 200


_SCANNED: Final = (Ref, Item, tuple, list, dict, functools.partial)


def _base(name: str) -> str:
    """``"deep/*"`` (the tasks of group ``deep``) waits for the group itself."""
    return name[:-2] if name.endswith("/*") else name


def dependencies(
    st: TaskState, seen: dict[int, Any] | None = None
) -> tuple[tuple[str, ...], bool] | None:
    """What ``st`` waits for (distinct names) and whether its arguments hold references,
    or None when it waits for nothing."""
    fn = st.fn
    opts = st.opts
    if fn is fan_out:
        group: Each = st.args[0]
        template = group.template
        refs, _, _ = placeholders(template.fn, template.args, seen)
        names = (*opts.after, *(r.name for r in refs))
        return tuple(dict.fromkeys(_base(n) for n in names)), bool(refs)
    for a in st.args:
        if type(a) in _SCANNED:
            break
    else:
        if type(fn) is not functools.partial:  # no placeholder can hide in these arguments
            after = opts.after  # distinct names already (fj.task checked them)
            return (after, False) if after else None
    refs, items, _ = placeholders(fn, st.args, seen)
    if items:
        raise InvalidPolicy(
            f"task {st.name!r}: fj.item() stands for an element in a task of fj.each(...), "
            "and this task is not one"
        )
    after = opts.after
    if not refs:
        return (after, False) if after else None
    names = (*after, *[r.name for r in refs])
    if len(set(names)) < len(names):
        names = tuple(dict.fromkeys(names))
    return names, True


# A task that waits is a list [state, missing, refs]: ``missing`` counts the dependencies it
# still waits for (below 1 once it waits no more: released, skipped or drained), ``refs``
# says whether its arguments hold references to replace. A list, not an object: one is made
# per dependent task, on the path whose cost per task the dependency benchmark measures.
_ST: Final = 0
_MISSING: Final = 1
_REFS: Final = 2
Node = list[Any]


def _node(st: TaskState, deps: tuple[str, ...], refs: bool) -> Node:
    if st.fn is fan_out:
        return _Group(st, deps, refs)
    return [st, len(deps), refs]


class _Group(list[Any]):
    """A fan-out group's entry: a node that waits for its source (``each``), then for the
    tasks it spawned (``names``); ``failure`` is the first of those that did not end ok."""

    __slots__ = ("each", "failure", "names")

    def __init__(self, st: TaskState, deps: tuple[str, ...], refs: bool) -> None:
        super().__init__((st, len(deps), refs))
        self.each: Each = st.args[0]
        self.names: list[str] | None = None
        self.failure: tuple[str, Outcome] | None = None


class Graph:
    """The dependencies of one run (see the module docstring).

    ``lookup(name)`` is the run's record of a task (its state while it is in the run, its
    Outcome once it ended, None if unknown); ``ready(st)`` admits a released task; ``end(st,
    outcome)`` records the Outcome of one that will not start; ``spawn(name, fn, args,
    opts)`` adds a task of a fan-out; ``pending()`` counts the run's tasks with no Outcome;
    ``stalled()`` is called when every one of them waits for a task that is not in the run.
    """

    __slots__ = ("_busy", "_elapsed", "_end", "_lookup", "_pending", "_queue", "_ready",
                 "_spawn", "_stalled", "_unspawned", "edges", "groups", "nodes", "priority",
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
        self.nodes: dict[str, Node] = {}  # the tasks that wait, by name
        self.waiting: dict[str, list[Node]] = {}  # name -> the tasks that wait for it
        # every task that waited -> what for (the report draws the critical path from it)
        self.edges: dict[str, tuple[str, ...]] = {}
        self.groups: dict[str, list[str]] = {}  # fan-out group -> its tasks, once spawned
        self.priority: dict[str, float] = {}  # name -> its priority, when not 0
        self._queue: deque[Outcome] = deque()
        self._busy = False
        self._unspawned = False  # a Fan's task waits for one not spawned (yet)

    # -- a gather's tasks, all known before any starts ------------------------------------

    def plan(self, states: list[TaskState]) -> bool:
        """Hold every task of ``states`` that waits for others (False: none does), after
        checking that each name it waits for is a task of ``states`` and that no task
        waits for itself through others (InvalidPolicy naming the task or the cycle)."""
        seen: dict[int, Any] = {}
        nodes = self.nodes
        waiting = self.waiting
        edges = self.edges
        before: set[str] = set()  # the names listed so far
        ordered = True  # every task listed after all it waits for: no cycle is possible
        scanned = _SCANNED
        partial = functools.partial
        priority = self.priority
        for st in states:
            name = st.name
            if st.priority:
                priority[name] = st.priority
            for a in st.args:
                if type(a) in scanned:
                    break
            else:
                fn = st.fn
                if type(fn) is not partial and fn is not fan_out:
                    # no placeholder in these arguments: only what the task names counts
                    # (the common case, without dependencies()'s frame)
                    deps = st.opts.after
                    if not deps:
                        before.add(name)
                        continue
                    # the linking below is written out again here (not a shared function):
                    # this is every task's path in a large graph, and a call per task
                    # measured about 8 % of the DAG workload's time
                    node = [st, len(deps), False]
                    nodes[name] = node
                    edges[name] = deps
                    for d in deps:
                        if d not in before:
                            ordered = False
                        w = waiting.get(d)
                        if w is None:
                            waiting[d] = [node]
                        else:
                            w.append(node)
                    before.add(name)
                    continue
            found = dependencies(st, seen)
            if found is not None:
                deps, refs = found
                node = _node(st, deps, refs)
                nodes[name] = node
                edges[name] = deps
                if type(node) is _Group:
                    self.groups[name] = []
                for d in deps:
                    if d not in before:
                        ordered = False
                    w = waiting.get(d)
                    if w is None:
                        waiting[d] = [node]
                    else:
                        w.append(node)
            before.add(name)
        if not nodes:
            return False
        if not ordered:  # (in order, every name waited for was a task listed before)
            self._check(before)
        return True

    def _check(self, known: set[str]) -> None:
        """InvalidPolicy for a name that is not a task of the run, or for a cycle."""
        nodes = self.nodes
        for d, w in self.waiting.items():
            if d not in known:
                import difflib

                close = difflib.get_close_matches(d, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise InvalidPolicy(
                    f"tasks[{w[0][_ST].name!r}]: waits for {d!r}, which is not a task of this "
                    f"run{hint}"
                )
        cycle = self._cycle([n for n in known if n not in nodes])
        if cycle:
            steps = f"{cycle[0]!r} waits for {cycle[1]!r}" + "".join(
                f", which waits for {n!r}" for n in cycle[2:]
            )
            raise InvalidPolicy(f"dependency cycle: {steps}")

    def _cycle(self, free: list[str]) -> list[str] | None:
        """A cycle among the held tasks (each waits for the next), or None: Kahn's
        algorithm from the tasks that wait for nothing, on the nodes' own counts (put back
        after), linear in the edges."""
        nodes = self.nodes
        waiting = self.waiting
        done = 0
        while free:
            name = free.pop()
            for node in waiting.get(name, ()):
                node[_MISSING] -= 1
                if node[_MISSING] == 0:
                    done += 1
                    free.append(node[_ST].name)
        stuck = {name: node for name, node in nodes.items() if node[_MISSING] > 0}  # in order
        edges = self.edges
        for name, node in nodes.items():
            node[_MISSING] = len(edges[name])
        if done == len(nodes):
            return None
        # every task left waits for another task left: follow them until one comes back
        path: list[str] = []
        at: dict[str, int] = {}
        name = next(iter(stuck))  # the first listed
        while name not in at:
            at[name] = len(path)
            path.append(name)
            name = next(d for d in edges[name] if d in stuck)
        return [*path[at[name] :], name]

    def hold_all(self, states: list[TaskState]) -> list[TaskState]:
        """Of a gather's tasks (all in the run by now), those to admit now: the others
        wait (see :meth:`plan`)."""
        nodes = self.nodes
        # (one that already ended, e.g. resumed from a journal, is neither held nor admitted)
        return [st for st in states if st.name not in nodes and not st.done]

    def forget(self, states: list[TaskState]) -> None:
        """These tasks will end without being run (resumed from a journal): none of them
        is released when what it waits for ends."""
        nodes = self.nodes
        for st in states:
            node = nodes.pop(st.name, None)
            if node is not None:
                node[_MISSING] = -1

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
            for d in self.edges[n]:
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
        node = _node(st, deps, refs)
        self.edges[st.name] = deps
        if type(node) is _Group:
            self.groups[st.name] = []
        lookup = self._lookup
        waiting = self.waiting
        missing = 0
        for d in deps:
            found = lookup(d)
            if type(found) is not Outcome:  # in the run (or not yet spawned): wait for it
                waiting.setdefault(d, []).append(node)
                missing += 1
                if found is None:
                    self._unspawned = True  # the run may stall waiting for it
            elif found.status is not _OK and st.opts.on_dependency_failure != "run":
                node[_MISSING] = -1
                self._end(st, _dependency_skip(st, d, found))
                return True
        node[_MISSING] = missing
        if missing:
            self.nodes[st.name] = node
            return True
        return self._release(node, True, None)

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
        if self._unspawned:
            nodes = self.nodes
            if nodes and self._pending() == len(nodes):
                self._stalled()

    def _process(self, outcome: Outcome) -> None:
        name = outcome.name
        nodes = self.nodes
        node = nodes.pop(name, None)
        if node is not None:  # it ended while it waited (a journal's resumed outcome...)
            node[_MISSING] = -1
        waiting = self.waiting.pop(name, None)
        if waiting is None:
            return
        ok = outcome.status is _OK
        now: float | None = None
        for node in waiting:
            missing = node[_MISSING]
            if missing < 1:
                continue  # it waits no more (skipped, or the run stopped)
            if not ok:
                if type(node) is _Group and node.names is not None:
                    # a task of the group: the group ends when all of them have
                    if node.failure is None:
                        node.failure = (name, outcome)
                elif node[_ST].opts.on_dependency_failure != "run":
                    node[_MISSING] = -1
                    st = node[_ST]
                    del nodes[st.name]
                    self._end(st, _dependency_skip(st, name, outcome))
                    continue
            if missing == 1:
                node[_MISSING] = 0
                del nodes[node[_ST].name]
                if now is None:
                    now = self._elapsed()
                self._release(node, False, now)
            else:
                node[_MISSING] = missing - 1

    def _release(self, node: Node, direct: bool, now: float | None) -> bool:
        """Every dependency of ``node`` has ended: run it (or spawn its group, or end the
        group). Returns False when the caller admits it (``direct``). ``now``: the run's
        clock, if the caller read it."""
        st: TaskState = node[_ST]
        priority = self.priority
        if type(node) is _Group:
            if node.names is not None:  # the group's tasks have all ended
                if node.failure is not None:
                    self._end(st, _dependency_skip(st, *node.failure))
                else:
                    lookup = self._lookup
                    self._end(st, _ok(st, [lookup(n).value for n in node.names]))
                return True
            if priority and st.opts.priority == 0:
                self._inherit(st)
            self._fan_out(node)
            return True
        if priority:
            if st.opts.priority == 0:
                self._inherit(st)
            if st.priority:
                priority[st.name] = st.priority
        if node[_REFS]:
            try:
                st.fn, st.args = substitute(st.fn, st.args, self._value)
            except Exception as e:  # a path that is not in the value, a property that raised
                self._end(st, _failed(st, e))
                return True
        # what it waits for from now on is a slot, not other tasks
        st.added = self._elapsed() if now is None else now
        if direct:
            return False
        self._ready(st)
        return True

    def _inherit(self, st: TaskState) -> None:
        """A task left at priority 0 takes the highest priority of what it waited for."""
        priority = self.priority
        best = max((priority.get(d, 0) for d in self.edges[st.name]), default=0)
        if best:
            st.priority = best
            priority[st.name] = best

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

    def _fan_out(self, node: _Group) -> None:
        """Spawn one task per element of the source's value; the group then waits for them."""
        st: TaskState = node[_ST]
        name = st.name
        group = node.each
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
        node.names = names
        node[_MISSING] = len(names)
        self.groups[name] = names
        self.nodes[name] = node
        waiting = self.waiting
        edges = self.edges
        deps = edges[name]
        for n in names:
            waiting.setdefault(n, []).append(node)
            edges[n] = deps  # its tasks waited for what the group waited for
        edges[name] = tuple(names)
        for n, (fn, args) in zip(names, calls, strict=True):
            self._spawn(n, fn, args, opts)

    # -- the run stops, or can go no further ---------------------------------------------

    def drain(self) -> list[TaskState]:
        """Remove and return every task that waits (the run is stopping)."""
        nodes = list(self.nodes.values())
        self.nodes.clear()
        for node in nodes:
            node[_MISSING] = -1
        return [node[_ST] for node in nodes]

    @property
    def stalled(self) -> bool:
        """Whether every task left waits for a task that is not in the run."""
        return bool(self.nodes) and self._pending() == len(self.nodes)

    def abandon(self) -> None:
        """Skip the tasks that wait for a task that was never added (a Fan closes)."""
        for name in [n for n in self.waiting if self._lookup(n) is None]:
            for node in self.waiting.pop(name):
                if node[_MISSING] >= 1:
                    node[_MISSING] = -1
                    st = node[_ST]
                    del self.nodes[st.name]
                    st.close()
                    self._end(st, _skip(st, DependencyFailed(name, None)))


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
