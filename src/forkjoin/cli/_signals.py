"""What ``forkjoin run`` and ``forkjoin map`` do on SIGINT (Ctrl-C), SIGTERM and SIGHUP.

The first of them stops the run as Ctrl-C does: asyncio cancels the run's main task, every
task still running ends cancelled (a command gets SIGTERM, then SIGKILL after a grace), a
journal keeps what finished, and the command prints what it has (the partial results and
the report) and exits 128 + that signal's number: 130, 143 or 129. A later one only hurries
the end (the commands still running are killed at once); it never interrupts the printing.

asyncio's own SIGINT handler raises KeyboardInterrupt at the second Ctrl-C, wherever the
loop happens to be, which is how the output used to be lost. So while a run goes on the
handler here has SIGINT: asyncio puts its handler in place when its loop starts (only over
Python's default one), :meth:`Signals.on_run_started` takes SIGINT over from it, and the
first signal is handed to it, so that the run ends exactly as a first Ctrl-C ends it.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from ._guard import hurry

__all__ = ["Signals"]

STOPS = tuple(
    s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None
)


class Signals:
    """The command's handler of SIGINT, SIGTERM and SIGHUP, from ``with`` to its end.

    Before the run (parsing, a spec's setup) the first signal raises KeyboardInterrupt, as
    Ctrl-C does; while it runs (:meth:`starting`, then the run's ``run_started`` event,
    which this object observes) it stops the run; after it (:meth:`ended`) it is only
    noted. :attr:`first` is the first signal received, :attr:`exit_code` 128 + its number.
    """

    def __init__(self) -> None:
        self.first: int | None = None
        self.phase = "before"  # "running" between starting() and ended(), then "after"
        self._asyncio: Any = None  # asyncio's SIGINT handler, once taken over
        self._saved: dict[int, Any] = {}

    @property
    def exit_code(self) -> int | None:
        return None if self.first is None else 128 + self.first

    def __enter__(self) -> Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOPS:
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.first is not None:
            # stopped by a signal, so the process is ending with the status it chose: one
            # more is ignored (ignored, not handled: the interpreter puts the default action
            # back on the signals it handles while it shuts down, and that would kill it)
            for sig in self._saved:
                signal.signal(sig, signal.SIG_IGN)
            self._saved.clear()
            return
        for sig, handler in self._saved.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._saved.clear()

    def starting(self) -> None:
        """The run's event loop is about to start: SIGINT goes back to Python's default
        handler, for asyncio to put its own in place."""
        self.phase = "running"
        if self._saved and self.first is None:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def on_run_started(self, event: Any) -> None:
        """On the run's loop, once it runs: SIGINT comes back here (the first signal is
        handed to asyncio's handler, later ones never reach it)."""
        if not self._saved or self.phase != "running":
            return
        current = signal.getsignal(signal.SIGINT)
        if current is not self._handle:
            if callable(current) and current is not signal.default_int_handler:
                self._asyncio = current
            signal.signal(signal.SIGINT, self._handle)

    def ended(self) -> None:
        """The run is over: a signal from now on is noted, the output is still written."""
        self.phase = "after"
        self._asyncio = None
        if self._saved and signal.getsignal(signal.SIGINT) is not self._handle:
            signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.first is not None:
            hurry()  # a second signal: what still runs is killed now, nothing else changes
            return
        self.first = signum
        if self.phase == "after":
            return
        if self.phase == "running":
            forward = self._asyncio
            if forward is None:  # the loop has not started yet: asyncio's, if in place
                current = signal.getsignal(signal.SIGINT)
                forward = current if current is not self._handle and callable(current) else None
            if forward is not None:
                self._asyncio = None
                forward(signal.SIGINT, frame)  # asyncio cancels the run's main task
                return
        raise KeyboardInterrupt
