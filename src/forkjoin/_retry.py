"""Retry: when and how long to wait before calling a failed task again (built on tenacity).

The policy only decides; the engine sleeps and reads the clock. Each task gets its own
``tenacity.RetryCallState``; the strategy objects are immutable and shared safely.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _validate
from ._errors import InvalidPolicy
from ._policies._breaker import CircuitOpen
from ._policies._budget import BudgetExceeded
from ._policies._retry_after import retry_after_of
from ._values import FrozenValue, set_field

if TYPE_CHECKING:
    from tenacity import RetryCallState

__all__ = ["Retry", "check_retry"]


# Never retried, whatever ``on`` says: cancellation, interpreter exit, Ctrl-C, a call an
# open circuit refused, a charge the budget refused (the run's deadline reaches a task as
# a cancellation, and the engine never retries after a stop).
_NEVER = (
    asyncio.CancelledError,
    KeyboardInterrupt,
    SystemExit,
    GeneratorExit,
    CircuitOpen,
    BudgetExceeded,
)

# Not retried unless ``on`` says so: programming errors, which a second call repeats.
PROGRAMMING_ERRORS: tuple[type[BaseException], ...] = (
    TypeError,
    NameError,
    AttributeError,
    ImportError,
    AssertionError,
    NotImplementedError,
    SyntaxError,
)

ExceptionFilter = tuple[type[BaseException], ...] | Callable[[BaseException], bool]


@dataclass(slots=True, init=False, repr=False, eq=False)
class Retry(FrozenValue):
    """Call a failed task again, up to ``attempts`` calls in all.

    Waits ``backoff * 2**(n-1)`` seconds before call ``n + 1``, capped at ``max_delay``
    (with ``jitter``, a random delay between half and all of that). When the error carries
    a server's delay (:class:`RetryAfter`, or an httpx 429/503 with ``Retry-After``), the
    wait is at least that delay: ``max_delay`` caps only this backoff.

    ``on`` is a tuple of exception types or a predicate ``error -> bool``. By default every
    ``Exception`` is retried except programming errors, which a second call only repeats
    (``TypeError``, ``NameError``, ``AttributeError``, ``ImportError``, ``AssertionError``,
    ``NotImplementedError``, ``SyntaxError``); ``on=(Exception,)`` retries those too.
    tenacity strategies may be given instead: ``stop``, ``wait`` and ``retry`` (e.g.
    ``tenacity.stop_after_delay(10)``); ``attempts`` still bounds the number of calls.
    """

    attempts: int = 3
    backoff: float = 0.5
    max_delay: float = 30.0
    jitter: bool = True
    on: ExceptionFilter | None = None
    stop: Any = None
    wait: Any = None
    retry: Any = None

    def __init__(
        self,
        attempts: int = 3,
        backoff: float = 0.5,
        max_delay: float = 30.0,
        jitter: bool = True,
        on: ExceptionFilter | None = None,
        stop: Any = None,
        wait: Any = None,
        retry: Any = None,
    ) -> None:
        set_field(self, "attempts", attempts)
        set_field(self, "backoff", backoff)
        set_field(self, "max_delay", max_delay)
        set_field(self, "jitter", jitter)
        set_field(self, "on", on)
        set_field(self, "stop", stop)
        set_field(self, "wait", wait)
        set_field(self, "retry", retry)
        self.__post_init__()

    def __post_init__(self) -> None:
        _validate.integer("Retry", "attempts", self.attempts, minimum=1)
        _validate.number("Retry", "backoff", self.backoff, minimum=0, strict=False)
        _validate.number("Retry", "max_delay", self.max_delay, minimum=0, strict=False)
        on = self.on
        if on is None:
            pass
        elif isinstance(on, type) and issubclass(on, BaseException):
            object.__setattr__(self, "on", (on,))
        elif isinstance(on, tuple):
            if not on or not all(isinstance(t, type) and issubclass(t, BaseException) for t in on):
                raise InvalidPolicy(
                    f"Retry.on: expected exception types or a predicate, got {on!r}"
                )
        elif not callable(on):
            raise InvalidPolicy(f"Retry.on: expected exception types or a predicate, got {on!r}")
        for field in ("stop", "wait", "retry"):
            value = getattr(self, field)
            if value is not None and not callable(value):
                raise InvalidPolicy(f"Retry.{field}: expected a tenacity strategy, got {value!r}")

    # -- decisions (pure: the engine passes the clock in) ---------------------------------

    def retries(self, error: BaseException) -> bool:
        """Whether ``error`` is of a kind this policy retries (ignores the attempt count)."""
        if isinstance(error, _NEVER):
            return False
        on = self.on
        if on is None:
            return isinstance(error, Exception) and not isinstance(error, PROGRAMMING_ERRORS)
        if isinstance(on, tuple):
            return isinstance(error, on)
        return bool(on(error))

    def new_state(self, started: float) -> RetryCallState:
        """A fresh per-task state; ``started`` is the run clock at the first call."""
        state: RetryCallState = _tenacity().RetryCallState(_RETRYING[0], None, (), {})
        state.start_time = started
        return state

    def next_delay(self, state: RetryCallState, error: BaseException, now: float) -> float | None:
        """Seconds to wait before the next call, or ``None`` to give up.

        ``state.attempt_number`` is the number of the call that just failed with ``error``.
        """
        fut = _tenacity().Future(state.attempt_number)
        fut.set_exception(error)
        state.outcome, state.outcome_timestamp = fut, now
        if state.attempt_number >= self.attempts:
            return None
        if self.retry is not None:
            if not self.retry(state):
                return None
            if isinstance(error, _NEVER):
                return None
        elif not self.retries(error):
            return None
        if self.stop is not None and self.stop(state):
            return None
        if self.wait is not None:
            delay = float(self.wait(state))
        else:
            delay = min(self.max_delay, self.backoff * 2 ** (state.attempt_number - 1))
            if self.jitter and delay > 0:
                delay = _JITTER(delay)
        server = retry_after_of(error)
        if server is not None and server > delay:
            delay = server  # the server's word is never capped by max_delay
        return max(0.0, delay)


def _equal_jitter(delay: float) -> float:
    # half fixed, half random: spreads retries apart without collapsing a delay to zero;
    # random is imported here, not by every run's start-up (3M of a one-line map's 273M
    # instructions), and already loaded by tenacity (``warm``) in a run that retries
    import random

    return random.uniform(delay / 2, delay)


_JITTER: Callable[[float], float] = _equal_jitter

# tenacity strategies receive a RetryCallState whose retry_object must exist; it is only
# read (for statistics) and never mutated by the strategies used here.
_RETRYING: list[Any] = []


def _tenacity() -> Any:
    """tenacity, imported when a run first has a retry policy (a fifth of ``import
    forkjoin`` otherwise, for runs that never retry)."""
    import tenacity

    if not _RETRYING:
        _RETRYING.append(tenacity.AsyncRetrying())
    return tenacity


def warm() -> None:
    """Import tenacity now, before a run with a retry policy starts (not on the event loop
    at a task's first failure)."""
    _tenacity()


def check_retry(where: str, value: Any) -> Retry | bool | None:
    """A retry setting: a :class:`Retry`, True (the default Retry), False (none) or None
    (inherit)."""
    if value is None or value is False or isinstance(value, Retry):
        return value
    if value is True:
        return Retry()
    raise InvalidPolicy(f"{where}: expected fj.Retry(...), False or None, got {value!r}")
