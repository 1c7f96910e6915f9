"""Run options: one validated, frozen value that every façade builds.

``gather``, ``run``, ``Fan``, ``map``, ``imap`` and ``map_reduce`` all take the same
keywords (:class:`RunKwargs`) and turn them into a :class:`RunOptions` here, so a value is
valid or invalid wherever it is given. Each field is checked by its one rule
(:mod:`._validate`), the same that :class:`~forkjoin.Task` and the policy values use.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from ._errors import InvalidPolicy
from ._validate import (
    check_backend,
    check_count,
    check_group_map,
    check_instance,
    check_limit,
    check_seconds,
)
from ._values import FACTORY, Frozen, set_field

if TYPE_CHECKING:
    from ._backends._base import Backend
    from ._journal import Journal
    from ._policies._adaptive import AdaptiveLimit
    from ._policies._breaker import CircuitBreaker
    from ._policies._budget import Budget
    from ._policies._group import Group
    from ._policies._rate import RateLimit
    from ._retry import Retry

__all__ = ["RunKwargs", "RunOptions", "build_options"]


ON_ERROR = ("collect", "fail_fast")


# -- the options ------------------------------------------------------------------------


class RunKwargs(TypedDict, total=False):
    """The keywords every entry point takes (``gather``, ``run``, ``Fan``, ``map``, ``imap``,
    ``map_reduce``). See :class:`forkjoin.Fan` for what each one means."""

    limit: int | None
    limits: Mapping[str, int | AdaptiveLimit | None] | None
    deadline: float | None
    timeout: float | None
    retry: Retry | bool | None
    on_error: str
    max_failures: int | None
    quorum: int | None
    observers: Iterable[Any]
    name: str | None
    budget: Budget | None
    rate: RateLimit | None
    rates: Mapping[str, RateLimit] | None
    groups: Mapping[str, Group] | None
    breaker: CircuitBreaker | None
    progress: bool | Any
    journal: str | os.PathLike[str] | Journal | None
    backend: Backend | str | None


@dataclass(slots=True, init=False, repr=False, eq=False)
class RunOptions(Frozen):
    """The validated options of one run (built by :func:`build_options`)."""

    limit: int | None = None
    # every group's concurrency limit, from ``limits=`` and ``groups=`` (an int each)
    group_limits: Mapping[str, int] = field(default_factory=dict)
    # groups whose limit is an AdaptiveLimit (its initial value is in group_limits)
    adaptive: Mapping[str, AdaptiveLimit] = field(default_factory=dict)
    deadline: float | None = None
    timeout: float | None = None
    retry: Retry | None = None
    on_error: str = "collect"
    max_failures: int | None = None
    quorum: int | None = None
    observers: tuple[Any, ...] = ()
    name: str | None = None
    groups: Mapping[str, Group] = field(default_factory=dict)
    # registered policies given at run level: {keyword: value} (``budget=``, ``rate=``...)
    policies: Mapping[str, Any] = field(default_factory=dict)
    # registered per-group keywords: {keyword: {group: value}} (``rates=``)
    group_policies: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    progress: Any = False
    journal: Journal | None = None
    backend: Any = None  # where calls run unless a group or task says (None: loop/thread)

    def __init__(
        self,
        limit: int | None = None,
        group_limits: Mapping[str, int] = FACTORY,
        adaptive: Mapping[str, AdaptiveLimit] = FACTORY,
        deadline: float | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
        on_error: str = "collect",
        max_failures: int | None = None,
        quorum: int | None = None,
        observers: tuple[Any, ...] = (),
        name: str | None = None,
        groups: Mapping[str, Group] = FACTORY,
        policies: Mapping[str, Any] = FACTORY,
        group_policies: Mapping[str, Mapping[str, Any]] = FACTORY,
        progress: Any = False,
        journal: Journal | None = None,
        backend: Any = None,
    ) -> None:
        set_field(self, "limit", limit)
        set_field(self, "group_limits", {} if group_limits is FACTORY else group_limits)
        set_field(self, "adaptive", {} if adaptive is FACTORY else adaptive)
        set_field(self, "deadline", deadline)
        set_field(self, "timeout", timeout)
        set_field(self, "retry", retry)
        set_field(self, "on_error", on_error)
        set_field(self, "max_failures", max_failures)
        set_field(self, "quorum", quorum)
        set_field(self, "observers", observers)
        set_field(self, "name", name)
        set_field(self, "groups", {} if groups is FACTORY else groups)
        set_field(self, "policies", {} if policies is FACTORY else policies)
        set_field(self, "group_policies", {} if group_policies is FACTORY else group_policies)
        set_field(self, "progress", progress)
        set_field(self, "journal", journal)
        set_field(self, "backend", backend)

    @property
    def stop_after_failures(self) -> int | None:
        """How many failures stop the run (``fail_fast`` is 1), or None."""
        if self.on_error == "fail_fast":
            return 1
        return self.max_failures

    @property
    def configured_groups(self) -> frozenset[str]:
        """Every group some run-level option names."""
        named = set(self.group_limits) | set(self.groups)
        for per_group in self.group_policies.values():
            named |= set(per_group)
        return frozenset(named)

    def settings(self) -> dict[str, Any]:
        """The run's settings, as ``RunStarted.options`` shows them."""
        out: dict[str, Any] = {
            "limit": self.limit,
            "limits": dict(self.group_limits),
            "deadline": self.deadline,
            "timeout": self.timeout,
            "on_error": self.on_error,
            "max_failures": self.max_failures,
            "quorum": self.quorum,
        }
        out.update(self.policies)
        out.update({k: dict(v) for k, v in self.group_policies.items() if v})
        if self.adaptive:
            out["adaptive"] = dict(self.adaptive)
        if self.groups:
            out["groups"] = dict(self.groups)
        if self.backend is not None:
            out["backend"] = self.backend
        return out


