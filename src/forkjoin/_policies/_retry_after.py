"""RetryAfter, and reading a server's "slow down" out of an error (httpx 429/503)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable
from typing import Any

from .._errors import ForkjoinError, InvalidPolicy, TaskTimeout
from ._base import PolicyState

__all__ = ["PauseState", "RetryAfter", "is_overload", "retry_after_of"]

_OVERLOAD_STATUS = (429, 503)


class RetryAfter(ForkjoinError):
    """Raise from a task to ask for a retry after ``seconds`` (e.g. the server said so).

    The delay applies to the task's whole group, and a ``Retry``'s ``max_delay`` never
    shortens it (it caps only forkjoin's own backoff).
    """

    def __init__(self, seconds: float, message: str | None = None) -> None:
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not seconds >= 0
            or math.isinf(seconds)
        ):
            raise InvalidPolicy(f"RetryAfter.seconds: expected seconds >= 0, got {seconds!r}")
        super().__init__(message or f"retry after {seconds:g}s")
        self.seconds = float(seconds)


def _status(error: BaseException) -> int | None:
    # duck-typed so that importing forkjoin never imports httpx
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def parse_retry_after(value: str, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header value: delay-seconds or an HTTP-date."""
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        import email.utils  # an HTTP-date is rare: not paid for at import

        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        now = time.time() if now is None else now
        return max(0.0, when.timestamp() - now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def retry_after_of(error: BaseException, now: float | None = None) -> float | None:
    """The delay a server asked for, or None: a :class:`RetryAfter`, or an
    ``httpx.HTTPStatusError`` with status 429/503 and a ``Retry-After`` header.
    ``now`` is the wall clock (epoch seconds) for HTTP-date values."""
    if isinstance(error, RetryAfter):
        return error.seconds
    if _status(error) in _OVERLOAD_STATUS:
        headers: Any = getattr(error.response, "headers", None)  # type: ignore[attr-defined]
        value = headers.get("retry-after") if headers is not None else None
        if isinstance(value, str):
            return parse_retry_after(value, now)
    return None


def is_overload(error: BaseException) -> bool:
    """Whether ``error`` says "too much load": RetryAfter, HTTP 429/503, or a timeout."""
    if isinstance(error, RetryAfter | TaskTimeout | TimeoutError):
        return True
    if isinstance(error, asyncio.CancelledError):
        return False
    return _status(error) in _OVERLOAD_STATUS


class PauseState(PolicyState):
    """A group's pause after a server said "retry after n seconds": every call of the
    group waits until then (a group with a rate or an adaptive limit has one)."""

    __slots__ = ("until",)
    report_as = ("pause", "pauses")
    order = 1

    def __init__(self, policy: Any, group: str | None, ctx: Any) -> None:
        super().__init__(policy, group, ctx)
        self.until = 0.0

    def before(self, task: Any) -> Awaitable[Any] | None:
        if not self.until:
            return None
        wait = self.until - self.ctx.clock()
        return asyncio.sleep(wait) if wait > 0 else None

    def ended(self, task: Any, token: Any, error: BaseException | None, duration: float) -> None:
        if error is not None:
            delay = retry_after_of(error)
            if delay:
                self.until = max(self.until, self.ctx.clock() + delay)
