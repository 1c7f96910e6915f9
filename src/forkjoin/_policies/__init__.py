"""Resilience policies: small immutable values that decide, and their per-run state.

One file per policy; each holds the value users build and the :class:`PolicyState` that
enforces it in a run. Adding a policy is a file here and a line in :data:`REGISTRY`.

- :mod:`._base` — the seam: PolicyState (hooks) and Registration
- :mod:`._rate` — RateLimit (RateMeter: the schedule; RateLimitState)
- :mod:`._adaptive` — AdaptiveLimit (AdaptiveState: AIMD; AdaptiveLimitState)
- :mod:`._breaker` — CircuitBreaker, CircuitOpen (BreakerState)
- :mod:`._budget` — Budget, charge() (BudgetState, RunBudget)
- :mod:`._retry_after` — RetryAfter, reading 429/503 Retry-After; PauseState
- :mod:`._hedge` — Hedge (a call pipeline layer, no state of its own)
- :mod:`._group` — Group: every setting of one group
"""

from __future__ import annotations

from ._base import Registration
from ._breaker import BreakerState, CircuitBreaker
from ._budget import Budget, RunBudget
from ._rate import RateLimit, RateLimitState

__all__ = ["REGISTRY"]

# Run-level and per-group policies with a live state, in the order their ``before`` hooks
# run for a call: an open circuit refuses at once, before any wait for a rate.
REGISTRY: tuple[Registration, ...] = (
    Registration(
        CircuitBreaker, BreakerState, run="breaker", group_field="breaker", each_group=True
    ),
    Registration(RateLimit, RateLimitState, run="rate", groups="rates", group_field="rate"),
    Registration(Budget, RunBudget, run="budget"),
)
