"""Property tests: random DAGs of sleeps on the virtual clock.

Each task sleeps a whole number of virtual seconds, may fail, and waits for a random set of
earlier tasks (through ``after=`` or ``fj.ref``); the mapping lists them in a shuffled
order, so the order given is not the order they can run in.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import forkjoin as fj
from forkjoin.testing import run

from .conftest import no_orphans


@dataclass(frozen=True)
class Node:
    duration: int
    fails: bool
    deps: tuple[int, ...]
    by_ref: tuple[bool, ...]  # per dependency: an fj.ref in the arguments, or after=
    priority: int


@st.composite
def dags(draw: Any, max_size: int = 14, failures: bool = True) -> list[Node]:
    n = draw(st.integers(1, max_size))
    nodes = []
    for i in range(n):
        deps = tuple(sorted(draw(st.sets(st.integers(0, i - 1), max_size=3)))) if i else ()
        nodes.append(
            Node(
                duration=draw(st.integers(0, 4)),
                fails=draw(st.booleans()) if failures else False,
                deps=deps,
                by_ref=tuple(draw(st.booleans()) for _ in deps),
                priority=draw(st.integers(-1, 1)),
            )
        )
    return nodes


@dataclass
class Trace:
    starts: dict[str, float] = field(default_factory=dict)
    ends: dict[str, float] = field(default_factory=dict)
    got: dict[str, tuple[Any, ...]] = field(default_factory=dict)


def name(i: int) -> str:
    return f"t{(i * 7) % 100:02d}-{i}"


def build(nodes: list[Node], trace: Trace, order: list[int]) -> dict[str, Any]:
    def work(me: str, node: Node) -> Any:
        async def call(*values: Any) -> str:
            loop = asyncio.get_running_loop()
            trace.starts[me] = loop.time()
            trace.got[me] = values
            try:
                await asyncio.sleep(node.duration)
            finally:
                trace.ends[me] = loop.time()
            if node.fails:
                raise RuntimeError(me)
            return f"value of {me}"

        return call

    tasks: dict[str, Any] = {}
    for i in order:
        node = nodes[i]
        refs = [fj.ref(name(d)) for d, r in zip(node.deps, node.by_ref, strict=True) if r]
        after = [name(d) for d, r in zip(node.deps, node.by_ref, strict=True) if not r]
        tasks[name(i)] = fj.task(work(name(i), node), *refs, after=after, priority=node.priority)
    return tasks


def expected_ok(nodes: list[Node]) -> list[bool]:
    ok: list[bool] = []
    for node in nodes:
        ok.append(not node.fails and all(ok[d] for d in node.deps))
    return ok


@settings(max_examples=150, deadline=None)
@given(
    nodes=dags(),
    limit=st.none() | st.integers(1, 4),
    seed=st.randoms(use_true_random=False),
    observed=st.booleans(),
)
def test_random_dags_respect_dependencies_limits_and_lose_no_outcome(
    nodes: list[Node], limit: int | None, seed: Any, observed: bool
) -> None:
    trace = Trace()
    order = list(range(len(nodes)))
    seed.shuffle(order)
    finished: list[str] = []

    class Finished:
        def on_task_finished(self, event: fj.TaskFinished) -> None:
            finished.append(event.outcome.name)

    async def main() -> fj.Results:
        results = await fj.gather(
            build(nodes, trace, order), limit=limit, observers=[Finished()] if observed else ()
        )
        no_orphans()
        return results

    results = run(main())
    names = [name(i) for i in range(len(nodes))]

    # every task ends with exactly one Outcome, keyed, in the order given
    assert list(results) == [name(i) for i in order]
    if observed:
        assert sorted(finished) == sorted(names)
    ok = expected_ok(nodes)
    for i, node in enumerate(nodes):
        o = results[name(i)]
        deps_ok = all(ok[d] for d in node.deps)
        if not deps_ok:
            assert o.status is fj.Status.SKIPPED
            assert o.reason == "dependency"
            assert name(i) not in trace.starts  # never called
        elif node.fails:
            assert o.status is fj.Status.FAILED
        else:
            assert o.ok
            assert o.value == f"value of {name(i)}"

    # nothing starts before all of its dependencies have ended ok, and it gets their values
    for i, node in enumerate(nodes):
        me = name(i)
        if me not in trace.starts:
            continue
        for d in node.deps:
            assert results[name(d)].ok
            assert trace.starts[me] >= trace.ends[name(d)]
        refs = [name(d) for d, r in zip(node.deps, node.by_ref, strict=True) if r]
        assert trace.got[me] == tuple(f"value of {r}" for r in refs)

    # no needless waiting: at every moment, as many run as the limit and the ready tasks allow
    cap = math.inf if limit is None else limit
    moments = sorted({*trace.starts.values(), *trace.ends.values()})
    for t in moments:
        running = sum(1 for n in trace.starts if trace.starts[n] <= t < trace.ends[n])
        ready = 0
        for i, node in enumerate(nodes):
            me = name(i)
            if me not in trace.starts or trace.ends[me] <= t:
                continue  # never ready, or done by then
            if all(results[name(d)].ok and trace.ends[name(d)] <= t for d in node.deps):
                ready += 1
        assert running == min(cap, ready), (t, running, ready)


@settings(max_examples=100, deadline=None)
@given(nodes=dags(max_size=20, failures=False), seed=st.randoms(use_true_random=False))
def test_makespan_of_a_dag_of_sleeps_is_its_critical_path(nodes: list[Node], seed: Any) -> None:
    trace = Trace()
    order = list(range(len(nodes)))
    seed.shuffle(order)
    results = run(fj.gather(build(nodes, trace, order)))
    finish: list[float] = []
    for node in nodes:
        finish.append(node.duration + max((finish[d] for d in node.deps), default=0))
    longest = max(finish)
    assert results.all_ok
    report = results.report
    assert report.wall == longest
    if not any(node.deps for node in nodes):
        assert report.critical_path == ()
        assert report.critical_path_speedup is None
        return
    assert report.critical_path_duration == longest
    assert report.critical_path_speedup == (report.total_duration / longest if longest else 0.0)
    # the path it names is a real chain of dependencies that adds up to that
    chain = report.critical_path
    index = {name(i): i for i in range(len(nodes))}
    assert sum(nodes[index[n]].duration for n in chain) == longest
    for a, b in itertools.pairwise(chain):
        assert index[a] in nodes[index[b]].deps
