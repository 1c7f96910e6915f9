"""QueuedObserver: a slow observer's events delivered from a thread, in order.

Observers run on the event loop, between the tasks' own steps: one that takes 5 ms per
event made half of a hundred 50 ms tasks miss a 300 ms timeout (measured). Wrapping it in
a QueuedObserver makes telling it an event a queue put on the loop; a thread of its own
delivers the events to it one after another, in the order they happened.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from ._events import HOOKS, Event

__all__ = ["QueuedObserver"]

log = logging.getLogger("forkjoin")


class QueuedObserver:
    """Wraps ``observer`` so its events are delivered from a thread, in order.

    It subscribes to the events ``observer`` subscribes to (its ``on_<event>`` methods, or
    all of them with ``on_event``). When the run finishes, the run waits up to ``drain``
    seconds for the queue to empty, so the observer has heard everything by the time the
    run returns; :meth:`join` waits for it too. The wrapped observer is called from one
    thread only; an exception it raises is logged once and the rest of its events dropped.
    """

    def __init__(self, observer: Any, *, drain: float = 10.0) -> None:
        methods: dict[str, Callable[[Any], None]] = {}
        catch_all = getattr(observer, "on_event", None)
        for hook in HOOKS:
            method = getattr(observer, "on_" + hook, None)
            if not callable(method):
                method = catch_all if callable(catch_all) else None
            if method is not None:
                methods[hook] = method
        if not methods:
            from ._errors import InvalidPolicy

            raise InvalidPolicy(
                f"QueuedObserver: {observer!r} has no on_event(event) or on_<event> method"
            )
        self.observer = observer
        self.drain = drain
        self._methods = methods
        self._queue: queue.SimpleQueue[tuple[Callable[[Any], None], Event] | None] = (
            queue.SimpleQueue()
        )
        self._idle = threading.Event()
        self._idle.set()
        self._pending = 0
        self._lock = threading.Lock()
        self._broken = False
        self._thread: threading.Thread | None = None
        for hook in methods:
            setattr(self, "on_" + hook, self._enqueuer(hook))
        if "run_finished" not in methods:  # still told the run's end, to drain the queue
            self.on_run_finished = lambda event: self.join(self.drain)

    def _enqueuer(self, hook: str) -> Callable[[Event], None]:
        method = self._methods[hook]
        finishing = hook == "run_finished"

        def enqueue(event: Event) -> None:
            self._put(method, event)
            if finishing:
                self.join(self.drain)

        return enqueue

    def _put(self, method: Callable[[Any], None], event: Event) -> None:
        with self._lock:
            self._pending += 1
            self._idle.clear()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._deliver, name="forkjoin-observer", daemon=True
                )
                self._thread.start()
        self._queue.put((method, event))

    def _deliver(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            method, event = item
            if not self._broken:
                try:
                    method(event)
                except Exception:
                    self._broken = True
                    log.exception(
                        "forkjoin observer %r failed on %s; its other events are dropped",
                        self.observer,
                        type(event).__name__,
                    )
            with self._lock:
                self._pending -= 1
                if self._pending == 0:
                    self._idle.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every event so far has been delivered; False on timeout."""
        return self._idle.wait(timeout)

    def __repr__(self) -> str:
        return f"QueuedObserver({self.observer!r})"
