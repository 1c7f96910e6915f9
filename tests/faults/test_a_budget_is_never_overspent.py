"""Guarantee: a budget with tasks in flight is never overspent by charges made before the
money is spent (a charge that would go past it is refused and cuts its task); money
reported as already spent is counted and the overshoot is flagged exactly; and tasks are
not skipped while what is in flight may still leave room for them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import forkjoin as fj


def _spender(amount: float, *, spent: bool = False) -> Any:
    async def spend(i: int) -> int:
        fj.charge(usd=amount, spent=spent)  # before the expensive call (or after: spent)
        await asyncio.sleep(1)
        return i

    return spend


def _run(vrun: Any, spend: Any, n: int = 50, limit: int = 10, cap: float = 1.0) -> fj.Results:
    return vrun(
        fj.gather(
            {f"t{i}": fj.task(spend, i, cost=0.10) for i in range(n)},
            budget=fj.Budget(usd=cap),
            limit=limit,
        )
    )


def test_charges_past_the_budget_are_refused_and_cut_their_tasks(vrun: Any) -> None:
    results = _run(vrun, _spender(0.25))
    budget = results.report.options["budget"]
    assert budget["spent_usd"] <= 1.0  # was $2.50: every charge counted
    assert "overshoot_usd" not in budget
    ok = [o for o in results.values() if o.ok]
    cut = [o for o in results.values() if o.reason == "budget" and o.status is fj.Status.FAILED]
    skipped = [o for o in results.values() if o.status is fj.Status.SKIPPED]
    assert len(ok) == 4  # 4 x $0.25 = the budget
    assert sum(o.cost for o in ok) == pytest.approx(1.0)
    assert len(cut) == 6
    assert all(isinstance(o.error, fj.BudgetExceeded) for o in cut)
    assert all(o.attempts == 1 for o in cut)  # a refused charge is never retried
    assert {o.reason for o in skipped} == {"budget"}
    assert len(skipped) == 40
    assert budget["refused"] == 6
    assert "refused 6 charges" in str(results.report)


def test_money_already_spent_is_counted_and_the_overshoot_flagged(vrun: Any) -> None:
    results = _run(vrun, _spender(0.25, spent=True))
    budget = results.report.options["budget"]
    assert budget["spent_usd"] == pytest.approx(2.5)  # 10 were in flight, each spent 0.25
    assert budget["overshoot_usd"] == pytest.approx(1.5)
    assert "OVER by $1.5000" in str(results.report)
    # once it was exhausted nothing more started
    assert sum(1 for o in results.values() if o.status is fj.Status.SKIPPED) == 40


def test_cheaper_than_estimated_leaves_room_for_more(vrun: Any) -> None:
    # each task reserves $0.10 but spends $0.05: the queued ones wait for the reservations
    # to settle instead of being skipped at once while $0.50 is never used
    results = _run(vrun, _spender(0.05))
    budget = results.report.options["budget"]
    ran = [o for o in results.values() if o.ok]
    assert budget["spent_usd"] <= 1.0 + 1e-9
    assert budget["spent_usd"] >= 0.90  # the budget was used, not left half empty
    assert len(ran) >= 18
    assert all(o.reason == "budget" for o in results.values() if not o.ok)


@settings(max_examples=60, deadline=None)
@given(
    cap=st.floats(0.1, 3.0),
    limit=st.integers(1, 8),
    charges=st.lists(st.floats(0.0, 0.5), min_size=1, max_size=30),
    estimate=st.floats(0.0, 0.4),
    after=st.booleans(),
)
def test_spending_never_passes_the_budget_unless_reported_after(
    cap: float, limit: int, charges: list[float], estimate: float, after: bool
) -> None:
    async def spend(amount: float) -> float:
        await asyncio.sleep(amount)
        fj.charge(usd=amount, spent=after)
        await asyncio.sleep(0.01)
        return amount

    async def main() -> fj.Results:
        return await fj.gather(
            {f"t{i}": fj.task(spend, c, cost=estimate) for i, c in enumerate(charges)},
            budget=fj.Budget(usd=cap),
            limit=limit,
        )

    from forkjoin.testing import run

    results = run(main())
    budget = results.report.options["budget"]
    spent = budget["spent_usd"]
    assert len(results) == len(charges)
    charged = sum(o.cost or 0.0 for o in results.values() if o.ok)
    assert charged == pytest.approx(spent, abs=1e-6)
    if after:
        assert budget.get("overshoot_usd", 0.0) == pytest.approx(max(0.0, spent - cap), abs=1e-9)
    else:
        assert spent <= cap + 1e-9
        assert "overshoot_usd" not in budget
