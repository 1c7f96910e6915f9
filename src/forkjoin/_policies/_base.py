"""The policy seam: a policy's live state in one run, and how a policy is registered.

A policy value (``RateLimit``, ``Budget``, ``CircuitBreaker`` ...) only describes; its
:class:`PolicyState` holds what one run (or one group of a run) needs to enforce it. A state
implements only the hooks it needs; the engine keeps, per hook, the list of states that
define it, so a hook no state implements costs nothing (as aiometer's meters, trio's
instruments):

- ``admit(task)`` — before a task starts; return a reason (``"budget"``) to skip it, or
  WAITING to keep it waiting until the state calls ``ctx.readmit()``;
- ``admit_extra(task)`` — before a duplicate (hedged) call; False: no duplicate;
- ``before(task)`` — before each call; return an awaitable to wait for (a rate limit, a
  server's Retry-After pause), None to go on, or raise to refuse the call (an open circuit);
- ``begins(task, now)`` — the call let go by ``before`` starts at ``now``, the instant its
  attempt reports (a rate counts its windows from it);
- ``started(task)`` — the call starts; what it returns is handed to ``ended``;
- ``ended(task, token, error, duration)`` — the call ended (``error`` None when it succeeded);
- ``settle(task)`` — the task ended;
- ``carry(usd, tokens)`` — what earlier runs of the same journal run spent (at the start);
- ``report()`` — what the run report shows of this state.

States never touch the engine: what they may do to a run is in :class:`RunContext`.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from .._values import FrozenValue, set_field

__all__ = [
    "HOOKS",
    "WAITING",
    "PolicyState",
    "Registration",
    "RunContext",
    "current_run",
    "implements",
    "in_task",
]


# what an admit() hook returns for "not now": the task waits (without a slot) until a
# state calls RunContext.readmit(), then asks again
WAITING = "waiting"


class RunContext(Protocol):
    """What a policy state may use of the run it belongs to."""

    @property
    def name(self) -> str: ...

    def clock(self) -> float:
        """The run's clock (seconds; ``t0`` is when the run started)."""
        ...

    @property
    def t0(self) -> float: ...

    def set_limit(self, group: str, limit: int) -> None:
        """Change a group's concurrency limit (an adaptive limit's decision)."""
        ...

    def emit(self, hook: str, event: Any) -> None:
        """Tell the observers subscribed to ``hook`` (an event name such as
        ``"limit_changed"``)."""
        ...

    def listens(self, hook: str) -> bool:
        """Whether any observer listens to ``hook`` (build the event only then)."""
        ...

    def readmit(self) -> None:
        """Ask admission again for the tasks an admit() hook answered WAITING."""
        ...


# the run a task runs in, set in its context while the run is open: what fj.charge() and
# friends check to know they are called from inside a task
current_run: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar(
    "forkjoin_run", default=None
)


def in_task() -> bool:
    """Whether the caller runs inside a task of a forkjoin run."""
    return current_run.get() is not None


class PolicyState:
    """Base of the live state of one policy in one run; override only the hooks you need."""

    __slots__ = ("ctx", "group", "policy")

    # where report() goes in the run report's options: (run-wide key, per-group key)
    report_as: ClassVar[tuple[str, str]] = ("policy", "policies")
    # the order of the states' call hooks (lower first): an open circuit refuses before
    # any wait, a server's pause comes before the rate limits, an adaptive limit counts
    # the call itself
    order: ClassVar[int] = 5
    # its before() hook makes calls wait as a rule (a rate limit): each call is then logged
    # with the time it really started; a state whose waits are the exception (a server's
    # pause) only moves the task's start when it does wait
    waits: ClassVar[bool] = False

    def __init__(self, policy: Any, group: str | None, ctx: RunContext) -> None:
        self.policy = policy
        self.group = group  # None: the whole run
        self.ctx = ctx

    def admit(self, task: Any) -> str | None:
        return None

    def admit_extra(self, task: Any) -> bool:
        return True

    def before(self, task: Any) -> Awaitable[Any] | None:
        return None

    def begins(self, task: Any, now: float) -> None:
        """The call let go by :meth:`before` starts at ``now``: the instant its attempt
        reports as its start."""
        return None

    def started(self, task: Any) -> Any:
        return None

    def ended(self, task: Any, token: Any, error: BaseException | None, duration: float) -> None:
        return None

    def settle(self, task: Any) -> None:
        return None

    def carry(self, usd: float, tokens: float) -> None:
        return None

    def report(self) -> dict[str, Any]:
        return {}


HOOKS = ("admit", "admit_extra", "before", "started", "ended", "settle", "carry", "report")


def implements(state: PolicyState, hook: str) -> bool:
    """Whether ``state``'s class overrides ``hook``."""
    return getattr(type(state), hook) is not getattr(PolicyState, hook)


@dataclass(slots=True, init=False, repr=False, eq=False)
class Registration(FrozenValue):
    """How a policy plugs into runs: its value class, its state class, and where it can be
    set. ``run``: the run-level keyword (``rate=``); ``groups``: the run-level keyword of
    ``{group: value}`` (``rates=``); ``group_field``: the field of :class:`~forkjoin.Group`;
    ``each_group``: a run-level value gives every group (and the ungrouped tasks) a state of
    its own instead of one shared by the whole run."""

    value: type
    state: Callable[[Any, str | None, RunContext], PolicyState]
    run: str | None = None
    groups: str | None = None
    group_field: str | None = None
    each_group: bool = False

    def __init__(
        self,
        value: type,
        state: Callable[[Any, str | None, RunContext], PolicyState],
        run: str | None = None,
        groups: str | None = None,
        group_field: str | None = None,
        each_group: bool = False,
    ) -> None:
        set_field(self, "value", value)
        set_field(self, "state", state)
        set_field(self, "run", run)
        set_field(self, "groups", groups)
        set_field(self, "group_field", group_field)
        set_field(self, "each_group", each_group)
