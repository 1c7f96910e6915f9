"""Resilience policies: small immutable values that decide, and their per-run state.

- :mod:`._rate` — RateLimit (and RateMeter, its state in a run)
- :mod:`._adaptive` — AdaptiveLimit (and AdaptiveState: AIMD)
- :mod:`._hedge` — Hedge
- :mod:`._budget` — Budget, charge() (and BudgetState)
- :mod:`._retry_after` — RetryAfter, reading 429/503 Retry-After from httpx errors
- :mod:`._group` — Group: every setting of one group
- :mod:`._runtime` — the engine side: what a run keeps per group and per task

Nothing is imported here: the engine's modules import the submodules they need (and
``_retry`` imports ``_retry_after``, so importing more here would be circular).
"""
