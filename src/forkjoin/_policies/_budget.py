"""Budget: a cost cap per run; estimates are reserved at start, charges replace them."""

from __future__ import annotations

import contextvars
import threading
from dataclasses import dataclass
from typing import Any

from .. import _validate
from .._errors import ForkjoinError, InvalidPolicy
from .._values import FrozenValue, set_field
from ._base import WAITING, PolicyState, RunContext, in_task

__all__ = ["Budget", "BudgetExceeded", "BudgetState", "Charge", "RunBudget", "charge"]


@dataclass(slots=True, init=False, repr=False, eq=False)
class Budget(FrozenValue):
    """Most a run may spend: ``usd`` and/or ``tokens``.

    Tasks declare estimates (``cost=``, ``tokens=``), reserved while they run; a task may
    report what it really spent with :func:`charge`. A task whose estimate is more than what
    is left after the reservations is not started (``skipped``, reason ``"budget"``).
    """

    usd: float | None = None
    tokens: float | None = None

    def __init__(
        self,
        usd: float | None = None,
        tokens: float | None = None,
    ) -> None:
        set_field(self, "usd", usd)
        set_field(self, "tokens", tokens)
        self.__post_init__()

    def __post_init__(self) -> None:
        if self.usd is None and self.tokens is None:
            raise InvalidPolicy("Budget: give usd=... and/or tokens=...")
        if self.usd is not None:
            _validate.number("Budget", "usd", self.usd, minimum=0, strict=False)
        if self.tokens is not None:
            _validate.number("Budget", "tokens", self.tokens, minimum=0, strict=False)


class Charge:
    """One task's account: its estimates, what is reserved for it, what it was charged."""

    __slots__ = ("budget", "calls", "charged", "cut", "est_tokens", "est_usd", "tokens", "usd")

    def __init__(
        self, budget: BudgetState | None, est_usd: float | None, est_tokens: float | None
    ) -> None:
        self.budget = budget  # set when the run has a Budget
        self.est_usd = est_usd
        self.est_tokens = est_tokens
        self.calls = 1  # estimates are counted once per call started (hedges count)
        self.charged = False
        self.cut = False  # a charge of its was refused by the budget
        self.usd = 0.0
        self.tokens = 0.0

    def add(self, usd: float | None, tokens: float | None, spent: bool = False) -> None:
        if self.budget is not None:
            self.budget.add(self, usd or 0.0, tokens or 0.0, spent)
        else:
            self._add(usd or 0.0, tokens or 0.0)

    def _add(self, usd: float, tokens: float) -> None:
        self.charged = True
        self.usd += usd
        self.tokens += tokens

    def totals_of_estimates(self) -> tuple[float, float]:
        """(usd, tokens) of its estimates, once per call."""
        return (self.est_usd or 0.0) * self.calls, (self.est_tokens or 0.0) * self.calls

    def totals(self) -> tuple[float | None, float | None]:
        """(usd, tokens) this task cost: its charges, else its estimates per call."""
        if self.charged:
            return self.usd, self.tokens
        usd = self.est_usd * self.calls if self.est_usd is not None else None
        tokens = self.est_tokens * self.calls if self.est_tokens is not None else None
        return usd, tokens


class BudgetExceeded(ForkjoinError):
    """Raised by :func:`charge` when the charge would take the run past its budget: the
    amount is not counted, and the task (unless it catches this) ends failed with reason
    ``"budget"``."""


OK, WAIT, NO = "ok", "wait", "no"


