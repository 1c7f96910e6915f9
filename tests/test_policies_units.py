"""Each policy's decisions as pure functions (no loop, no sleeping), and bad values."""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
from collections import deque
from types import SimpleNamespace

import httpx
import pytest
import tenacity

import forkjoin as fj
from forkjoin._policies._adaptive import AdaptiveState
from forkjoin._policies._budget import NO, OK, WAIT, BudgetState, Charge
from forkjoin._policies._rate import RateLimitState, RateMeter
from forkjoin._policies._retry_after import is_overload, parse_retry_after, retry_after_of

# -- bad values: InvalidPolicy naming the field ----------------------------------------


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: fj.Retry(attempts=0), "Retry.attempts"),
        (lambda: fj.Retry(backoff=-1), "Retry.backoff"),
        (lambda: fj.RateLimit(0), "RateLimit.rate"),
        (lambda: fj.RateLimit(10, per=0), "RateLimit.per"),
        (lambda: fj.RateLimit(10, burst=-1), "RateLimit.burst"),
        (lambda: fj.AdaptiveLimit(initial=0), "AdaptiveLimit.initial"),
        (lambda: fj.AdaptiveLimit(min=5, max=2), "AdaptiveLimit.max"),
        (lambda: fj.AdaptiveLimit(initial=100), "AdaptiveLimit.initial"),
        (lambda: fj.Hedge(after=0), "Hedge.after"),
        (lambda: fj.Hedge(after=1, max_extra=0), "Hedge.max_extra"),
        (lambda: fj.Budget(usd=-1), "Budget.usd"),
        (lambda: fj.Budget(tokens=-5), "Budget.tokens"),
        (lambda: fj.Budget(), "Budget"),
        (lambda: fj.Group(timeout=0), "Group.timeout"),
        (lambda: fj.Group(limit=0), "Group.limit"),
        (lambda: fj.Group(rate=5), "Group.rate"),  # type: ignore[arg-type]
        (lambda: fj.RetryAfter(-1), "RetryAfter.seconds"),
        (lambda: fj.task(print, hedge=fj.Hedge(1)), "task.hedge"),
        (lambda: fj.task(print, weight=0), "task.weight"),
        (lambda: fj.task(print, tokens=-1), "task.tokens"),
        (lambda: fj.task(print, fallback=3), "task.fallback"),  # type: ignore[arg-type]
        (lambda: fj.Fan(budget=1.0), "budget"),  # type: ignore[arg-type]
        (lambda: fj.Fan(rates={"g": 5}), "rates['g']"),  # type: ignore[dict-item]
        (lambda: fj.Fan(groups={"g": 5}), "groups['g']"),  # type: ignore[dict-item]
    ],
)
def test_bad_values_are_rejected_naming_the_field(build: object, field: str) -> None:
    with pytest.raises(fj.InvalidPolicy) as info:
        build()  # type: ignore[operator]
    assert str(info.value).startswith(field)


def test_policies_are_frozen_values() -> None:
    for policy in (fj.RateLimit(5), fj.AdaptiveLimit(), fj.Hedge(1), fj.Budget(usd=1)):
        first = dataclasses.fields(policy)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(policy, first, 1)
        values = [getattr(policy, f.name) for f in dataclasses.fields(policy)]
        assert policy == type(policy)(*values)
    assert fj.Group(retry=True).retry == fj.Retry()


def test_hedge_on_an_idempotent_task_is_fine() -> None:
    t = fj.task(print, idempotent=True, hedge=fj.Hedge(0.5, max_extra=2))
    assert t.hedge is not None
    assert t.hedge.delays() == [0.5, 1.0]


# -- Retry -----------------------------------------------------------------------------


def _state(retry: fj.Retry, attempt: int) -> object:
    state = retry.new_state(0.0)
    state.attempt_number = attempt
    return state


def test_retry_waits_at_least_the_servers_delay_beyond_max_delay() -> None:
    retry = fj.Retry(attempts=5, backoff=0.1, max_delay=1.0, jitter=False)
    assert retry.next_delay(_state(retry, 1), ConnectionError(), 0.0) == pytest.approx(0.1)
    assert retry.next_delay(_state(retry, 1), fj.RetryAfter(30), 0.0) == 30.0
    # the own backoff is still capped
    assert retry.next_delay(_state(retry, 4), ConnectionError(), 0.0) == pytest.approx(0.8)
    assert retry.next_delay(_state(retry, 4), fj.RetryAfter(0.2), 0.0) == pytest.approx(0.8)


def test_retry_never_retries_cancellation_even_if_asked() -> None:
    retry = fj.Retry(attempts=5, on=lambda e: True)
    assert not retry.retries(asyncio.CancelledError())
    assert not retry.retries(KeyboardInterrupt())
    assert retry.next_delay(_state(retry, 1), asyncio.CancelledError(), 0.0) is None  # type: ignore[arg-type]


