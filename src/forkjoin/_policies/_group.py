"""Group: every setting for the tasks of one group, in one value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._errors import InvalidPolicy
from .._retry import Retry, check_retry
from .._validate import check_backend, check_limit, check_seconds
from .._values import FrozenValue, set_field
from ._adaptive import AdaptiveLimit
from ._breaker import CircuitBreaker
from ._hedge import Hedge
from ._rate import RateLimit

__all__ = ["Group"]


@dataclass(slots=True, init=False, repr=False, eq=False)
class Group(FrozenValue):
    """Settings for the tasks of one group (``groups={"search": fj.Group(...)}``).

    A task's own option wins over its group's, which wins over the run's. ``limit`` is an
    int or an :class:`AdaptiveLimit`; ``rate`` a :class:`RateLimit`; ``hedge`` applies to
    the group's tasks marked ``idempotent=True``; ``breaker`` a :class:`CircuitBreaker` for
    the group; ``backend`` where the group's calls run (as ``fj.task(backend=...)``).
    """

    timeout: float | None = None
    retry: Retry | bool | None = None
    limit: int | AdaptiveLimit | None = None
    rate: RateLimit | None = None
    hedge: Hedge | None = None
    breaker: CircuitBreaker | None = None
    backend: Any = None

    def __init__(
        self,
        timeout: float | None = None,
        retry: Retry | bool | None = None,
        limit: int | AdaptiveLimit | None = None,
        rate: RateLimit | None = None,
        hedge: Hedge | None = None,
        breaker: CircuitBreaker | None = None,
        backend: Any = None,
    ) -> None:
        set_field(self, "timeout", timeout)
        set_field(self, "retry", retry)
        set_field(self, "limit", limit)
        set_field(self, "rate", rate)
        set_field(self, "hedge", hedge)
        set_field(self, "breaker", breaker)
        set_field(self, "backend", backend)
        self.__post_init__()

    def __post_init__(self) -> None:
        check_seconds("Group.timeout", self.timeout)
        object.__setattr__(self, "retry", check_retry("Group.retry", self.retry))
        if self.limit is not None and not isinstance(self.limit, AdaptiveLimit):
            check_limit("Group.limit", self.limit)
        if self.rate is not None and not isinstance(self.rate, RateLimit):
            _bad("rate", "fj.RateLimit(...)", self.rate)
        if self.hedge is not None and not isinstance(self.hedge, Hedge):
            _bad("hedge", "fj.Hedge(...)", self.hedge)
        if self.breaker is not None and not isinstance(self.breaker, CircuitBreaker):
            _bad("breaker", "fj.CircuitBreaker(...)", self.breaker)
        object.__setattr__(self, "backend", check_backend("Group.backend", self.backend))


def _bad(field: str, expected: str, value: Any) -> None:
    raise InvalidPolicy(f"Group.{field}: expected {expected}, got {value!r}")
