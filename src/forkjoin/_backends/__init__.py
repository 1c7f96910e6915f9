"""Where a call runs: the bottom of the call pipeline.

- :mod:`._base` — the protocol a backend implements (:class:`Backend`, :class:`Runner`)
- :mod:`._loop` — the event loop: ``await fn(*args)`` (async callables)
- :mod:`._thread` — a thread pool per run (sync callables)

Everything above (admission, policies, retries, the journal, events) stays in the caller's
process and event loop; only the call moves. Backends import the protocol, never the
engine.
"""

from __future__ import annotations

from typing import Any

from ._loop import LoopBackend
from ._thread import ThreadBackend

__all__ = ["KINDS", "LoopBackend", "ThreadBackend", "named"]

KINDS = (LoopBackend, ThreadBackend)

_LOOP = LoopBackend()
_THREAD = ThreadBackend()
_NAMED: dict[str, Any] = {"loop": _LOOP, "thread": _THREAD}


def named(name: str) -> Any:
    """The backend value a name stands for (one per name: tasks naming it share its
    runner), or None for an unknown name."""
    return _NAMED.get(name)
