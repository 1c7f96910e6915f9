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

from typing import Any

from ._dask import DaskBackend
from ._loop import LoopBackend
from ._process import ProcessBackend
from ._thread import ThreadBackend

__all__ = ["KINDS", "DaskBackend", "LoopBackend", "ProcessBackend", "ThreadBackend", "named"]

KINDS = (LoopBackend, ThreadBackend, ProcessBackend, DaskBackend)

_LOOP = LoopBackend()
_THREAD = ThreadBackend()
_NAMED: dict[str, Any] = {"loop": _LOOP, "thread": _THREAD}


def named(name: str) -> Any:
    """The backend value a name stands for (one per name: tasks naming it share its
    runner), or None for an unknown name."""
    backend = _NAMED.get(name)
    if backend is None and name == "process":
        backend = _NAMED[name] = ProcessBackend()
    elif backend is None and name == "dask":
        backend = _NAMED[name] = DaskBackend()  # InvalidPolicy without distributed
    return backend