_KEYS = frozenset(RunKwargs.__annotations__)


def build_options(
    options: Mapping[str, Any], *, on_error: str = "collect", total: int | None = None
) -> RunOptions:
    """Validate the keywords of an entry point; raise InvalidPolicy naming the field.

    ``on_error`` is the entry point's default; ``total`` the number of tasks when known
    (a quorum larger than it is an error).
    """
    unknown = set(options) - _KEYS
    if unknown:
        raise TypeError(f"unexpected keyword argument {sorted(unknown)[0]!r}")
    from ._policies import REGISTRY
    from ._policies._adaptive import AdaptiveLimit
    from ._policies._group import Group
    from ._retry import Retry, check_retry

    get = options.get
    limit = check_limit("limit", get("limit"))
    groups = check_group_map("groups", get("groups"), Group)
    policies: dict[str, Any] = {}
    group_policies: dict[str, dict[str, Any]] = {}
    for reg in REGISTRY:
        if reg.run is not None and get(reg.run) is not None:
            policies[reg.run] = check_instance(reg.run, get(reg.run), reg.value)
        if reg.groups is not None:
            group_policies[reg.groups] = check_group_map(reg.groups, get(reg.groups), reg.value)
    group_limits: dict[str, int] = {}
    adaptive: dict[str, AdaptiveLimit] = {}
    for g, settings in groups.items():
        if isinstance(settings.limit, AdaptiveLimit):
            adaptive[g] = settings.limit
            group_limits[g] = settings.limit.initial
        elif settings.limit is not None:
            group_limits[g] = settings.limit
    limits = get("limits")
    if limits is not None:
        if not isinstance(limits, Mapping):
            raise InvalidPolicy(f"limits: expected a mapping of group -> limit, got {limits!r}")
        for g, v in limits.items():
            if not isinstance(g, str):
                raise InvalidPolicy(f"limits: group names must be strings, got {g!r}")
            if isinstance(v, AdaptiveLimit):
                adaptive[g] = v
                group_limits[g] = v.initial
                continue
            adaptive.pop(g, None)
            checked = check_limit(f"limits[{g!r}]", v)
            if checked is None:  # like limit=None: no limit for that group
                group_limits.pop(g, None)
            else:
                group_limits[g] = checked
    on_error = get("on_error", on_error)
    if on_error not in ON_ERROR:
        raise InvalidPolicy(f"on_error: expected 'collect' or 'fail_fast', got {on_error!r}")
    max_failures = check_count("max_failures", get("max_failures"))
    if max_failures is not None and on_error == "fail_fast":
        if "on_error" in options:
            raise InvalidPolicy(
                "max_failures: give on_error='fail_fast' (stop at the first failure) or "
                "max_failures=N, not both"
            )
        on_error = "collect"  # the entry point's default gives way to the explicit number
    quorum = check_count("quorum", get("quorum"))
    if quorum is not None and total is not None and quorum > total:
        raise InvalidPolicy(f"quorum: {quorum} is more than the {total} tasks given")
    retry = check_retry("retry", get("retry"))
    observers = get("observers", ())
    if observers is None:
        observers = ()
    try:
        observers = tuple(observers)
    except TypeError:
        raise InvalidPolicy(
            f"observers: expected an iterable of observers, got {observers!r}"
        ) from None
    from ._events import check_observer

    for o in observers:
        check_observer("observers", o)
    name = get("name")
    if name is not None and not isinstance(name, str):
        raise InvalidPolicy(f"name: expected a string, got {name!r}")
    progress = get("progress", False)
    if progress not in (True, False, None):
        from ._progress import progress_observer

        progress_observer(progress)  # InvalidPolicy unless it is an observer
    journal = get("journal")
    if journal is not None:
        from ._journal import check_journal

        journal = check_journal("journal", journal)
    return RunOptions(
        limit=limit,
        group_limits=group_limits,
        adaptive=adaptive,
        deadline=check_seconds("deadline", get("deadline")),
        timeout=check_seconds("timeout", get("timeout")),
        retry=retry if isinstance(retry, Retry) else None,
        on_error=on_error,
        max_failures=max_failures,
        quorum=quorum,
        observers=observers,
        name=name,
        groups=groups,
        policies=policies,
        group_policies=group_policies,
        progress=progress or False,
        journal=journal,
        backend=check_backend("backend", get("backend")),
    )
