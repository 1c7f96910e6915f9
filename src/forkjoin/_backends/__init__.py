"""Where a call runs: the bottom of the call pipeline.

- :mod:`._base` — the protocol a backend implements (:class:`Backend`, :class:`Runner`)
- :mod:`._loop` — the event loop: ``await fn(*args)`` (async callables)
- :mod:`._thread` — a thread pool per run (sync callables)
- :mod:`._process` / :mod:`._pool` — a process pool per run (pebble + cloudpickle):
  CPU-bound calls (the value, and the pool it opens)
- :mod:`._dask` / :mod:`._cluster` — a Dask cluster (an embedded LocalCluster, or one
  given by address or client)
- :mod:`._worker` — what travels to a worker process and runs there around each call

Everything above (admission, policies, retries, the journal, events) stays in the caller's
process and event loop; only the call moves. Backends import the protocol, never the
engine; the process and Dask backends import their libraries only when a run uses them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._dask import DaskBackend
    from ._loop import LoopBackend
    from ._process import ProcessBackend
    from ._thread import ThreadBackend

__all__ = ["KINDS", "DaskBackend", "LoopBackend", "ProcessBackend", "ThreadBackend", "named"]

# Each backend's module is imported when a run first names it (the thread backend brings
# asyncio, the Dask one its validation): importing the package costs nothing.
_MODULES = {
    "LoopBackend": "._loop",
    "ThreadBackend": "._thread",
    "ProcessBackend": "._process",
    "DaskBackend": "._dask",
}
_NAMED: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    if name == "KINDS":
        kinds = tuple(__getattr__(kind) for kind in _MODULES)
        globals()["KINDS"] = kinds
        return kinds
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def named(name: str) -> Any:
    """The backend value a name stands for (one per name: tasks naming it share its
    runner), or None for an unknown name."""
    backend = _NAMED.get(name)
    if backend is None and name in ("loop", "thread", "process", "dask"):
        kind = __getattr__(f"{name.capitalize()}Backend")
        backend = _NAMED[name] = kind()  # InvalidPolicy for "dask" without distributed
    return backend