class BudgetState:
    """A run's spending. Thread-safe: ``charge()`` may come from a worker thread.

    Admission (:meth:`reserve`) answers OK (the estimate is reserved), WAIT (it would fit
    once the tasks in flight have settled what they reserved) or NO (it can never fit:
    skipped). A charge (:meth:`add`) that would take what was really spent past the budget
    is refused, unless it reports money already spent: that is counted, and the excess is
    the report's ``overshoot_usd`` / ``overshoot_tokens``. A task that never charges is
    counted at its estimate when it ends; if others' charges used what it had reserved,
    that too shows as an overshoot.
    """

    __slots__ = (
        "_lock",
        "carried_tokens",
        "carried_usd",
        "policy",
        "refused",
        "reserved_tokens",
        "reserved_usd",
        "skipped",
        "spent_tokens",
        "spent_usd",
    )

    def __init__(self, policy: Budget) -> None:
        self.policy = policy
        self.spent_usd = self.spent_tokens = 0.0
        self.reserved_usd = self.reserved_tokens = 0.0
        self.skipped = 0
        self.refused = 0  # charges refused (their tasks were cut)
        self.carried_usd = self.carried_tokens = 0.0
        self._lock = threading.Lock()

    def _over(self, usd: float, tokens: float, reserved: bool) -> bool:
        """Whether spending ``usd``/``tokens`` more (on top of the reservations too, with
        ``reserved``) goes past the budget."""
        p = self.policy
        eps = 1e-12
        ru = self.reserved_usd if reserved else 0.0
        rt = self.reserved_tokens if reserved else 0.0
        if p.usd is not None and self.spent_usd + ru + usd > p.usd + eps:
            return True
        return p.tokens is not None and self.spent_tokens + rt + tokens > p.tokens + eps

    def _exhausted(self) -> bool:
        p = self.policy
        return (p.usd is not None and self.spent_usd >= p.usd - 1e-12) or (
            p.tokens is not None and self.spent_tokens >= p.tokens - 1e-12
        )

    def reserve(self, account: Charge, extra: bool = False) -> str:
        """Reserve one call's estimates for ``account``: OK, WAIT or NO (see the class)."""
        usd, tokens = account.est_usd or 0.0, account.est_tokens or 0.0
        with self._lock:
            if self._over(usd, tokens, reserved=False) or (
                not usd and not tokens and self._exhausted()
            ):
                if not extra:
                    self.skipped += 1
                return NO
            if self._over(usd, tokens, reserved=True):
                return WAIT  # what is in flight may cost less than it reserved
            if not account.charged:
                self.reserved_usd += usd
                self.reserved_tokens += tokens
            if extra:
                account.calls += 1
            return OK

    def add(self, account: Charge, usd: float, tokens: float, spent: bool = False) -> None:
        """A charge from inside the task; it replaces the task's reservation. Raises
        BudgetExceeded (counting nothing) if it would go past the budget, unless ``spent``
        (money already spent: counted whatever it does to the budget)."""
        with self._lock:
            # checked against what was really spent: the reservations of the tasks in
            # flight are estimates, and one that turns out cheaper leaves room
            if not spent and self._over(usd, tokens, reserved=False):
                self.refused += 1
                account.cut = True
                raise BudgetExceeded(
                    f"this charge (${usd:g}, {tokens:g} tokens) would take the run past its "
                    f"budget ({self._left()})"
                )
            if not account.charged:
                self._release(account)
            account._add(usd, tokens)
            self.spent_usd += usd
            self.spent_tokens += tokens

    def _left(self) -> str:
        p = self.policy
        parts = []
        if p.usd is not None:
            parts.append(f"${max(0.0, p.usd - self.spent_usd):g} of ${p.usd:g} left")
        if p.tokens is not None:
            parts.append(f"{max(0.0, p.tokens - self.spent_tokens):g} of {p.tokens:g} tokens left")
        return ", ".join(parts)

    def _release(self, account: Charge) -> None:
        self.reserved_usd -= (account.est_usd or 0.0) * account.calls
        self.reserved_tokens -= (account.est_tokens or 0.0) * account.calls

    def settle(self, account: Charge) -> None:
        """The task ended: an uncharged task is charged its estimates (one whose charge
        was refused is charged what it was charged before, nothing more)."""
        with self._lock:
            if account.charged:
                return
            self._release(account)
            account.charged = True
            if account.cut:
                return
            usd, tokens = account.totals_of_estimates()
            self.spent_usd += usd
            self.spent_tokens += tokens
            account.usd, account.tokens = usd, tokens

    def carry(self, usd: float, tokens: float) -> None:
        """Spending recorded by earlier runs (a journal's): already spent."""
        with self._lock:
            self.spent_usd += usd
            self.spent_tokens += tokens
            self.carried_usd += usd
            self.carried_tokens += tokens

    def snapshot(self) -> dict[str, float | int | None]:
        """What the report shows."""
        p = self.policy
        out: dict[str, float | int | None] = {
            "usd": p.usd,
            "tokens": p.tokens,
            "spent_usd": round(self.spent_usd, 10),
            "spent_tokens": self.spent_tokens,
            "skipped": self.skipped,
            "refused": self.refused,
            **({"carried_usd": round(self.carried_usd, 10)} if self.carried_usd else {}),
            **({"carried_tokens": self.carried_tokens} if self.carried_tokens else {}),
        }
        if p.usd is not None and self.spent_usd > p.usd + 1e-12:
            out["overshoot_usd"] = round(self.spent_usd - p.usd, 10)
        if p.tokens is not None and self.spent_tokens > p.tokens + 1e-12:
            out["overshoot_tokens"] = self.spent_tokens - p.tokens
        return out


class RunBudget(PolicyState):
    """A run's Budget: reserves each task's estimates at admission, settles them at its end."""

    __slots__ = ("state",)
    report_as = ("budget", "budgets")

    def __init__(self, policy: Budget, group: str | None, ctx: RunContext) -> None:
        super().__init__(policy, group, ctx)
        self.state = BudgetState(policy)

    def admit(self, task: Any) -> str | None:
        account: Charge = task.account
        account.budget = self.state
        answer = self.state.reserve(account)
        if answer is OK:
            return None
        return WAITING if answer is WAIT else "budget"

    def admit_extra(self, task: Any) -> bool:
        return self.state.reserve(task.account, extra=True) is OK

    def settle(self, task: Any) -> None:
        self.state.settle(task.account)
        self.ctx.readmit()  # what it did not spend may let a waiting task in

    def carry(self, usd: float, tokens: float) -> None:
        self.state.carry(usd, tokens)

    def report(self) -> dict[str, Any]:
        return self.state.snapshot()


current_account: contextvars.ContextVar[Charge | None] = contextvars.ContextVar(
    "forkjoin_charge", default=None
)


def charge(*, usd: float | None = None, tokens: float | None = None, spent: bool = False) -> None:
    """Tell the run what the running task spends (sync or async, also from its thread).

    Replaces the task's estimate (``cost=`` / ``tokens=``); several charges add up. With a
    :class:`Budget`, a charge is checked when it is made: call it *before* you spend, and a
    charge that would take the run past its budget raises :class:`BudgetExceeded` and is
    not counted, so the task stops there (it ends failed, reason ``"budget"``, unless it
    catches the error). ``spent=True`` reports money already spent: it is counted even past
    the budget, and the report shows the overshoot. In a task with no estimate in a run
    with no budget there is nothing to account for: a no-op.
    """
    for field, value in (("usd", usd), ("tokens", tokens)):
        if value is not None:
            _validate.number("charge", field, value, minimum=0, strict=False)
    account = current_account.get()
    if account is None:
        if not in_task():
            raise RuntimeError("fj.charge() is only available inside a task run by forkjoin")
        return  # a task with no budget and no estimate: nothing to account for
    account.add(usd, tokens, spent)
