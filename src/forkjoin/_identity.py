"""The running task's identity, for :func:`idempotency_key`, at no cost to runs that never ask.

Setting a context variable for every task would be paid by every task of every run. The
frames that make a task's call know which task it is: each registers its code here with a
reader of its locals, and :func:`idempotency_key` walks up from its caller to the first
such frame. A call is made in the frame of the engine's driver, a map worker, a hedge's
gate or a worker thread's call, so that frame is found from anywhere in the task's own
code (a retry's later attempts and a hedge's duplicates included).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import CodeType
from typing import Any

__all__ = ["idempotency_key", "register_frame"]

# code -> reader(frame locals) -> (engine, task name, fn, args)
Reader = Callable[[dict[str, Any]], tuple[Any, str, Any, tuple[Any, ...]]]
_READERS: dict[CodeType, Reader] = {}


def register_frame(code: CodeType, reader: Reader) -> None:
    """Frames running ``code`` make a task's call; ``reader`` tells which, from their locals."""
    _READERS[code] = reader


def idempotency_key() -> str:
    """A key for the running task's side effects: the same on every attempt and hedge of
    the task and, with a journal, in every resumed run (the journal run's id and the task's
    name or index and fingerprint); different for other tasks and other journals.

    Pass it to the service you call (e.g. an ``Idempotency-Key`` header) so that a call
    repeated after a crash is recognised. Call it in the task's own code, not in a thread
    or an asyncio Task the task starts itself.
    """
    readers = _READERS
    frame = sys._getframe(1)
    while frame is not None:
        reader = readers.get(frame.f_code)
        if reader is not None:
            engine, name, fn, args = reader(frame.f_locals)
            if engine is not None:
                key: str = engine.task_key(name, fn, args)
                return key
        frame = frame.f_back  # type: ignore[assignment]
    raise RuntimeError(
        "fj.idempotency_key() is only available inside a task run by forkjoin (in its own "
        "code, not in a thread or an asyncio Task it starts)"
    )
