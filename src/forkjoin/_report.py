"""RunReport: what ran, in what order, how long, how concurrently, what it cost.

A report is a pure function of a run's :class:`Results` (or of its saved JSON): it keeps
one row per task (with every call) and the run's settings, and derives every figure from
those. So ``RunReport.from_dict(report.to_dict())`` is the same report, and the HTML
timeline, the text table and the CLI can all be re-rendered from a saved JSON file.
The schema is documented in docs/report-schema.md (``version`` field).
"""

from __future__ import annotations

import heapq
import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._secrets import clip
from ._values import FACTORY, FrozenValue, set_field

if TYPE_CHECKING:
    from pathlib import Path

    from rich.console import RenderableType

    from ._outcome import Outcome, RunInfo
    from ._record import Aggregate

__all__ = ["CallRow", "RunReport", "TaskRow", "critical_path"]


SCHEMA_VERSION = 3
_TOP = 5  # how many slowest tasks / stragglers a report names
_ERROR_CHARS = 300


@dataclass(slots=True, init=False, repr=False, eq=False)
class CallRow(FrozenValue):
    """One call of a task: run-clock start/end, its error text (None if ok), hedge flag,
    and where it ran (``"loop"``, ``"thread"``, ``"pid 4242"``, a Dask worker's address)."""

    number: int
    started: float
    ended: float
    error: str | None = None
    hedge: bool = False
    where: str = "loop"

    def __init__(
        self,
        number: int,
        started: float,
        ended: float,
        error: str | None = None,
        hedge: bool = False,
        where: str = "loop",
    ) -> None:
        set_field(self, "number", number)
        set_field(self, "started", started)
        set_field(self, "ended", ended)
        set_field(self, "error", error)
        set_field(self, "hedge", hedge)
        set_field(self, "where", where)


@dataclass(slots=True, init=False, repr=False, eq=False)
class TaskRow(FrozenValue):
    """One task of the report. ``started``/``ended`` are run-clock seconds (None: never ran).

    Values and arguments are never kept (they may hold secrets); errors are kept as text.
    """

    name: str
    status: str
    group: str | None = None
    reason: str | None = None
    attempts: int = 0
    started: float | None = None
    ended: float | None = None
    cost: float | None = None
    tokens: float | None = None
    fallback: bool = False
    error: str | None = None
    calls: tuple[CallRow, ...] = ()
    waited: float | None = None
    resumed: bool = False
    after: tuple[str, ...] = ()  # the tasks it waited for

    def __init__(
        self,
        name: str,
        status: str,
        group: str | None = None,
        reason: str | None = None,
        attempts: int = 0,
        started: float | None = None,
        ended: float | None = None,
        cost: float | None = None,
        tokens: float | None = None,
        fallback: bool = False,
        error: str | None = None,
        calls: tuple[CallRow, ...] = (),
        waited: float | None = None,
        resumed: bool = False,
        after: tuple[str, ...] = (),
    ) -> None:
        set_field(self, "name", name)
        set_field(self, "status", status)
        set_field(self, "group", group)
        set_field(self, "reason", reason)
        set_field(self, "attempts", attempts)
        set_field(self, "started", started)
        set_field(self, "ended", ended)
        set_field(self, "cost", cost)
        set_field(self, "tokens", tokens)
        set_field(self, "fallback", fallback)
        set_field(self, "error", error)
        set_field(self, "calls", calls)
        set_field(self, "waited", waited)
        set_field(self, "resumed", resumed)
        set_field(self, "after", after)

    @property
    def duration(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started

    def spans(self) -> list[tuple[float, float]]:
        """When the task's calls ran: one (start, end) per call (waits between them, for a
        slot, a rate limit or a retry's backoff, are not in any)."""
        if self.calls:
            return [(c.started, c.ended) for c in self.calls]
        if self.started is None or self.ended is None:
            return []
        return [(self.started, self.ended)]


def _error_text(error: BaseException | None) -> str | None:
    if error is None:
        return None
    text = str(error)
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return clip(text, _ERROR_CHARS)  # redacted before it is cut


def _row_from_outcome(o: Outcome, after: tuple[str, ...] = ()) -> TaskRow:
    calls = tuple(
        CallRow(
            a.number,
            a.started,
            a.ended,
            _error_text(a.error),
            a.hedge,
            a.where or "loop",
        )
        for a in o.history
    )
    numbers = {c.number for c in calls if not c.hedge}
    if calls and o.ended is not None and len(numbers) < o.attempts and o.status.value != "ok":
        # the call in flight when the run stopped the task (deadline, fail-fast...) is not
        # in the engine's history: it ran from the last recorded call's end to the end
        last = max(calls, key=lambda c: c.ended)
        calls = (*calls, CallRow(o.attempts, min(last.ended, o.ended), o.ended,
                                 _error_text(o.error), False, last.where))  # fmt: skip
    return TaskRow(
        name=o.name,
        status=o.status.value,
        group=o.group,
        reason=o.reason,
        attempts=o.attempts,
        started=o.started,
        ended=o.ended,
        cost=o.cost,
        tokens=o.tokens,
        fallback=o.fallback,
        error=None if o.status.value == "ok" else _error_text(o.error),
        calls=calls,
        waited=o.waited,
        resumed=o.resumed,
        after=tuple(after),
    )


def _jsonable(value: Any) -> Any:
    """Policy settings as JSON values (objects without a JSON form become their repr)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return repr(value)


def _budget_limit(budget: Any) -> float | None:
    """The USD cap of a run's budget: its report (``{"usd": ...}``) or a number."""
    if isinstance(budget, int | float) and not isinstance(budget, bool):
        return float(budget)
    if isinstance(budget, Mapping):
        usd = budget.get("usd")
        if isinstance(usd, int | float) and not isinstance(usd, bool):
            return float(usd)
    return None


def _initial_limits(limits: dict[str, Any], policies: Mapping[str, Any]) -> dict[str, int]:
    """Every group's configured limit: an adaptive limit's initial value."""
    out = {g: int(v) for g, v in limits.items() if isinstance(v, int | float)}
    adaptive = policies.get("adaptive")
    if isinstance(adaptive, Mapping):
        for g, a in adaptive.items():
            if isinstance(a, Mapping) and "initial" in a:
                out[g] = int(a["initial"])
    return out


def _limits_in_force(
    limits: Mapping[str, Any], policies: Mapping[str, Any], wall: float
) -> dict[str, dict[str, float]]:
    """Each group's limit over the run: initial, final and time-weighted mean."""
    out: dict[str, dict[str, float]] = {}
    for g, v in limits.items():
        if isinstance(v, int | float):
            out[g] = {"initial": v, "final": v, "mean": float(v)}
    adaptive = policies.get("adaptive")
    if isinstance(adaptive, Mapping):
        for g, a in adaptive.items():
            if not isinstance(a, Mapping):
                continue
            changes = [(float(t), float(n)) for t, n in a.get("changes") or []]
            if not changes:
                continue
            end = max(wall, changes[-1][0])
            weighted = 0.0
            for (t, n), (t2, _) in zip(changes, [*changes[1:], (end, 0.0)], strict=True):
                weighted += n * max(0.0, t2 - t)
            span = end - changes[0][0]
            mean = weighted / span if span > 0 else changes[-1][1]
            out[g] = {"initial": changes[0][1], "final": changes[-1][1], "mean": mean}
    return out


def concurrency_steps(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, int]]:
    """How many intervals are open over time: ``[(t, n), ...]``, n holding from t on.

    An interval ending at the same instant another starts frees its slot first.
    """
    points: list[tuple[float, int]] = []
    for s, e in intervals:
        points.append((s, 1))
        points.append((e, -1))
    points.sort(key=lambda p: (p[0], p[1]))
    steps: list[tuple[float, int]] = []
    cur = 0
    for t, d in points:
        cur += d
        if steps and steps[-1][0] == t:
            steps[-1] = (t, cur)
        else:
            steps.append((t, cur))
    return steps


