"""The protocol of a backend: where one call of a task runs.

A call is a function, its arguments and a per-call timeout; it comes back as a value or an
error. The engine stops a call by cancelling the coroutine awaiting :meth:`Runner.call`:
a backend that can stop its call (the loop) lets the cancellation through; one that cannot
(a thread) marks the task ``abandoned`` before re-raising, so the run neither waits for
it nor reports it as stopped. What a call spends (``fj.charge``) goes to ``task.account``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Backend", "CallSite", "Runner"]


class CallSite(Protocol):
    """What a backend may see of the task whose call it runs."""

    name: str
    abandoned: bool  # set by a backend that could not stop a cancelled call
    account: Any  # the task's usage account for fj.charge(), or None


class Runner(Protocol):
    """A backend bound to one run."""

    async def call(
        self, task: CallSite, fn: Callable[..., Any], args: tuple[Any, ...], timeout: float | None
    ) -> Any:
        """Run ``fn(*args)`` and return its value (or raise its error)."""
        ...

    def close(self) -> None:
        """The run ended: release what the backend holds (nothing may outlive the run)."""
        ...


class Backend(Protocol):
    """Where calls run; :meth:`open` binds it to one run."""

    name: str

    def open(self, run_name: str, limit: int | None) -> Runner: ...
