"""The engine side of the policies: per-run, per-group and per-task state.

The policy values (RateLimit, AdaptiveLimit, Hedge, Budget, Group) only decide; this module
holds their live state for one run and wraps a task's call with what applies to it. A task
that no policy touches is never wrapped, so the plain path pays nothing for any of this
(one attribute test in ``Fan._add`` and ``Fan._start``).

A wrapped task's ``fn`` becomes :meth:`TaskPolicy.call`: every call — the first, each retry
and each hedge — waits for its group's Retry-After pause and rate limit, reports to the
adaptive limit (before the slot is freed), and is recorded in the task's history. The
engine's own retry loop calls it again for a retry, so retries stay the engine's.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .._errors import InvalidPolicy, TaskCancelled, TaskTimeout, stopped_error
from .._events import LimitChanged
from .._outcome import Attempt, Outcome, Status
from .._retry import Retry
from ._adaptive import AdaptiveLimit, AdaptiveState
from ._budget import Budget, BudgetState, Charge, _account
from ._group import Group
from ._hedge import Hedge
from ._rate import RateLimit, RateMeter
from ._retry_after import is_overload, retry_after_of

if TYPE_CHECKING:
    from .._fan import Fan, _Rec

__all__ = ["RunPolicies", "TaskPolicy"]

log = logging.getLogger("forkjoin")


class GroupState:
    """Live state of one group in one run: rate meter, adaptive limit, Retry-After pause."""

    __slots__ = ("adaptive", "name", "paused_until", "rate", "settings")

    def __init__(
        self,
        name: str | None,
        settings: Group | None,
        rate: RateLimit | None,
        adaptive: AdaptiveLimit | None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.rate = RateMeter(rate) if rate is not None else None
        self.adaptive = AdaptiveState(adaptive) if adaptive is not None else None
        self.paused_until = 0.0


def check_run_options(
    limits: Mapping[str, Any] | None,
    rates: Mapping[str, Any] | None,
    groups: Mapping[str, Any] | None,
    budget: Any,
    rate: Any,
) -> None:
    """Validate the run-level policy keywords (InvalidPolicy naming the place)."""
    for kw, mapping, kind in (("rates", rates, RateLimit), ("groups", groups, Group)):
        if mapping is None:
            continue
        if not isinstance(mapping, Mapping):
            raise InvalidPolicy(f"{kw}: expected a mapping of group -> fj.{kind.__name__}")
        for g, v in mapping.items():
            if not isinstance(g, str):
                raise InvalidPolicy(f"{kw}: group names must be strings, got {g!r}")
            if not isinstance(v, kind):
                raise InvalidPolicy(f"{kw}[{g!r}]: expected fj.{kind.__name__}(...), got {v!r}")
    if budget is not None and not isinstance(budget, Budget):
        raise InvalidPolicy(f"budget: expected fj.Budget(...), got {budget!r}")
    if rate is not None and not isinstance(rate, RateLimit):
        raise InvalidPolicy(f"rate: expected fj.RateLimit(...), got {rate!r}")
    del limits


class RunPolicies:
    """The policies of one run and their state."""

    __slots__ = ("budget", "fan", "groups", "hedges", "rate", "settings")

    def __init__(
        self,
        fan: Fan,
        *,
        budget: Budget | None = None,
        rate: RateLimit | None = None,
        rates: Mapping[str, RateLimit] | None = None,
        groups: Mapping[str, Group] | None = None,
        adaptive: Mapping[str, AdaptiveLimit] | None = None,
    ) -> None:
        self.fan = fan
        self.budget = BudgetState(budget) if budget is not None else None
        self.rate = RateMeter(rate) if rate is not None else None
        self.settings: dict[str, Group] = dict(groups or {})
        self.hedges = 0
        self.groups: dict[str, GroupState] = {}
        names = set(rates or ()) | set(self.settings) | set(adaptive or ())
        for g in sorted(names):
            s = self.settings.get(g)
            r = (rates or {}).get(g) or (s.rate if s is not None else None)
            a = (adaptive or {}).get(g)
            if a is None and s is not None and isinstance(s.limit, AdaptiveLimit):
                a = s.limit
            self.groups[g] = GroupState(g, s, r, a)

    @property
    def run_level(self) -> bool:
        """Whether every task of the run must be wrapped (run-wide policies)."""
        return self.budget is not None or self.rate is not None

    def adaptive_limits(self) -> dict[str, int]:
        return {g: s.adaptive.limit for g, s in self.groups.items() if s.adaptive is not None}

    def options(self) -> dict[str, Any]:
        """The run-level policies, for RunStarted."""
        out: dict[str, Any] = {}
        if self.budget is not None:
            out["budget"] = self.budget.policy
        if self.rate is not None:
            out["rate"] = self.rate.policy
        rates = {g: s.rate.policy for g, s in self.groups.items() if s.rate is not None}
        if rates:
            out["rates"] = rates
        adaptive = {g: s.adaptive.policy for g, s in self.groups.items() if s.adaptive}
        if adaptive:
            out["adaptive"] = adaptive
        if self.settings:
            out["groups"] = dict(self.settings)
        return out

    def report(self) -> dict[str, Any]:
        """What the run report shows of the policies: budget, adaptive limits, hedges."""
        out: dict[str, Any] = {}
        if self.budget is not None:
            out["budget"] = self.budget.snapshot()
        adaptive = {
            g: {"limit": s.adaptive.limit, "cuts": s.adaptive.cuts}
            for g, s in self.groups.items()
            if s.adaptive is not None
        }
        if adaptive:
            out["adaptive"] = adaptive
        if self.hedges:
            out["hedges"] = self.hedges
        return out

    # -- per task ------------------------------------------------------------------------

    def prepare(self, rec: _Rec) -> None:
        """Apply group settings to ``rec`` and wrap its call if any policy touches it."""
        opts = rec.opts
        gs = self.groups.get(rec.group) if rec.group is not None else None
        settings = gs.settings if gs is not None else None
        if settings is not None:
            if opts.timeout is None and settings.timeout is not None:
                rec.timeout = settings.timeout
            if opts.retry is None and settings.retry is not None:
                rec.retry = settings.retry if isinstance(settings.retry, Retry) else None
        hedge = opts.hedge
        if hedge is None and settings is not None and opts.idempotent:
            hedge = settings.hedge
        if gs is not None and gs.rate is None and gs.adaptive is None:
            gs = None
        if (
            gs is None
            and hedge is None
            and opts.fallback is None
            and not self.run_level
            and opts.cost is None
            and opts.tokens is None
        ):
            return  # nothing to wrap: the engine's plain path
        weight = opts.weight
        for meter in (self.rate, gs.rate if gs is not None else None):
            if meter is not None:
                meter.policy.check_weight(f"task {rec.name!r}: weight", weight)
        TaskPolicy(self, rec, gs, hedge)


class TaskPolicy:
    """One task's wrapped call and account."""

    __slots__ = (
        "account",
        "args",
        "coro",
        "fn",
        "group",
        "hedge",
        "history",
        "is_async",
        "rec",
        "run",
        "timeout",
    )

    def __init__(
        self, run: RunPolicies, rec: _Rec, group: GroupState | None, hedge: Hedge | None
    ) -> None:
        self.run = run
        self.rec = rec
        self.group = group
        self.hedge = hedge if rec.coro is None else None  # a coroutine runs only once
        self.fn = rec.fn
        self.args = rec.args
        self.is_async = rec.is_async
        self.coro = rec.coro
        self.timeout = rec.timeout
        self.history: list[Attempt] = []
        opts = rec.opts
        self.account = Charge(run.budget, opts.cost, opts.tokens)
        rec.pol = self
        rec.fn = self.call
        rec.args = ()
        rec.is_async = True
        rec.timeout = None  # applied per call here, around the call only (not the waits)

    def admit(self) -> bool:
        """Reserve the task's estimates; False: it does not fit the budget."""
        budget = self.run.budget
        return budget is None or budget.reserve(self.account)

    # -- one call ------------------------------------------------------------------------

    async def call(self) -> Any:
        """What the engine awaits for each call of the task (first, and each retry)."""
        loop = self.run.fan._loop
        _account.set(self.account)
        g = self.group
        if g is not None and g.paused_until > loop.time():
            await asyncio.sleep(g.paused_until - loop.time())  # the server said slow down
        if self.hedge is None:
            return await self._attempt(False)
        return await self._hedged()

    async def _attempt(self, hedge: bool) -> Any:
        run = self.run
        fan = run.fan
        loop = fan._loop
        weight = self.rec.opts.weight
        # the start is the time the rate meter recorded, so that history and meter agree
        start = None
        if run.rate is not None:
            start = await run.rate.acquire(loop, weight)
        g = self.group
        if g is not None and g.rate is not None:
            start = await g.rate.acquire(loop, weight)
        adaptive = g.adaptive if g is not None else None
        token = adaptive.started() if adaptive is not None else 0
        number = self.rec.attempts
        if start is None:
            start = loop.time()
        t0 = fan._t0
        try:
            value = await self._invoke()
        except BaseException as e:
            error: BaseException = e
            if isinstance(e, asyncio.CancelledError):
                error = stopped_error(
                    self.rec.name,
                    "hedge lost" if hedge else (self.rec.cancel_reason or "cancelled"),
                )
            self.history.append(Attempt(number, start - t0, loop.time() - t0, error, hedge))
            if g is not None and isinstance(e, Exception):
                self._signal(g, token, e)
            raise
        self.history.append(Attempt(number, start - t0, loop.time() - t0, None, hedge))
        if adaptive is not None and adaptive.succeeded(token, loop.time() - start):
            self._limit_changed(g, "grow")  # type: ignore[arg-type]
        return value

    def _signal(self, g: GroupState, token: int, error: Exception) -> None:
        # before the engine frees the slot: the next admission already sees the cut
        loop = self.run.fan._loop
        delay = retry_after_of(error)
        if delay:
            g.paused_until = max(g.paused_until, loop.time() + delay)
        adaptive = g.adaptive
        if adaptive is not None and is_overload(error) and adaptive.overloaded(token, loop.time()):
            self._limit_changed(g, "overload")

    def _limit_changed(self, g: GroupState, why: str) -> None:
        fan = self.run.fan
        assert g.adaptive is not None
        assert g.name is not None
        limit = g.adaptive.limit
        fan._group_limits[g.name] = limit
        if fan._observers:
            fan._emit(LimitChanged(fan.name, fan.elapsed(), g.name, limit, why))
        if why == "grow" and fan._queued:
            fan._loop.call_soon(fan._admit)

    async def _invoke(self) -> Any:
        if self.timeout is None:
            return await self._raw()
        cm = asyncio.timeout(self.timeout)
        try:
            async with cm:
                return await self._raw()
        except TimeoutError:
            if cm.expired():
                raise TaskTimeout(
                    f"task {self.rec.name!r} timed out after {self.timeout:g}s"
                ) from None
            raise

    async def _raw(self) -> Any:
        coro = self.coro
        if coro is not None:
            self.coro = None
            return await coro
        fn = self.fn
        assert fn is not None
        if self.is_async:
            return await fn(*self.args)
        result = await self.run.fan._in_thread(self.rec, fn, self.args)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _hedged(self) -> Any:
        """First success of the call and its duplicates wins; the others are cancelled."""
        hedge = self.hedge
        assert hedge is not None
        loop = self.run.fan._loop
        start = loop.time()
        running = {loop.create_task(self._attempt(False))}
        pending_extra = hedge.delays()
        first_error: BaseException | None = None
        try:
            while running:
                wait = None
                if pending_extra:
                    wait = max(0.0, start + pending_extra[0] - loop.time())
                done, running = await asyncio.wait(
                    running, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
                for t in done:
                    exc = t.exception()
                    if exc is None:
                        return t.result()
                    if first_error is None:
                        first_error = exc
                if not done and pending_extra:
                    pending_extra.pop(0)
                    budget = self.run.budget
                    if budget is None or budget.reserve(self.account, extra=True):
                        if budget is None:
                            self.account.calls += 1
                        self.run.hedges += 1
                        running.add(loop.create_task(self._attempt(True)))
                    else:
                        pending_extra.clear()  # no money for a duplicate
            assert first_error is not None
            raise first_error
        finally:
            for t in running:
                t.cancel()
            if running:
                await asyncio.wait(running)

    # -- the end -------------------------------------------------------------------------

    async def execute(self) -> Outcome:
        """Run the task through the engine and complete its Outcome (not yet written)."""
        rec = self.rec
        outcome = await self.run.fan._execute(rec, False)
        final = self._account_for(outcome)
        try:
            final = await self._fallback(final)
        except asyncio.CancelledError:
            if rec.cancel_reason is None:
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
        return final

    async def run_task(self) -> None:
        """The asyncio Task of a wrapped task in a Fan: execute, then write the Outcome."""
        fan = self.run.fan
        rec = self.rec
        outcome: Outcome | None = None
        try:
            outcome = await self.execute()
        finally:
            if outcome is None:  # cancelled from outside the run: still one Outcome
                outcome = Outcome(
                    rec.name,
                    Status.CANCELLED,
                    None,
                    TaskCancelled("cancelled"),
                    "cancelled",
                    rec.attempts,
                    None if rec.started is None else rec.started - fan._t0,
                    fan.elapsed(),
                    None,
                    rec.group,
                    rec.index,
                    tuple(self.history),
                )
            fan._finish(rec, outcome)

    def _account_for(self, outcome: Outcome) -> Outcome:
        account = self.account
        ran = outcome.started is not None
        usd, tokens = account.totals() if ran else (None, None)
        if self.run.budget is not None and ran:
            self.run.budget.settle(account)
        if usd is None and tokens is None and not self.history:
            return outcome
        return outcome._replace(
            cost=usd,
            tokens=None if tokens is None else round(tokens),
            # in start order (a hedge that won is appended first, when it ended)
            calls=tuple(sorted(self.history, key=lambda a: a.started)) or outcome.calls,
        )

    async def _fallback(self, outcome: Outcome) -> Outcome:
        fallback: Callable[..., Any] | None = self.rec.opts.fallback
        if (
            fallback is None
            or outcome.status not in (Status.FAILED, Status.TIMED_OUT)
            or outcome.reason == "deadline"
            or self.run.fan._stop_reason is not None
        ):
            return outcome
        try:
            if inspect.iscoroutinefunction(fallback):
                value = await fallback(*self.args)
            else:
                value = await self.run.fan._in_thread(self.rec, fallback, self.args)
                if inspect.isawaitable(value):
                    value = await value
        except Exception as e:
            if e.__context__ is None:
                e.__context__ = outcome.error
            log.debug("fallback of task %r failed: %r", self.rec.name, e)
            return outcome._replace(error=e)
        # ok, from the fallback; ``error`` keeps why the task itself failed
        return outcome._replace(status=Status.OK, value=value, reason=None, fallback=True)