def _packed_makespan(durations: list[float], slots: int | None) -> float:
    """The wall time of these durations packed longest-first into ``slots`` parallel slots
    (exact for equal durations: N tasks of d under limit L take ceil(N / L) * d)."""
    if not durations:
        return 0.0
    if slots is None or slots >= len(durations):
        return max(durations)
    free = [0.0] * slots
    for d in sorted(durations, reverse=True):
        heapq.heappush(free, heapq.heappop(free) + d)
    return max(free)


def critical_path(rows: Iterable[TaskRow]) -> tuple[tuple[str, ...], float]:
    """The chain of dependencies whose durations add up to the most, and that sum: no run
    under these dependencies can take less wall time. Linear in rows and edges; a task's
    weight is its duration (from its first call to its end), a task that never ran weighs
    nothing. Names that are not rows, and rows caught in a cycle (a hand-written report),
    are left out."""
    rows = list(rows)
    weight: dict[str, float] = {}
    ended: dict[str, float] = {}
    for r in rows:
        took = r.duration
        weight[r.name] = took if took is not None and took > 0 else 0.0
        ended[r.name] = r.ended if r.ended is not None else -math.inf
    deps = {r.name: [d for d in r.after if d in weight and d != r.name] for r in rows}
    users: dict[str, list[str]] = {}
    indegree: dict[str, int] = {}
    for name, ds in deps.items():
        indegree[name] = len(ds)
        for dep in ds:
            users.setdefault(dep, []).append(name)
    free = [n for n, k in indegree.items() if k == 0]
    best: dict[str, float] = {}
    links: dict[str, int] = {}
    before: dict[str, str | None] = {}
    while free:
        n = free.pop()
        # the dependency the chain came through: the longest chain, then the one that
        # ended last (it is what the task really waited for)
        prev = max(deps[n], key=lambda d: (best[d], ended[d], links[d]), default=None)
        best[n] = weight[n] + (best[prev] if prev is not None else 0.0)
        links[n] = links[prev] + 1 if prev is not None else 1
        before[n] = prev
        for u in users.get(n, ()):
            indegree[u] -= 1
            if indegree[u] == 0:
                free.append(u)
    if not best:
        return (), 0.0
    last = max(best, key=lambda n: (best[n], ended[n], links[n]))
    chain: list[str] = []
    at: str | None = last
    while at is not None:
        chain.append(at)
        at = before[at]
    return tuple(reversed(chain)), best[last]


