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

    __slots__ = ("_epoch", "_slow_start", "_successes", "cuts", "limit", "policy")

    def __init__(self, policy: AdaptiveLimit) -> None:
        self.policy = policy
        self.limit = policy.initial
        self.cuts = 0
        self._epoch = 0
        self._successes = 0
        self._slow_start = True

    def started(self) -> int:
        """Token for a call starting now."""
        return self._epoch

    def succeeded(self, token: int) -> bool:
        """A call ended well; True if the limit grew."""
        if token != self._epoch:
            return False
        self._successes += 1
        window = 1 if self._slow_start else self.limit
        if self._successes >= window and self.limit < self.policy.max:
            self._successes = 0
            self.limit += 1
            return True
        return False

    def overloaded(self, token: int) -> bool:
        """A call saw an overload signal; True if the limit was cut."""
        if token != self._epoch:
            return False  # started before the last cut: that cut already answered it
        self._epoch += 1
        self._slow_start = False
        self._successes = 0
        new = max(self.policy.min, self.limit // 2)
        changed = new != self.limit
        self.limit = new
        if changed:
            self.cuts += 1
        return changed
