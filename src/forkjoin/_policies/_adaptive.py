"""AdaptiveLimit: AIMD concurrency for an API whose limits the user does not know."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import _validate
from .._errors import InvalidPolicy
from .._events import LimitChanged
from .._values import FrozenValue, set_field
from ._base import PolicyState, RunContext
from ._retry_after import is_overload

__all__ = ["AdaptiveLimit", "AdaptiveLimitState", "AdaptiveState"]


@dataclass(slots=True, init=False, repr=False, eq=False)
class AdaptiveLimit(FrozenValue):
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

    def __init__(
        self,
        initial: int = 4,
        min: int = 1,
        max: int = 64,
    ) -> None:
        set_field(self, "initial", initial)
        set_field(self, "min", min)
        set_field(self, "max", max)
        self.__post_init__()

    def __post_init__(self) -> None:
        _validate.integer("AdaptiveLimit", "min", self.min, minimum=1)
        _validate.integer("AdaptiveLimit", "max", self.max, minimum=1)
        _validate.integer("AdaptiveLimit", "initial", self.initial, minimum=1)
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


class AdaptiveLimitState(PolicyState):
    """An AdaptiveLimit in a run: sets its group's concurrency limit from how calls end."""

    __slots__ = ("changes", "state")
    report_as = ("adaptive", "adaptive")
    order = 3

    def __init__(self, policy: AdaptiveLimit, group: str | None, ctx: RunContext) -> None:
        super().__init__(policy, group, ctx)
        self.state = AdaptiveState(policy)
        self.changes: list[tuple[float, int]] = [(0.0, policy.initial)]

    def started(self, task: Any) -> Any:
        return self.state.started()

    def ended(self, task: Any, token: Any, error: BaseException | None, duration: float) -> None:
        # called before the task's slot is freed: the next admission already sees a cut
        state = self.state
        if error is None:
            if state.succeeded(token, duration):
                self._changed("grow")
        elif (
            isinstance(error, Exception)
            and is_overload(error)
            and state.overloaded(token, self.ctx.clock())
        ):
            self._changed("overload")

    def _changed(self, why: str) -> None:
        ctx = self.ctx
        assert self.group is not None
        limit = self.state.limit
        t = ctx.clock() - ctx.t0
        self.changes.append((t, limit))
        ctx.set_limit(self.group, limit)
        if ctx.listens("limit_changed"):
            ctx.emit("limit_changed", LimitChanged(ctx.name, t, self.group, limit, why))

    def report(self) -> dict[str, Any]:
        return {
            "initial": self.policy.initial,
            "limit": self.state.limit,
            "cuts": self.state.cuts,
            "changes": [[round(t, 6), n] for t, n in self.changes],
        }