def _chain_text(chain: tuple[str, ...]) -> str:
    if len(chain) <= 6:
        return " → ".join(chain)
    return " → ".join([*chain[:3], f"… ({len(chain) - 5} more)", *chain[-2:]])


@dataclass(slots=True, init=False, repr=False, eq=False)
class RunReport(FrozenValue):
    """Summary of one run, derived from one row per task (:class:`TaskRow`).

    Time: ``wall``; ``total_duration`` is the sum of task durations — what running them one
    after another would have taken; ``speedup`` = total_duration / wall; ``ideal_speedup``
    is what the same durations would reach packed perfectly into the run's limits;
    ``time_saved`` = total_duration - wall. Dependencies (tasks with ``after``):
    ``critical_path``, the chain of dependent tasks whose durations add up to the most,
    ``critical_path_duration`` that sum (no run can take less), ``critical_path_speedup``
    = total_duration / critical_path_duration, the ideal speedup under the dependencies
    (``ideal_speedup`` then counts both the limits and the dependencies). Concurrency:
    ``peak_concurrency``,
    ``mean_concurrency`` (= running tasks averaged over the wall time), ``utilisation``
    (mean running / limit, overall and per group). Outcomes: ``counts`` by status,
    ``reasons``, ``attempts``, ``retries``, ``hedged``, ``fallbacks``. Cost: ``cost``
    (total; a sequential run would have cost the same), ``cost_by_group``, ``budget`` and
    ``skipped_for_budget``. Tail: ``slowest`` tasks and the ``stragglers`` still running
    once 90 % of the tasks had ended (they set the wall time), from ``tail_start`` on.
    Where: ``where`` counts the calls by where they ran (``"loop"``, ``"thread"``,
    ``"pid 4242"``, a Dask worker's address).

    Print it (a text table), ``console.print`` it (rich), save it with :meth:`to_json`,
    read it back with :meth:`load`, draw its timeline with :meth:`to_html`.
    """

    wall: float
    total_duration: float
    speedup: float
    peak_concurrency: int
    mean_concurrency: float
    tasks: int
    counts: dict[str, int]
    reasons: dict[str, int]
    attempts: int
    retries: int
    cost: float
    slowest: list[tuple[str, float]] = field(default_factory=list)
    started_at: float = 0.0
    limit: int | None = None
    limits: dict[str, int] = field(default_factory=dict)
    ideal_speedup: float = 0.0
    time_saved: float = 0.0
    utilisation: float | None = None
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    hedged: int = 0
    fallbacks: int = 0
    cost_by_group: dict[str, float] = field(default_factory=dict)
    tokens: float | None = None
    budget: float | None = None
    skipped_for_budget: list[str] = field(default_factory=list)
    stragglers: list[tuple[str, float]] = field(default_factory=list)
    tail_start: float | None = None
    rows: tuple[TaskRow, ...] = ()
    run: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    waited: float = 0.0
    resumed: int = 0
    cost_saved: float = 0.0
    where: dict[str, int] = field(default_factory=dict)
    critical_path: tuple[str, ...] = ()
    critical_path_duration: float = 0.0
    critical_path_speedup: float | None = None  # None: the tasks had no dependencies

    def __init__(
        self,
        wall: float,
        total_duration: float,
        speedup: float,
        peak_concurrency: int,
        mean_concurrency: float,
        tasks: int,
        counts: dict[str, int],
        reasons: dict[str, int],
        attempts: int,
        retries: int,
        cost: float,
        slowest: list[tuple[str, float]] = FACTORY,
        started_at: float = 0.0,
        limit: int | None = None,
        limits: dict[str, int] = FACTORY,
        ideal_speedup: float = 0.0,
        time_saved: float = 0.0,
        utilisation: float | None = None,
        groups: dict[str, dict[str, Any]] = FACTORY,
        hedged: int = 0,
        fallbacks: int = 0,
        cost_by_group: dict[str, float] = FACTORY,
        tokens: float | None = None,
        budget: float | None = None,
        skipped_for_budget: list[str] = FACTORY,
        stragglers: list[tuple[str, float]] = FACTORY,
        tail_start: float | None = None,
        rows: tuple[TaskRow, ...] = (),
        run: str | None = None,
        options: dict[str, Any] = FACTORY,
        waited: float = 0.0,
        resumed: int = 0,
        cost_saved: float = 0.0,
        where: dict[str, int] = FACTORY,
        critical_path: tuple[str, ...] = (),
        critical_path_duration: float = 0.0,
        critical_path_speedup: float | None = None,
    ) -> None:
        set_field(self, "wall", wall)
        set_field(self, "total_duration", total_duration)
        set_field(self, "speedup", speedup)
        set_field(self, "peak_concurrency", peak_concurrency)
        set_field(self, "mean_concurrency", mean_concurrency)
        set_field(self, "tasks", tasks)
        set_field(self, "counts", counts)
        set_field(self, "reasons", reasons)
        set_field(self, "attempts", attempts)
        set_field(self, "retries", retries)
        set_field(self, "cost", cost)
        set_field(self, "slowest", [] if slowest is FACTORY else slowest)
        set_field(self, "started_at", started_at)
        set_field(self, "limit", limit)
        set_field(self, "limits", {} if limits is FACTORY else limits)
        set_field(self, "ideal_speedup", ideal_speedup)
        set_field(self, "time_saved", time_saved)
        set_field(self, "utilisation", utilisation)
        set_field(self, "groups", {} if groups is FACTORY else groups)
        set_field(self, "hedged", hedged)
        set_field(self, "fallbacks", fallbacks)
        set_field(self, "cost_by_group", {} if cost_by_group is FACTORY else cost_by_group)
        set_field(self, "tokens", tokens)
        set_field(self, "budget", budget)
        skipped = [] if skipped_for_budget is FACTORY else skipped_for_budget
        set_field(self, "skipped_for_budget", skipped)
        set_field(self, "stragglers", [] if stragglers is FACTORY else stragglers)
        set_field(self, "tail_start", tail_start)
        set_field(self, "rows", rows)
        set_field(self, "run", run)
        set_field(self, "options", {} if options is FACTORY else options)
        set_field(self, "waited", waited)
        set_field(self, "resumed", resumed)
        set_field(self, "cost_saved", cost_saved)
        set_field(self, "where", {} if where is FACTORY else where)
        set_field(self, "critical_path", critical_path)
        set_field(self, "critical_path_duration", critical_path_duration)
        set_field(self, "critical_path_speedup", critical_path_speedup)

    # -- building ------------------------------------------------------------------------

    @classmethod
    def from_outcomes(cls, outcomes: Iterable[Outcome], info: RunInfo | None) -> RunReport:
        """The report of a finished run from its Outcomes and its :class:`RunInfo`."""
        if info is not None and info.dependencies:
            deps = info.dependencies
            rows = [_row_from_outcome(o, deps.get(o.name, ())) for o in outcomes]
        else:
            rows = [_row_from_outcome(o) for o in outcomes]
        if info is None:
            return cls.from_rows(rows)
        policies = dict(info.policies)
        budget = policies.get("budget")
        return cls.from_rows(
            rows,
            wall=info.wall,
            started_at=info.started_at,
            limit=info.limit,
            limits=dict(info.limits),
            budget=_budget_limit(budget),
            run=info.run,
            options=_jsonable(policies),
        )

    @classmethod
    def from_aggregate(cls, agg: Aggregate, info: RunInfo) -> RunReport:
        """The report of a run that kept no Outcome per task (``map``, ``imap``), from its
        streaming figures: no rows, so no timeline and no tail."""
        wall = info.wall
        total = agg.total
        slowest = sorted(((name, d) for d, name in agg.slowest), key=lambda nd: -nd[1])
        limits = _initial_limits(dict(info.limits), info.policies)
        limit = info.limit
        # the best the limit allowed: all the work spread over its slots, or the longest call
        longest = slowest[0][1] if slowest else 0.0
        slots = [limit] if limit else []
        slots += [int(v) for v in limits.values()]
        ideal_wall = max(total / min(slots), longest) if slots else longest
        mean = total / wall if wall > 0 else 0.0
        budget = info.policies.get("budget")
        return cls(
            wall=wall,
            total_duration=total,
            speedup=(total / wall) if wall > 0 else 0.0,
            peak_concurrency=agg.peak,
            mean_concurrency=mean,
            tasks=agg.tasks,
            counts=agg.all_counts(),
            reasons=dict(agg.reasons),
            attempts=agg.attempts,
            retries=agg.retries,
            cost=agg.cost,
            slowest=slowest[:_TOP],
            started_at=info.started_at,
            limit=limit,
            limits=limits,
            ideal_speedup=(total / ideal_wall) if ideal_wall > 0 else 0.0,
            time_saved=total - wall,
            utilisation=(mean / limit) if limit else None,
            hedged=agg.hedged,
            fallbacks=agg.fallbacks,
            tokens=agg.tokens,
            budget=_budget_limit(budget),
            skipped_for_budget=list(agg.skipped_for_budget),
            run=info.run,
            options=_jsonable(
                {**info.policies, **({"sampled": agg.sampled} if agg.sampled else {})}
            ),
            waited=agg.waited,
            resumed=agg.resumed,
            cost_saved=agg.cost_saved,
            where=dict(agg.where),
        )

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[TaskRow],
        *,
        wall: float | None = None,
        started_at: float = 0.0,
        limit: int | None = None,
        limits: Mapping[str, int] | None = None,
        budget: float | None = None,
        run: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> RunReport:
        """Derive every figure from task rows and the run's settings."""
        rows = tuple(rows)
        limits = dict(limits or {})
        intervals: list[tuple[float, float]] = []
        counts: dict[str, int] = {}
        reasons: dict[str, int] = {}
        attempts = retries = hedged = fallbacks = 0
        cost = 0.0
        tokens: float | None = None
        cost_by_group: dict[str, float] = {}
        durations: list[tuple[str, float]] = []
        busy: list[float] = []
        by_group: dict[str, list[tuple[float, float]]] = {}
        skipped_for_budget: list[str] = []
        waited = 0.0
        resumed = 0
        cost_saved = 0.0
        where: dict[str, int] = {}
        for r in rows:
            if r.resumed:
                resumed += 1
                cost_saved += r.cost or 0.0
            counts[r.status] = counts.get(r.status, 0) + 1
            if r.reason:
                reasons[r.reason] = reasons.get(r.reason, 0) + 1
                if r.reason == "budget" and r.status == "skipped":
                    skipped_for_budget.append(r.name)
            attempts += r.attempts
            if r.calls:
                # a hedge shares its call's number; each further number is a retry
                hedged += sum(1 for c in r.calls if c.hedge)
                retries += max(0, len({c.number for c in r.calls if not c.hedge}) - 1)
                for c in r.calls:
                    where[c.where] = where.get(c.where, 0) + 1
            else:
                retries += max(0, r.attempts - 1)
            if r.fallback:
                fallbacks += 1
            if r.cost is not None:
                cost += r.cost
                g = r.group if r.group is not None else ""
                cost_by_group[g] = cost_by_group.get(g, 0.0) + r.cost
            if r.tokens is not None:
                tokens = (tokens or 0) + r.tokens
            if r.waited:
                waited += r.waited
            spans = r.spans()
            if spans:
                # what counts is the time in calls, not the waits before or between them
                intervals.extend(spans)
                durations.append((r.name, r.ended - r.started))  # type: ignore[operator]
                busy.append(math.fsum(e - s for s, e in spans))
                if r.group is not None:
                    by_group.setdefault(r.group, []).extend(spans)
        total = math.fsum(busy)
        if wall is None:
            wall = max(e for _, e in intervals) - min(s for s, _ in intervals) if intervals else 0.0
        steps = concurrency_steps(intervals)
        peak = max((n for _, n in steps), default=0)
        mean = total / wall if wall > 0 else 0.0

        # a limit that changed over time (an adaptive limit) counts by its time-weighted mean
        in_force = _limits_in_force(limits, dict(options or {}), wall)
        limits = _initial_limits(limits, dict(options or {}))
        # the ideal: the same durations packed into the limits' slots
        ideal_wall = _packed_makespan(busy, limit)
        for g, ivs in by_group.items():
            gl = in_force.get(g)
            if gl is not None:
                slots = max(1, round(gl["mean"]))
                ideal_wall = max(ideal_wall, _packed_makespan([e - s for s, e in ivs], slots))
        groups: dict[str, dict[str, Any]] = {}
        for g, ivs in by_group.items():
            gsum = math.fsum(e - s for s, e in ivs)
            gmean = gsum / wall if wall > 0 else 0.0
            gl = in_force.get(g)
            info: dict[str, Any] = {
                "tasks": len({r.name for r in rows if r.group == g and r.spans()}),
                "limit": gl["mean"] if gl else None,
                "peak": max((n for _, n in concurrency_steps(ivs)), default=0),
                "mean": gmean,
                "utilisation": (gmean / gl["mean"]) if gl else None,
                "cost": cost_by_group.get(g),
            }
            if gl and gl["initial"] != gl["final"]:
                info["limit_initial"] = gl["initial"]
                info["limit_final"] = gl["final"]
            groups[g] = info

        chain: tuple[str, ...] = ()
        chain_duration = 0.0
        chain_speedup: float | None = None
        if any(r.after for r in rows):
            chain, chain_duration = critical_path(rows)
            chain_speedup = total / chain_duration if chain_duration > 0 else 0.0
            ideal_wall = max(ideal_wall, chain_duration)
        durations.sort(key=lambda nd: nd[1], reverse=True)
        stragglers, tail_start = _tail(rows)
        return cls(
            wall=wall,
            total_duration=total,
            speedup=(total / wall) if wall > 0 else 0.0,
            peak_concurrency=peak,
            mean_concurrency=mean,
            tasks=len(rows),
            counts=counts,
            reasons=reasons,
            attempts=attempts,
            retries=retries,
            cost=cost,
            slowest=durations[:_TOP],
            started_at=started_at,
            limit=limit,
            limits=limits,
            ideal_speedup=(total / ideal_wall) if ideal_wall > 0 else 0.0,
            time_saved=total - wall,
            utilisation=(mean / limit) if limit else None,
            groups=groups,
            hedged=hedged,
            fallbacks=fallbacks,
            cost_by_group=cost_by_group,
            tokens=tokens,
            budget=budget,
            skipped_for_budget=skipped_for_budget,
            stragglers=stragglers,
            tail_start=tail_start,
            rows=rows,
            run=run,
            options=dict(options or {}),
            waited=waited,
            resumed=resumed,
            cost_saved=cost_saved,
            where=where,
            critical_path=chain,
            critical_path_duration=chain_duration,
            critical_path_speedup=chain_speedup,
        )

    # -- derived views -------------------------------------------------------------------

    @property
    def concurrency(self) -> list[tuple[float, int]]:
        """Calls running over time, as steps ``[(t, n), ...]`` (n holds from t on)."""
        return concurrency_steps(span for r in self.rows for span in r.spans())

    def task(self, name: str) -> TaskRow:
        """The row of the task called ``name`` (KeyError if there is none)."""
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    # -- JSON ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; the schema (``version`` 3) is in docs/report-schema.md."""
        return {
            "version": SCHEMA_VERSION,
            "run": self.run,
            "started_at": _iso(self.started_at) if self.started_at else None,
            "wall": self.wall,
            "total_duration": self.total_duration,
            "speedup": self.speedup,
            "ideal_speedup": self.ideal_speedup,
            "time_saved": self.time_saved,
            "waited": self.waited,
            "peak_concurrency": self.peak_concurrency,
            "mean_concurrency": self.mean_concurrency,
            "limit": self.limit,
            "limits": dict(self.limits),
            "utilisation": self.utilisation,
            "groups": {g: dict(v) for g, v in self.groups.items()},
            "tasks": self.tasks,
            "resumed": self.resumed,
            "cost_saved": self.cost_saved,
            "counts": dict(self.counts),
            "reasons": dict(self.reasons),
            "attempts": self.attempts,
            "retries": self.retries,
            "hedged": self.hedged,
            "fallbacks": self.fallbacks,
            "where": dict(self.where),
            "cost": {
                "total": self.cost,
                "sequential": self.cost,
                "by_group": dict(self.cost_by_group),
                "tokens": self.tokens,
                "budget": self.budget,
                "skipped_for_budget": list(self.skipped_for_budget),
            },
            "slowest": [{"name": n, "duration": d} for n, d in self.slowest],
            "tail": {
                "start": self.tail_start,
                "stragglers": [{"name": n, "ended": e} for n, e in self.stragglers],
            },
            "critical_path": None
            if self.critical_path_speedup is None
            else {
                "tasks": list(self.critical_path),
                "duration": self.critical_path_duration,
                "ideal_speedup": self.critical_path_speedup,
            },
            "options": dict(self.options),
            "rows": [_row_dict(r) for r in self.rows],
        }

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as JSON text (keyword arguments go to ``json.dumps``)."""
        import json  # not at import: a run need not load it (see forkjoin.cli._render)

        return json.dumps(self.to_dict(), **kwargs)

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path``; returns the path."""
        from pathlib import Path

        p = Path(path)
        p.write_text(self.to_json(indent=1) + "\n", encoding="utf-8")
        return p

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunReport:
        """Re-read a report saved with :meth:`to_dict` (schema version 1, 2 or 3).

        Raises ValueError naming the field when the document is not a report.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"report: expected a JSON object, got {type(data).__name__}")
        version = data.get("version")
        if version not in (1, 2, SCHEMA_VERSION):
            raise ValueError(
                f"report: unsupported schema version {version!r} (expected 1 to {SCHEMA_VERSION})"
            )
        started_at = 0.0
        if data.get("started_at"):
            try:
                started_at = _epoch(str(data["started_at"]))
            except ValueError as e:
                raise ValueError(f"report.started_at: {e}") from None
        raw_rows = data.get("rows") or []
        if not isinstance(raw_rows, list):
            raise ValueError("report.rows: expected a list of task rows")
        rows = [_row_from_dict(i, r) for i, r in enumerate(raw_rows)]
        cost = data.get("cost")
        budget = cost.get("budget") if isinstance(cost, Mapping) else None
        if version == 1 and not rows:
            # version 1 kept only the summary: carry it as it was
            return cls(
                wall=float(data.get("wall") or 0.0),
                total_duration=float(data.get("total_duration") or 0.0),
                speedup=float(data.get("speedup") or 0.0),
                peak_concurrency=int(data.get("peak_concurrency") or 0),
                mean_concurrency=float(data.get("mean_concurrency") or 0.0),
                tasks=int(data.get("tasks") or 0),
                counts=dict(data.get("counts") or {}),
                reasons=dict(data.get("reasons") or {}),
                attempts=int(data.get("attempts") or 0),
                retries=int(data.get("retries") or 0),
                cost=float(cost or 0.0) if not isinstance(cost, Mapping) else 0.0,
                slowest=[(s["name"], float(s["duration"])) for s in data.get("slowest") or []],
                started_at=started_at,
                limit=data.get("limit"),
            )
        return cls.from_rows(
            rows,
            wall=float(data.get("wall") or 0.0),
            started_at=started_at,
            limit=data.get("limit"),
            limits=dict(data.get("limits") or {}),
            budget=budget,
            run=data.get("run"),
            options=dict(data.get("options") or {}),
        )

    @classmethod
    def load(cls, path: str | Path) -> RunReport:
        """Read a report saved as JSON (by :meth:`save`, ``to_json`` or the CLI)."""
        import json
        from pathlib import Path

        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}: not JSON ({e.msg} at line {e.lineno})") from None
        try:
            return cls.from_dict(data)
        except ValueError as e:
            raise ValueError(f"{p}: {e}") from None

    # -- rendering -----------------------------------------------------------------------

    def to_html(self, path: str | Path | None = None, *, title: str | None = None) -> str:
        """The self-contained HTML timeline page; written to ``path`` when given."""
        from ._html import render_html

        page = render_html(self, title=title)
        if path is not None:
            from pathlib import Path

            Path(path).write_text(page, encoding="utf-8")
        return page

    def summary_rows(self) -> list[tuple[str, str]]:
        """The report as ``(label, text)`` lines: what ``str()`` and rich both show."""
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())) or "none"
        # "saved -0.000s" says nothing: a saving is named when there is one to name
        saved = f"; saved {self.time_saved:.3f}s" if self.time_saved >= 0.0005 else ""
        lines = [
            ("tasks", f"{self.tasks} ({counts})"),
        ]
        if self.resumed:
            text = f"{self.resumed} from the journal, not called again"
            if self.cost_saved:
                text += f" (${self.cost_saved:.4f} not paid again)"
            lines.append(("resumed", text))
        lines += [
            ("wall", f"{self.wall:.3f}s"),
            ("sequential", f"{self.total_duration:.3f}s (sum of task durations{saved})"),
            (
                "speedup",
                f"{self.speedup:.2f}x (ideal under the limits"
                f"{' and dependencies' if self.critical_path_speedup is not None else ''}"
                f" {self.ideal_speedup:.2f}x)",
            ),
        ]
        if self.critical_path_speedup is not None:
            lines.append(
                (
                    "dependencies",
                    f"critical path {self.critical_path_duration:.3f}s: "
                    f"{_chain_text(self.critical_path)} (ideal speedup under the dependencies "
                    f"{self.critical_path_speedup:.2f}x)",
                )
            )
        conc = f"peak {self.peak_concurrency}, mean {self.mean_concurrency:.2f}"
        if self.limit is not None and self.utilisation is not None:
            conc += f", limit {self.limit} ({self.utilisation:.0%} used)"
        lines.append(("concurrency", conc))
        for g, info in sorted(self.groups.items()):
            text = f"{_count(info['tasks'], 'task')}, peak {info['peak']}, mean {info['mean']:.2f}"
            if info.get("limit"):
                text += f", limit {info['limit']} ({info['utilisation']:.0%} used)"
            lines.append((f"  group {g}", text))
        extra = []
        if self.hedged:
            extra.append(f"{self.hedged} hedged")
        if self.fallbacks:
            extra.append(_count(self.fallbacks, "fallback"))
        retries = _count(self.retries, "retry", "retries")
        lines.append(("attempts", f"{self.attempts} ({retries}{''.join(', ' + e for e in extra)})"))
        if self.reasons:
            lines.append(
                ("reasons", ", ".join(f"{k} {v}" for k, v in sorted(self.reasons.items())))
            )
        if set(self.where) - {"loop"}:
            lines.append(("where", _where_text(self.where, self.options.get("backends"))))
        if self.cost or self.budget is not None:
            text = f"${self.cost:.4f} (sequential would cost the same ${self.cost:.4f}"
            text += f"; time saved {self.time_saved:.3f}s)" if saved else ")"
            lines.append(("cost", text))
            named = {g: c for g, c in self.cost_by_group.items() if g}
            if named:
                lines.append(
                    (
                        "  by group",
                        ", ".join(f"{g} ${c:.4f}" for g, c in sorted(named.items())),
                    )
                )
            if self.tokens:
                lines.append(("  tokens", str(self.tokens)))
        detail = self.options.get("budget")
        if self.budget is None and isinstance(detail, Mapping) and detail.get("tokens"):
            text = f"{detail['tokens']} tokens, spent {detail.get('spent_tokens')}"
            lines.append(("budget", text))
        if self.budget is not None:
            text = f"${self.budget:.4f}, spent ${self.cost:.4f}"
            over = detail.get("overshoot_usd") if isinstance(detail, Mapping) else None
            if over:
                text += f", OVER by ${over:.4f} (charges of money already spent)"
            refused = detail.get("refused") if isinstance(detail, Mapping) else None
            if refused:
                text += f"; refused {refused} charge{'s' if refused != 1 else ''}"
            if self.skipped_for_budget:
                shown = ", ".join(self.skipped_for_budget[:5])
                more = len(self.skipped_for_budget) - 5
                text += f"; skipped {len(self.skipped_for_budget)}: {shown}"
                text += f", +{more} more" if more > 0 else ""
            lines.append(("budget", text))
        adaptive = self.options.get("adaptive")
        if isinstance(adaptive, Mapping) and adaptive:
            text = ", ".join(
                f"{g} limit {a.get('limit')} ({_count(int(a.get('cuts') or 0), 'cut')})"
                for g, a in sorted(adaptive.items())
                if isinstance(a, Mapping)
            )
            lines.append(("adaptive", text))
        if self.slowest:
            text = ", ".join(f"{n} {d:.3f}s" for n, d in self.slowest[:3])
            sampled = self.options.get("sampled")
            if sampled:
                text += f" (calls this short were timed 1 in {sampled})"
            lines.append(("slowest", text))
        if self.stragglers and self.tail_start is not None:
            tail = self.wall - self.tail_start if self.wall else 0.0
            names = ", ".join(n for n, _ in self.stragglers[:3])
            lines.append(("tail", f"{names} ({tail:.3f}s after 90% of tasks had ended)"))
        return lines

    def __str__(self) -> str:
        return "\n".join(f"{k:<12} {v}" for k, v in self.summary_rows())

    def __rich__(self) -> RenderableType:
        from rich.table import Table

        table = Table(title="forkjoin run", title_justify="left", show_header=False, box=None)
        table.add_column("what", style="bold")
        table.add_column("value")
        for k, v in self.summary_rows():
            table.add_row(k, v)
        return table

    def render(self, *, terminal: bool | None = None, width: int = 100) -> str:
        """The report as text for a terminal (rich table, colours) or plain lines.

        ``terminal=None`` asks whether stdout is a terminal.
        """
        if terminal is None:
            import sys

            terminal = sys.stdout.isatty()
        if not terminal:
            return str(self) + "\n"
        from rich.console import Console

        buf = io.StringIO()
        Console(file=buf, force_terminal=True, width=width, highlight=False).print(self)
        return buf.getvalue()


def where_kind(where: str) -> str:
    """The backend a call's place names: loop, thread, process or dask."""
    if where in ("loop", "thread", "process", "dask"):
        return where  # "process", "dask": a call that never reached a known worker
    if where.startswith("pid "):
        return "process"
    return "dask"


