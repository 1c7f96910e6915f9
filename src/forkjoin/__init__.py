"""forkjoin: run many independent tasks at once, under policies; get keyed, complete results.

The whole public API is listed here; everything else lives in private modules.
"""

from ._errors import (
    DependencyFailed,
    DuplicateTaskName,
    FanClosed,
    FanError,
    ForkjoinError,
    Interrupted,
    InvalidPolicy,
    TaskCancelled,
    TaskSkipped,
    TaskTimeout,
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
from ._logging import LogObserver
from ._map import OutcomeStream, Values, imap, map, map_reduce
from ._otel import OtelObserver
from ._outcome import Attempt, Outcome, Results, Status
from ._policies._adaptive import AdaptiveLimit
from ._policies._breaker import CircuitBreaker, CircuitOpen
from ._policies._budget import Budget, charge
from ._policies._group import Group
from ._policies._hedge import Hedge
from ._policies._rate import RateLimit
from ._policies._retry_after import RetryAfter
from ._progress import ProgressObserver
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
    "CircuitBreaker",
    "CircuitChanged",
    "CircuitOpen",
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
    "LimitChanged",
    "LogObserver",
    "Observer",
    "OtelObserver",
    "Outcome",
    "OutcomeStream",
    "ProgressObserver",
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
    "TaskQueued",
    "TaskSkipped",
    "TaskStarted",
    "TaskTimeout",
    "Values",
    "__version__",
    "charge",
    "current_fan",
    "each",
    "gather",
    "imap",
    "item",
    "map",
    "map_reduce",
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