def test_retry_bound_and_tenacity_strategies() -> None:
    retry = fj.Retry(attempts=3, wait=tenacity.wait_fixed(2), stop=tenacity.stop_after_delay(5))
    assert retry.next_delay(_state(retry, 1), ValueError(), 1.0) == 2.0
    assert retry.next_delay(_state(retry, 3), ValueError(), 1.0) is None  # attempts bound
    assert retry.next_delay(_state(retry, 1), ValueError(), 6.0) is None  # tenacity's stop
    only = fj.Retry(on=(ConnectionError,))
    assert only.next_delay(_state(only, 1), ValueError(), 0.0) is None


# -- Retry-After -----------------------------------------------------------------------


def _http_error(status: int, headers: dict[str, str]) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "http://x/")
    response = httpx.Response(status, headers=headers, request=request)
    return httpx.HTTPStatusError("boom", request=request, response=response)


def test_retry_after_from_httpx_429_and_503() -> None:
    assert retry_after_of(_http_error(429, {"Retry-After": "3"})) == 3.0
    assert retry_after_of(_http_error(503, {"Retry-After": "0.25"})) == 0.25
    date = email.utils.formatdate(1_000_060, usegmt=True)
    assert retry_after_of(_http_error(429, {"Retry-After": date}), now=1_000_000) == 60.0
    assert retry_after_of(_http_error(500, {"Retry-After": "3"})) is None
    assert retry_after_of(_http_error(429, {})) is None
    assert parse_retry_after("soon") is None
    assert is_overload(_http_error(429, {}))
    assert is_overload(_http_error(503, {}))
    assert is_overload(fj.TaskTimeout("t"))
    assert not is_overload(_http_error(500, {}))
    assert not is_overload(SimpleNamespace() and ValueError())


# -- RateMeter -------------------------------------------------------------------------


def test_rate_meter_has_no_first_window_burst() -> None:
    meter = RateMeter(fj.RateLimit(10, per=1.0))
    starts = [meter.reserve(0.0) for _ in range(25)]
    assert starts[:3] == pytest.approx([0.0, 0.1, 0.2])
    assert sum(1 for s in starts if s < 1.0 - 1e-9) == 10


def test_rate_meter_burst_and_weight() -> None:
    meter = RateMeter(fj.RateLimit(10, per=1.0, burst=2))
    assert [meter.reserve(0.0) for _ in range(4)] == pytest.approx([0.0, 0.0, 0.0, 0.1])
    heavy = RateMeter(fj.RateLimit(100, per=60))
    assert heavy.reserve(0.0, 50) == 0.0
    assert heavy.reserve(0.0, 50) == pytest.approx(30.0)


def test_rate_meter_credits_a_late_wake_up() -> None:
    meter = RateMeter(fj.RateLimit(10))
    assert meter.reserve(0.0) == 0.0
    assert meter.reserve(0.0) == pytest.approx(0.1)
    # the second waiter woke late (0.13); the third keeps its slot at 0.2
    assert meter.reserve(0.13) == pytest.approx(0.2)


def test_rate_meter_window_guard_on_actual_starts() -> None:
    meter = RateMeter(fj.RateLimit(2, per=1.0))
    meter.record(0.3)
    meter.record(0.5)
    assert meter.wait_for_window(0.9) == pytest.approx(0.4)  # until 0.3 ages out
    assert meter.wait_for_window(1.3) == 0.0