def _where_text(where: Mapping[str, int], backends: Any) -> str:
    """``loop 3 calls, process 8 calls (2 pids), dask 5 calls (2 workers, LocalCluster
    started in 2.41s)``."""
    kinds: dict[str, list[int]] = {}
    for place, n in where.items():
        calls_places = kinds.setdefault(where_kind(place), [0, 0])
        calls_places[0] += n
        calls_places[1] += 1
    parts = []
    for kind in ("loop", "thread", "process", "dask"):
        if kind not in kinds:
            continue
        calls, places = kinds[kind]
        text = f"{kind} {calls} call{'s' if calls != 1 else ''}"
        detail = []
        if kind == "process":
            known = places - (1 if "process" in where else 0)
            if known:
                detail.append(f"{known} pid{'s' if known != 1 else ''}")
        elif kind == "dask":
            known = places - (1 if "dask" in where else 0)
            if known:
                detail.append(f"{known} worker{'s' if known != 1 else ''}")
        info = backends.get(kind) if isinstance(backends, Mapping) else None
        if isinstance(info, Mapping) and info.get("started_in") is not None:
            what = info.get("cluster") or "pool"
            detail.append(f"{what} started in {float(info['started_in']):.2f}s")
        parts.append(text + (f" ({', '.join(detail)})" if detail else ""))
    return ", ".join(parts)


