"""Resilience policies against a strict, rate-limited HTTP API: the measured figures.

    .venv/bin/python -m bench.resilience            # all five scenarios (~1 min)

Starts tests/strict_api.py's server (its own process, 127.0.0.1, ephemeral port) for each
scenario and prints what the server itself counted: 429s and the busiest 1-second window
with RateLimit at the server's rate; throughput against capacity with AdaptiveLimit +
Retry against limits the client does not know; calls per task under random 500s; p50/p99
with and without Hedge on a slow tail; spending against a Budget.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.strict_api import (
    StrictConfig,
    scenario_adaptive,
    scenario_budget,
    scenario_errors,
    scenario_hedge,
    scenario_rate,
    strict_api,
)

import forkjoin as fj


def _run(config: StrictConfig, scenario: Any, **kwargs: Any) -> dict[str, Any]:
    with strict_api(config) as api:
        m: dict[str, Any] = asyncio.run(scenario(api, **kwargs))
    m.pop("results", None)
    return m


def main() -> None:
    print(f"machine load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores\n")

    m = _run(StrictConfig(rate=50, burst=10, latency=0.01, jitter=0.01), scenario_rate, n=500)
    print("1. RateLimit(50) against a server limited to 50/s (burst 10), 500 calls")
    print(f"   ok {m['ok']}/500, 429s {m['429s']}, requests {m['requests']}")
    print(
        f"   busiest 1 s window: server {m['server_max_window']} (limit 60 with burst), "
        f"client starts {m['client_max_window']} (limit 50)"
    )
    print(f"   achieved {m['achieved_rate']:.2f}/s of 50/s = {m['achieved_rate'] / 50:.1%}\n")

    config = StrictConfig(rate=40, burst=10, latency=0.3, jitter=0.2, busy_retry_after=0.01)
    m = _run(config, scenario_adaptive, n=500)
    print("2. AdaptiveLimit + Retry, limit unknown (40/s, burst 10; 300-500 ms), 500 calls")
    print(
        f"   ok {m['ok']}/500, requests {m['requests']}, 429s {m['429s']} "
        f"= {m['429_share']:.1%} of requests (target < 5%)"
    )
    print(
        f"   throughput {m['throughput']:.1f}/s, capacity {m['capacity']:.1f}/s "
        f"= {m['utilisation']:.1%} (target >= 80%), final limit {m['final_limit']}, "
        f"wall {m['wall']:.1f}s\n"
    )

    m = _run(StrictConfig(latency=0.005, error_share=0.2, seed=1), scenario_errors, n=500)
    print("3. 20% random 500s, Retry(attempts=4), 500 calls")
    print(
        f"   ok {m['ok']}/500, 500s {m['500s']}, requests {m['requests']}, "
        f"most calls for one task {m['max_calls_per_task']}, "
        f"Outcome.attempts == server count: {m['attempts_match']}\n"
    )

    config = StrictConfig(latency=0.05, slow_share=0.05, slow_factor=20, seed=21)
    with strict_api(config) as api:
        plain = asyncio.run(scenario_hedge(api, n=200))
        hedged = asyncio.run(scenario_hedge(api, n=200, hedge=fj.Hedge(after=0.25)))
    print("4. slow tail (5% of calls 20x: 50 ms -> 1 s), 200 calls, limit 20")
    for label, h in (("no hedge      ", plain), ("Hedge(0.25 s) ", hedged)):
        print(
            f"   {label} p50 {h['p50'] * 1000:6.0f} ms  p99 {h['p99'] * 1000:6.0f} ms  "
            f"max {h['max'] * 1000:6.0f} ms  extra calls {h['extra_calls']:3d}  "
            f"server requests {h['server_requests']}  cost ${h['cost']:.3f}"
        )
    print()

    m = _run(StrictConfig(latency=0.01), scenario_budget, n=100, estimate=0.012, usd=0.5)
    print("5. Budget(usd=0.50), 100 calls estimated at $0.012 (actual $0.005-0.011 each)")
    print(
        f"   ok {m['ok']}, skipped (budget) {m['skipped_budget']}, spent ${m['spent']:.4f} "
        f"(over budget by ${max(0.0, m['spent'] - m['budget']):.4f}; bound: one estimate "
        f"${m['estimate']}), results intact: {m['intact']}"
    )


if __name__ == "__main__":
    main()
