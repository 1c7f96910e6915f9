"""The resilience policies against a real, strict HTTP API (tests/strict_api.py).

Real time and real sockets: the figures are chosen so that every assertion holds with a
wide margin on a loaded 2-core machine (the server runs in its own process). The precise
throughput / p99 measurements are in bench/resilience.py.
"""

from __future__ import annotations

import asyncio

import pytest

import forkjoin as fj
from tests.strict_api import (
    StrictConfig,
    scenario_adaptive,
    scenario_budget,
    scenario_errors,
    scenario_hedge,
    scenario_rate,
    strict_api,
)

pytestmark = pytest.mark.timeout(120)

RATE = 50.0
BURST = 10


def test_rate_limit_at_the_servers_rate_gets_no_429() -> None:
    # The server times each request when its own process gets to it, and forkjoin credits a
    # late wake-up: after a stall of either process on a busy 2-core machine (seen: 11,
    # then 41 of 500 refused by a 0.5 s tolerance in full test runs, none alone) up to a
    # second's worth of requests arrive at once, each window of 1 s still holding no more
    # than the rate. The server tolerates that much (a burst of the rate) and refuses
    # more (a start-up burst of twice the rate would be); the client-side window check
    # below is the exact one.
    burst = int(RATE)
    config = StrictConfig(rate=RATE, burst=burst, latency=0.01, jitter=0.01)
    with strict_api(config) as api:
        m = asyncio.run(scenario_rate(api, n=500))
    assert m["ok"] == 500
    assert m["429s"] == 0
    # the server's own count: no window of 1 s over its limit (rate + its burst allowance)
    assert m["server_max_window"] <= RATE + burst
    # and forkjoin's own guarantee, on its clock: no window over the rate itself
    assert m["client_max_window"] <= RATE
    # no burst at the start, yet the rate is used: 500 calls at 50/s take about 10 s
    assert m["wall"] >= (500 - 1) / RATE - 0.05


def test_adaptive_limit_finds_an_unknown_limit() -> None:
    # hidden: 40 requests/s (burst 10); latency 300-500 ms, so about 16 in flight are needed
    config = StrictConfig(rate=40, burst=10, latency=0.3, jitter=0.2, busy_retry_after=0.01)
    with strict_api(config) as api:
        m = asyncio.run(scenario_adaptive(api, n=500))
    assert m["ok"] == 500
    assert m["429_share"] < 0.05, m
    # bench/resilience.py measures it (83% on a quiet machine); the floor here leaves room
    # for other processes competing with the HTTP client for the 2 cores
    assert m["utilisation"] >= 0.7, m
    results: fj.Results = m["results"]
    assert "adaptive" in results.report.options


def test_retries_absorb_random_server_errors() -> None:
    # seed 1: 20% of calls fail at random, and no id fails 4 times in a row (checked below
    # through the server's own count)
    config = StrictConfig(latency=0.005, error_share=0.2, seed=1)
    with strict_api(config) as api:
        m = asyncio.run(scenario_errors(api, n=500))
    assert m["ok"] == 500
    assert 0.1 * 500 < m["500s"] < 0.35 * 500  # the errors really happened
    assert m["max_calls_per_task"] <= 4
    assert m["attempts_match"]  # Outcome.attempts is the server's count for each task
    results: fj.Results = m["results"]
    retried = [o for o in results.values() if o.attempts > 1]
    assert retried
    assert all(len(o.history) == o.attempts for o in retried)
    assert all(not a.ok for o in retried for a in o.history[:-1])


def test_hedging_cuts_the_slow_tail() -> None:
    # 5% of calls 20x slower: 50 ms -> 1 s (seed 21: 11 slow calls in the plain run, 16
    # slow first calls in the hedged run, and never a slow first call *and* a slow hedge)
    config = StrictConfig(latency=0.05, slow_share=0.05, slow_factor=20, seed=21)
    with strict_api(config) as api:
        plain = asyncio.run(scenario_hedge(api, n=200))
        hedged = asyncio.run(scenario_hedge(api, n=200, hedge=fj.Hedge(after=0.25)))
    assert plain["ok"] == hedged["ok"] == 200
    assert plain["p99"] >= 1.0  # the slow tail is there
    assert hedged["p99"] < 0.75 * plain["p99"], (plain["p99"], hedged["p99"])
    assert hedged["extra_calls"] >= 3  # at least the slow calls were hedged
    assert hedged["report_hedged"] == hedged["extra_calls"]  # counted in the report
    assert plain["extra_calls"] == 0
    # every duplicate is in the Outcomes, and each call's cost counts
    assert hedged["server_requests"] <= 200 + hedged["extra_calls"]
    assert hedged["cost"] == pytest.approx(0.001 * (200 + hedged["extra_calls"]))


def test_budget_skips_what_it_cannot_afford() -> None:
    with strict_api(StrictConfig(latency=0.01)) as api:
        m = asyncio.run(scenario_budget(api, n=100, estimate=0.012, usd=0.5))
    assert m["skipped_budget"] > 0
    assert m["ok"] + m["skipped_budget"] == 100
    assert m["spent"] <= m["budget"] + m["estimate"]
    assert m["intact"]  # kept results are the right ones
    assert m["server_requests"] == m["ok"]  # a skipped task never called the server
    results: fj.Results = m["results"]
    assert all(o.cost is not None and o.cost <= 0.011 for o in results.values() if o.ok)
