"""The policy states of one run, and the per-hook lists the call pipeline runs.

States are made from the run's options through :data:`~._policies.REGISTRY` (plus the
adaptive limits, and a Retry-After pause for every group some call-time policy watches);
:meth:`RunPolicies.hooks` gives, for a group, the bound hook methods in the order they
run, cached. A hook no state of that group implements is an empty list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import REGISTRY
from ._adaptive import AdaptiveLimitState
from ._base import PolicyState, Registration, RunContext, implements
from ._rate import RateLimitState
from ._retry_after import PauseState

if TYPE_CHECKING:
    from .._options import RunOptions

__all__ = ["Hooks", "RunPolicies"]


class Hooks:
    """The bound hooks of every state that applies to one group's tasks."""

    __slots__ = ("accounts", "admit", "admit_extra", "around", "before", "begins", "gated",
                 "settle", "states", "tokens", "waits")  # fmt: skip

    def __init__(self, states: list[PolicyState]) -> None:
        self.states = states

        def bound(hook: str) -> list[Callable[..., Any]]:
            return [getattr(s, hook) for s in states if implements(s, hook)]

        self.admit = bound("admit")
        self.admit_extra = bound("admit_extra")
        self.before = bound("before")
        self.begins = bound("begins")
        # (started, ended) of each state that watches calls (either may be None): what
        # started() returns for a call is handed to the same state's ended()
        self.around: list[tuple[Callable[..., Any] | None, Callable[..., Any] | None]] = [
            (
                s.started if implements(s, "started") else None,
                s.ended if implements(s, "ended") else None,
            )
            for s in states
            if implements(s, "started") or implements(s, "ended")
        ]
        self.settle = bound("settle")
        # a state is around every call (so each call goes through the gate)
        self.gated = bool(self.before or self.begins or self.around)
        # a state hands a token from started() to ended()
        self.tokens = any(s is not None for s, _ in self.around)
        # a state makes calls wait as a rule: each call is logged with its real start
        self.waits = any(s.waits for s in states)
        # a state accounts for what tasks spend (a budget)
        self.accounts = bool(self.admit or self.settle)


class RunPolicies:
    """Every policy state of one run: the run's own and each group's."""

    __slots__ = ("_ctx", "_each", "_groups", "_hooks", "_options", "_run")

    def __init__(self, options: RunOptions, ctx: RunContext) -> None:
        self._options = options
        self._ctx = ctx
        self._run: list[PolicyState] = []  # one state for the whole run
        self._each: list[tuple[Registration, Any]] = []  # a state per group, made on demand
        self._groups: dict[str | None, list[PolicyState]] = {}
        self._hooks: dict[str | None, Hooks] = {}
        for reg in REGISTRY:
            value = options.policies.get(reg.run) if reg.run is not None else None
            if value is None:
                continue
            if reg.each_group:
                self._each.append((reg, value))
            else:
                self._run.append(reg.state(value, None, ctx))
        for group in sorted(options.configured_groups):
            self._group_states(group)

    def _group_states(self, group: str | None) -> list[PolicyState]:
        states = self._groups.get(group)
        if states is not None:
            return states
        options = self._options
        ctx = self._ctx
        states = []
        settings = options.groups.get(group) if group is not None else None
        for reg in REGISTRY:
            value = None
            if group is not None:
                if reg.groups is not None:
                    value = options.group_policies.get(reg.groups, {}).get(group)
                if value is None and reg.group_field is not None and settings is not None:
                    value = getattr(settings, reg.group_field)
            if value is None and reg.each_group:
                value = options.policies.get(reg.run) if reg.run is not None else None
            if value is not None and not (reg.each_group is False and group is None):
                states.append(reg.state(value, group, ctx))
        if group is not None and group in options.adaptive:
            states.append(AdaptiveLimitState(options.adaptive[group], group, ctx))
        if group is not None and any(
            isinstance(s, RateLimitState | AdaptiveLimitState) for s in states
        ):
            # a server's Retry-After pauses the whole group whose rate or load it watches
            states.append(PauseState(None, group, ctx))
        self._groups[group] = states
        return states

    def hooks(self, group: str | None) -> Hooks:
        """The hooks for a task of ``group`` (None: no group), in the order they run."""
        hooks = self._hooks.get(group)
        if hooks is None:
            states = [*self._run, *self._group_states(group)]
            states.sort(key=lambda s: s.order)  # stable: the run's own first
            hooks = self._hooks[group] = Hooks(states)
        return hooks

    def states(self) -> list[PolicyState]:
        """Every state made so far (the run's, then each group's)."""
        out = list(self._run)
        for states in self._groups.values():
            out.extend(states)
        return out

    def carry(self, usd: float, tokens: float) -> None:
        """What earlier runs of the same journal run spent counts as spent in this one."""
        if usd or tokens:
            for s in self.states():
                s.carry(usd, tokens)

    def report(self) -> dict[str, Any]:
        """What the report shows of the policies: ``{key: data}`` for the run's own states,
        ``{key: {group: data}}`` for each group's (the keys are each state's
        ``report_as``; the tasks without a group are under ``""``)."""
        out: dict[str, Any] = {}
        for s in self._run:
            data = s.report()
            if data:
                out[s.report_as[0]] = data
        for group, states in self._groups.items():
            for s in states:
                data = s.report()
                if data:
                    out.setdefault(s.report_as[1], {})[group or ""] = data
        return out
