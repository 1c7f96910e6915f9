"""Hedge: a duplicate call for a slow idempotent task; the first success wins."""

from __future__ import annotations

from dataclasses import dataclass

from .. import _validate
from .._values import FrozenValue, set_field

__all__ = ["Hedge"]


@dataclass(slots=True, init=False, repr=False, eq=False)
class Hedge(FrozenValue):
    """If a call has not finished after ``after`` seconds, start a duplicate (up to
    ``max_extra`` of them, ``after`` apart). The first success wins and the others are
    cancelled; every call shows in ``Outcome.history`` and every call's cost counts.
    Only for tasks marked ``idempotent=True``."""

    after: float
    max_extra: int = 1

    def __init__(
        self,
        after: float,
        max_extra: int = 1,
    ) -> None:
        set_field(self, "after", after)
        set_field(self, "max_extra", max_extra)
        self.__post_init__()

    def __post_init__(self) -> None:
        _validate.number("Hedge", "after", self.after, minimum=0, strict=True)
        _validate.integer("Hedge", "max_extra", self.max_extra, minimum=1)

    def delays(self) -> list[float]:
        """When each duplicate starts, in seconds after the first call started."""
        return [self.after * (i + 1) for i in range(self.max_extra)]
