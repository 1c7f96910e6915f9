"""Budget: a cost cap per run; estimates are reserved at start, charges replace them."""

from __future__ import annotations

import contextvars
import threading
from dataclasses import dataclass
from typing import Any

from .. import _validate
from .._errors import InvalidPolicy
from ._base import PolicyState, RunContext, in_task

__all__ = ["Budget", "BudgetState", "Charge", "RunBudget", "charge"]


@dataclass(frozen=True, slots=True)
class Budget:
    """Most a run may spend: ``usd`` and/or ``tokens``.

    Tasks declare estimates (``cost=``, ``tokens=``), reserved while they run; a task may
    report what it really spent with :func:`charge`. A task whose estimate is more than what
    is left after the reservations is not started (``skipped``, reason ``"budget"``).
    """

    usd: float | None = None
    tokens: float | None = None

    def __post_init__(self) -> None:
        if self.usd is None and self.tokens is None:
            raise InvalidPolicy("Budget: give usd=... and/or tokens=...")
        if self.usd is not None:
            _validate.number("Budget", "usd", self.usd, minimum=0, strict=False)
        if self.tokens is not None:
            _validate.number("Budget", "tokens", self.tokens, minimum=0, strict=False)


class Charge:
    """One task's account: its estimates, what is reserved for it, what it was charged."""

    __slots__ = ("budget", "calls", "charged", "est_tokens", "est_usd", "tokens", "usd")

    def __init__(
        self, budget: BudgetState | None, est_usd: float | None, est_tokens: float | None
    ) -> None:
        self.budget = budget  # set when the run has a Budget
        self.est_usd = est_usd
        self.est_tokens = est_tokens
        self.calls = 1  # estimates are counted once per call started (hedges count)
        self.charged = False
        self.usd = 0.0
        self.tokens = 0.0

    def add(self, usd: float | None, tokens: float | None) -> None:
        if self.budget is not None:
            self.budget.add(self, usd or 0.0, tokens or 0.0)
        else:
            self._add(usd or 0.0, tokens or 0.0)

    def _add(self, usd: float, tokens: float) -> None:
        self.charged = True
        self.usd += usd
        self.tokens += tokens

    def totals(self) -> tuple[float | None, float | None]:
        """(usd, tokens) this task cost: its charges, else its estimates per call."""
        if self.charged:
            return self.usd, self.tokens
        usd = self.est_usd * self.calls if self.est_usd is not None else None
        tokens = self.est_tokens * self.calls if self.est_tokens is not None else None
        return usd, tokens


class BudgetState:
    """A run's spending. Thread-safe: ``charge()`` may come from a worker thread."""

    __slots__ = (
        "_lock",
        "carried_tokens",
        "carried_usd",
        "policy",
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
        self.carried_usd = self.carried_tokens = 0.0
        self._lock = threading.Lock()

    def _fits(self, usd: float, tokens: float) -> bool:
        p = self.policy
        eps = 1e-12
        if p.usd is not None and self.spent_usd + self.reserved_usd + usd > p.usd + eps:
            return False
        return not (
            p.tokens is not None
            and self.spent_tokens + self.reserved_tokens + tokens > p.tokens + eps
        )

    def _exhausted(self) -> bool:
        p = self.policy
        return (p.usd is not None and self.spent_usd >= p.usd) or (
            p.tokens is not None and self.spent_tokens >= p.tokens
        )

    def reserve(self, account: Charge, extra: bool = False) -> bool:
        """Reserve one call's estimates for ``account``; False if they do not fit (or
        nothing is left at all for a task with no estimate)."""
        usd, tokens = account.est_usd or 0.0, account.est_tokens or 0.0
        with self._lock:
            if not self._fits(usd, tokens) or (not usd and not tokens and self._exhausted()):
                if not extra:
                    self.skipped += 1
                return False
            if not account.charged:
                self.reserved_usd += usd
                self.reserved_tokens += tokens
            if extra:
                account.calls += 1
            return True

    def add(self, account: Charge, usd: float, tokens: float) -> None:
        """A charge from inside the task: it replaces the task's reservation at once."""
        with self._lock:
            if not account.charged:
                self._release(account)
            account._add(usd, tokens)
            self.spent_usd += usd
            self.spent_tokens += tokens

    def _release(self, account: Charge) -> None:
        self.reserved_usd -= (account.est_usd or 0.0) * account.calls
        self.reserved_tokens -= (account.est_tokens or 0.0) * account.calls

    def settle(self, account: Charge) -> None:
        """The task ended: an uncharged task is charged its estimates."""
        with self._lock:
            if account.charged:
                return
            self._release(account)
            usd, tokens = account.totals()
            self.spent_usd += usd or 0.0
            self.spent_tokens += tokens or 0.0
            account.charged = True
            account.usd, account.tokens = usd or 0.0, tokens or 0.0

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
        return {
            "usd": p.usd,
            "tokens": p.tokens,
            "spent_usd": round(self.spent_usd, 10),
            "spent_tokens": self.spent_tokens,
            "skipped": self.skipped,
            **({"carried_usd": round(self.carried_usd, 10)} if self.carried_usd else {}),
            **({"carried_tokens": self.carried_tokens} if self.carried_tokens else {}),
        }


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
        return None if self.state.reserve(account) else "budget"

    def admit_extra(self, task: Any) -> bool:
        return self.state.reserve(task.account, extra=True)

    def settle(self, task: Any) -> None:
        self.state.settle(task.account)

    def carry(self, usd: float, tokens: float) -> None:
        self.state.carry(usd, tokens)

    def report(self) -> dict[str, Any]:
        return self.state.snapshot()


current_account: contextvars.ContextVar[Charge | None] = contextvars.ContextVar(
    "forkjoin_charge", default=None
)


def charge(*, usd: float | None = None, tokens: float | None = None) -> None:
    """Report what the running task really spent (sync or async, also from its thread).

    Replaces the task's estimate (``cost=`` / ``tokens=``); several charges add up. In a
    task with no estimate in a run with no budget there is nothing to account for: a no-op.
    """
    for field, value in (("usd", usd), ("tokens", tokens)):
        if value is not None:
            _validate.number("charge", field, value, minimum=0, strict=False)
    account = current_account.get()
    if account is None:
        if not in_task():
            raise RuntimeError("fj.charge() is only available inside a task run by forkjoin")
        return  # a task with no budget and no estimate: nothing to account for
    account.add(usd, tokens)
