"""Group: every setting for the tasks of one group, in one value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._errors import InvalidPolicy
from .._retry import Retry
from . import _check
from ._adaptive import AdaptiveLimit
from ._hedge import Hedge
from ._rate import RateLimit

__all__ = ["Group"]


@dataclass(frozen=True, slots=True)
class Group:
    """Settings for the tasks of one group (``groups={"search": fj.Group(...)}``).

    A task's own option wins over its group's, which wins over the run's. ``limit`` is an
    int or an :class:`AdaptiveLimit`; ``rate`` a :class:`RateLimit`; ``hedge`` applies to
    the group's tasks marked ``idempotent=True``.
    """

    timeout: float | None = None
    retry: Retry | bool | None = None
    limit: int | AdaptiveLimit | None = None
    rate: RateLimit | None = None
    hedge: Hedge | None = None

    def __post_init__(self) -> None:
        if self.timeout is not None:
            _check.number("Group", "timeout", self.timeout, minimum=0, strict=True)
        if self.retry is True:
            object.__setattr__(self, "retry", Retry())
        elif not (self.retry is None or self.retry is False or isinstance(self.retry, Retry)):
            _bad("retry", "fj.Retry(...), False or None", self.retry)
        if self.limit is not None and not isinstance(self.limit, AdaptiveLimit):
            _check.integer("Group", "limit", self.limit, minimum=1)
        if self.rate is not None and not isinstance(self.rate, RateLimit):
            _bad("rate", "fj.RateLimit(...)", self.rate)
        if self.hedge is not None and not isinstance(self.hedge, Hedge):
            _bad("hedge", "fj.Hedge(...)", self.hedge)


def _bad(field: str, expected: str, value: Any) -> None:
    raise InvalidPolicy(f"Group.{field}: expected {expected}, got {value!r}")