class _Clock:
    """A run context of which a rate limit's state uses only the clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now


class _Task:
    weight = 1.0


def test_a_rate_counts_its_windows_from_the_starts_calls_report() -> None:
    # a call let go at 0.0 reports its start at 0.3 (a stall between the two readings of
    # the clock): windows count from 0.3, so a third call at 1.1 would put three reported
    # starts (0.3, 0.5, 1.1) in one second of a limit of 2
    ctx = _Clock()
    state = RateLimitState(fj.RateLimit(2, per=1.0), None, ctx)  # type: ignore[arg-type]
    first, second = _Task(), _Task()
    assert state.before(first) is None
    state.begins(first, 0.3)
    ctx.now = 0.5
    assert state.before(second) is None
    state.begins(second, 0.5)
    assert state.meter.wait_for_window(1.1) == pytest.approx(0.2)  # until 0.3 ages out
    assert state.unbegun == deque()  # each let go of once it began


def test_a_call_that_never_begins_keeps_the_start_it_was_let_go_at() -> None:
    ctx = _Clock()
    state = RateLimitState(fj.RateLimit(2, per=1.0), None, ctx)  # type: ignore[arg-type]
    stopped, other = _Task(), _Task()
    assert state.before(stopped) is None  # then stopped at another limit: never begins
    ctx.now = 0.5
    assert state.before(other) is None
    state.begins(other, 0.5)
    assert state.meter.wait_for_window(1.0) == 0.0  # 0.0 aged out
    state.begins(_Task(), 1.2)  # a later call's start lets go of what is a window old
    assert [task for task, _ in state.unbegun] == []


def test_rate_limit_rejects_a_weight_it_can_never_admit() -> None:
    with pytest.raises(fj.InvalidPolicy, match="weight"):
        fj.RateLimit(10).check_weight("task 'x': weight", 11)


# -- AdaptiveState ---------------------------------------------------------------------


def test_adaptive_slow_start_then_additive_increase() -> None:
    state = AdaptiveState(fj.AdaptiveLimit(initial=2, max=100))
    for _ in range(3):
        state.succeeded(state.started(), 0.1)
    assert state.limit == 5  # one per success before the first overload
    assert state.overloaded(state.started(), now=1.0)
    assert state.limit == 2
    for _ in range(2):
        state.succeeded(state.started(), 0.1)
    assert state.limit == 3  # then one per window of `limit` successes


def test_adaptive_cuts_once_per_round_trip() -> None:
    state = AdaptiveState(fj.AdaptiveLimit(initial=32))
    state.succeeded(state.started(), 0.5)  # rtt 0.5
    tokens = [state.started() for _ in range(10)]
    assert state.overloaded(tokens[0], now=1.0)
    assert state.limit == 16
    # calls started before the cut: ignored
    assert not any(state.overloaded(t, now=1.1) for t in tokens[1:])
    # a call started after the cut, but less than a round trip later: ignored
    assert not state.overloaded(state.started(), now=1.2)
    assert state.overloaded(state.started(), now=1.6)
    assert state.limit == 8


def test_adaptive_stays_within_bounds() -> None:
    state = AdaptiveState(fj.AdaptiveLimit(initial=3, min=2, max=4))
    for _ in range(10):
        state.succeeded(state.started())
    assert state.limit == 4
    for i in range(10):
        state.overloaded(state.started(), now=float(i))
    assert state.limit == 2


# -- Budget ----------------------------------------------------------------------------


def test_budget_reserves_estimates_and_charges_replace_them() -> None:
    budget = BudgetState(fj.Budget(usd=1.0))
    a, b, c, d = (Charge(budget, 0.4, None) for _ in range(4))
    assert budget.reserve(a) == OK
    assert budget.reserve(b) == OK
    # 0.4 + 0.4 reserved: 0.4 more does not fit now, but may once those settle
    assert budget.reserve(c) == WAIT
    assert budget.skipped == 0
    budget.add(a, 0.1, 0)  # a really cost 0.1: its reservation goes
    assert budget.reserve(c) == OK
    budget.settle(a)
    budget.settle(b)
    budget.settle(c)
    assert budget.spent_usd == pytest.approx(0.9)
    assert budget.reserved_usd == pytest.approx(0.0)
    assert budget.reserve(d) == NO  # 0.9 spent: 0.4 can never fit
    assert budget.skipped == 1


def test_a_charge_past_the_budget_is_refused_unless_already_spent() -> None:
    budget = BudgetState(fj.Budget(usd=1.0))
    a, b = Charge(budget, 0.5, None), Charge(budget, 0.5, None)
    budget.reserve(a)
    budget.reserve(b)
    budget.add(a, 0.8, 0)
    with pytest.raises(fj.BudgetExceeded, match=r"\$0.2 of \$1 left"):
        budget.add(b, 0.3, 0)
    assert budget.spent_usd == pytest.approx(0.8)  # the refused charge counts nothing
    budget.settle(b)  # a task cut by a refused charge is not charged its estimate
    assert budget.spent_usd == pytest.approx(0.8)
    c = Charge(budget, None, None)
    budget.add(c, 0.5, 0, spent=True)  # already spent: counted, the overshoot shown
    assert budget.snapshot()["overshoot_usd"] == pytest.approx(0.3)
    assert budget.snapshot()["refused"] == 1


def test_budget_tokens_and_no_estimate_tasks() -> None:
    budget = BudgetState(fj.Budget(tokens=100))
    free = Charge(budget, None, None)
    assert budget.reserve(free) == OK
    budget.add(free, 0, 100)
    assert budget.reserve(Charge(budget, None, None)) == NO  # nothing left at all
    assert budget.snapshot()["spent_tokens"] == 100


def test_charge_outside_a_task_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="inside a task"):
        fj.charge(usd=1)
    with pytest.raises(fj.InvalidPolicy, match=r"charge\.usd"):
        fj.charge(usd=-1)
