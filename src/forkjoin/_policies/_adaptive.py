"""AdaptiveLimit: AIMD concurrency for an API whose limits the user does not know."""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import InvalidPolicy
from . import _check

__all__ = ["AdaptiveLimit", "AdaptiveState"]


@dataclass(frozen=True, slots=True)
class AdaptiveLimit:
    """A group's concurrency limit that finds the API's capacity by itself (AIMD).

    Starts at ``initial``; grows by one after a window of successes (until the first
    overload signal a window is one success — "slow start" — then it is as many successes
    as the current limit, about one round trip); halves on an overload signal
    (``RetryAfter``, HTTP 429/503, a timeout), at most once per round trip. Always within
    ``[min, max]``.
    """

    initial: int = 4
    min: int = 1
    max: int = 64

    def __post_init__(self) -> None:
        _check.integer("AdaptiveLimit", "min", self.min, minimum=1)
        _check.integer("AdaptiveLimit", "max", self.max, minimum=1)
        _check.integer("AdaptiveLimit", "initial", self.initial, minimum=1)
        if self.max < self.min:
            raise InvalidPolicy(f"AdaptiveLimit.max: must be >= min ({self.min}), got {self.max}")
        if not self.min <= self.initial <= self.max:
            raise InvalidPolicy(
                f"AdaptiveLimit.initial: must be within [min, max] = "
                f"[{self.min}, {self.max}], got {self.initial}"
            )


class AdaptiveState:
    """The live limit of one AdaptiveLimit in one run. Pure decisions, no clock needed.

    A call takes a token (:meth:`started`) and reports back with it; a token from before
    the last cut is ignored, so one burst of rejections cuts the limit only once.
    """

    __slots__ = (
        "_cut_at",
        "_epoch",
        "_slow_start",
        "_successes",
        "cuts",
        "limit",
        "policy",
        "rtt",
    )

    def __init__(self, policy: AdaptiveLimit) -> None:
        self.policy = policy
        self.limit = policy.initial
        self.cuts = 0
        self.rtt = 0.0  # smoothed duration of successful calls: one round trip
        self._epoch = 0
        self._cut_at = float("-inf")
        self._successes = 0
        self._slow_start = True

    def started(self) -> int:
        """Token for a call starting now."""
        return self._epoch

    def succeeded(self, token: int, duration: float = 0.0) -> bool:
        """A call ended well after ``duration`` seconds; True if the limit grew."""
        self.rtt = duration if self.rtt == 0.0 else 0.8 * self.rtt + 0.2 * duration
        if token != self._epoch:
            return False  # started before the last cut: it measured the old limit
        self._successes += 1
        window = 1 if self._slow_start else self.limit
        if self._successes >= window and self.limit < self.policy.max:
            self._successes = 0
            self.limit += 1
            return True
        return False

    def overloaded(self, token: int, now: float = 0.0) -> bool:
        """A call saw an overload signal at ``now``; True if the limit was cut.

        Ignored if the call started before the last cut, or if the last cut is less than
        a round trip old (a retry of a rejected call must not cut again before the
        server has even felt the previous cut).
        """
        if token != self._epoch or now - self._cut_at < self.rtt:
            return False  # that cut already answered it
        self._cut_at = now
        self._epoch += 1
        self._slow_start = False
        self._successes = 0
        new = max(self.policy.min, self.limit // 2)
        changed = new != self.limit
        self.limit = new
        if changed:
            self.cuts += 1
        return changed