# datetime and pathlib are imported where a report is saved or read: a run that only
# prints its report (every map run of the CLI) does not pay for them


def _iso(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


def _count(n: int, one: str, many: str | None = None) -> str:
    """``1 retry``, ``2 retries``: a count with its noun."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _tail(rows: tuple[TaskRow, ...]) -> tuple[list[tuple[str, float]], float | None]:
    """The stragglers: tasks still running once 90 % of the tasks that ran had ended."""
    ran = [r for r in rows if r.started is not None and r.ended is not None]
    if not ran:
        return [], None
    ends = sorted(r.ended for r in ran)  # type: ignore[type-var]
    k = min(len(ran) - 1, int(len(ran) * 0.9))
    # one task alone is its own tail
    tail_start = min(r.started for r in ran) if k == 0 else ends[k - 1]  # type: ignore[type-var]
    late = [r for r in ran if r.ended > tail_start]  # type: ignore[operator]
    late.sort(key=lambda r: r.ended, reverse=True)  # type: ignore[arg-type, return-value]
    return [(r.name, r.ended) for r in late[:_TOP]], tail_start  # type: ignore[misc]


def _row_dict(r: TaskRow) -> dict[str, Any]:
    return {
        "name": r.name,
        "group": r.group,
        "status": r.status,
        "reason": r.reason,
        "attempts": r.attempts,
        "started": r.started,
        "ended": r.ended,
        "duration": r.duration,
        "cost": r.cost,
        "tokens": r.tokens,
        "fallback": r.fallback,
        "error": r.error,
        "waited": r.waited,
        "resumed": r.resumed,
        "after": list(r.after),
        "calls": [
            {
                "number": c.number,
                "started": c.started,
                "ended": c.ended,
                "error": c.error,
                "hedge": c.hedge,
                "where": c.where,
            }
            for c in r.calls
        ],
    }


def _row_from_dict(i: int, d: Any) -> TaskRow:
    where = f"report.rows[{i}]"
    if not isinstance(d, Mapping) or "name" not in d or "status" not in d:
        raise ValueError(f"{where}: expected an object with 'name' and 'status'")
    try:
        calls = tuple(
            CallRow(
                int(c["number"]),
                float(c["started"]),
                float(c["ended"]),
                c.get("error"),
                bool(c.get("hedge", False)),
                str(c.get("where") or "loop"),
            )
            for c in d.get("calls") or []
        )
        return TaskRow(
            name=str(d["name"]),
            status=str(d["status"]),
            group=d.get("group"),
            reason=d.get("reason"),
            attempts=int(d.get("attempts") or 0),
            started=None if d.get("started") is None else float(d["started"]),
            ended=None if d.get("ended") is None else float(d["ended"]),
            cost=None if d.get("cost") is None else float(d["cost"]),
            tokens=None if d.get("tokens") is None else float(d["tokens"]),
            fallback=bool(d.get("fallback", False)),
            error=d.get("error"),
            calls=calls,
            waited=None if d.get("waited") is None else float(d["waited"]),
            resumed=bool(d.get("resumed", False)),
            after=tuple(str(a) for a in d.get("after") or ()),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{where} ({d.get('name')!r}): bad field: {e}") from None
