"""forkjoin: run many independent tasks at once, under policies; get keyed, complete results.

The whole public API is listed here; everything else lives in private modules.
"""

from ._backends import DaskBackend, ProcessBackend
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
from ._version import __version__

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

# Public names say they are forkjoin's (as httpx and anyio do): reprs, docs and pickles
# show ``forkjoin.Outcome``, not the private module that happens to define it.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("forkjoin."):
        _obj.__module__ = "forkjoin"
del _name, _obj
