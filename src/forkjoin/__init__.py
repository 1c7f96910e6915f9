"""forkjoin: run many independent tasks at once, under policies; get keyed, complete results.

The whole public API is listed here; everything else lives in private modules. A public
name is imported from its module on first use (PEP 562), so ``import forkjoin`` and the
command line's quick paths load only what they touch.
"""

import importlib as _importlib
import typing as _typing

from ._version import __version__

if _typing.TYPE_CHECKING:
    from ._backends._dask import DaskBackend
    from ._backends._process import ProcessBackend
    from ._errors import (
        DependencyFailed,
        DuplicateTaskName,
        FanClosed,
        FanError,
        ForkjoinError,
        Interrupted,
        InvalidPolicy,
        JournalError,
        JournalLocked,
        JournalWarning,
        TaskCancelled,
        TaskNotSerializable,
        TaskSkipped,
        TaskTimeout,
        WorkerLost,
    )
    from ._events import (
        AttemptFailed,
        AttemptStarted,
        CircuitChanged,
        Event,
        HedgeStarted,
        LimitChanged,
        Observer,
        RunFinished,
        RunStarted,
        TaskFinished,
        TaskQueued,
        TaskStarted,
    )
    from ._fan import Fan, current_fan, gather, run
    from ._identity import idempotency_key
    from ._journal import Journal
    from ._logging import LogObserver
    from ._map import OutcomeStream, Values, imap, map, map_reduce, map_reduce_sync, map_sync
    from ._otel import OtelObserver
    from ._outcome import Attempt, Outcome, Results, Status
    from ._policies._adaptive import AdaptiveLimit
    from ._policies._breaker import CircuitBreaker, CircuitOpen
    from ._policies._budget import Budget, BudgetExceeded, charge
    from ._policies._group import Group
    from ._policies._hedge import Hedge
    from ._policies._rate import RateLimit
    from ._policies._retry_after import RetryAfter
    from ._progress import ProgressObserver
    from ._queued import QueuedObserver
    from ._refs import each, item, ref
    from ._report import RunReport
    from ._retry import Retry
    from ._task import Task, task

__all__ = [
    "AdaptiveLimit",
    "Attempt",
    "AttemptFailed",
    "AttemptStarted",
    "Budget",
    "BudgetExceeded",
    "CircuitBreaker",
    "CircuitChanged",
    "CircuitOpen",
    "DaskBackend",
    "DependencyFailed",
    "DuplicateTaskName",
    "Event",
    "Fan",
    "FanClosed",
    "FanError",
    "ForkjoinError",
    "Group",
    "Hedge",
    "HedgeStarted",
    "Interrupted",
    "InvalidPolicy",
    "Journal",
    "JournalError",
    "JournalLocked",
    "JournalWarning",
    "LimitChanged",
    "LogObserver",
    "Observer",
    "OtelObserver",
    "Outcome",
    "OutcomeStream",
    "ProcessBackend",
    "ProgressObserver",
    "QueuedObserver",
    "RateLimit",
    "Results",
    "Retry",
    "RetryAfter",
    "RunFinished",
    "RunReport",
    "RunStarted",
    "Status",
    "Task",
    "TaskCancelled",
    "TaskFinished",
    "TaskNotSerializable",
    "TaskQueued",
    "TaskSkipped",
    "TaskStarted",
    "TaskTimeout",
    "Values",
    "WorkerLost",
    "__version__",
    "charge",
    "current_fan",
    "each",
    "gather",
    "idempotency_key",
    "imap",
    "item",
    "map",
    "map_reduce",
    "map_reduce_sync",
    "map_sync",
    "ref",
    "run",
    "task",
]

# the private module that defines each public name (``__version__`` is imported above)
_MODULES: dict[str, tuple[str, ...]] = {
    "._backends._dask": ("DaskBackend",),
    "._backends._process": ("ProcessBackend",),
    "._errors": (
        "DependencyFailed",
        "DuplicateTaskName",
        "FanClosed",
        "FanError",
        "ForkjoinError",
        "Interrupted",
        "InvalidPolicy",
        "JournalError",
        "JournalLocked",
        "JournalWarning",
        "TaskCancelled",
        "TaskNotSerializable",
        "TaskSkipped",
        "TaskTimeout",
        "WorkerLost",
    ),
    "._events": (
        "AttemptFailed",
        "AttemptStarted",
        "CircuitChanged",
        "Event",
        "HedgeStarted",
        "LimitChanged",
        "Observer",
        "RunFinished",
        "RunStarted",
        "TaskFinished",
        "TaskQueued",
        "TaskStarted",
    ),
    "._fan": ("Fan", "current_fan", "gather", "run"),
    "._identity": ("idempotency_key",),
    "._journal": ("Journal",),
    "._logging": ("LogObserver",),
    "._map": (
        "OutcomeStream",
        "Values",
        "imap",
        "map",
        "map_reduce",
        "map_reduce_sync",
        "map_sync",
    ),
    "._otel": ("OtelObserver",),
    "._outcome": ("Attempt", "Outcome", "Results", "Status"),
    "._policies._adaptive": ("AdaptiveLimit",),
    "._policies._breaker": ("CircuitBreaker", "CircuitOpen"),
    "._policies._budget": ("Budget", "BudgetExceeded", "charge"),
    "._policies._group": ("Group",),
    "._policies._hedge": ("Hedge",),
    "._policies._rate": ("RateLimit",),
    "._policies._retry_after": ("RetryAfter",),
    "._progress": ("ProgressObserver",),
    "._queued": ("QueuedObserver",),
    "._refs": ("each", "item", "ref"),
    "._report": ("RunReport",),
    "._retry": ("Retry",),
    "._task": ("Task", "task"),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> _typing.Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _load(module)
    return globals()[name]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _load(module: str) -> None:
    """Import ``module`` and bind every public name it defines here, so that each later
    access is a plain attribute lookup."""
    defined = _importlib.import_module(module, __name__)
    for name in _MODULES[module]:
        obj = getattr(defined, name)
        # Public names say they are forkjoin's (as httpx and anyio do): reprs, docs and
        # pickles show ``forkjoin.Outcome``, not the private module that happens to define it.
        if getattr(obj, "__module__", "").startswith("forkjoin."):
            obj.__module__ = "forkjoin"
        globals()[name] = obj
