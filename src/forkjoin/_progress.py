"""Live progress: a rich display of a run, drawn from its events (an observer).

``progress=True`` on gather/Fan/run/map/imap/map_reduce attaches one. It draws on stderr
and only on a terminal: when stderr is not a terminal nothing is attached at all (so
nothing is drawn and the engine builds no events for it), and stdout is never redirected,
so piped JSON stays clean. ``ProgressObserver(force=True)`` draws anyway: on something
that is not a terminal (a CI log, a file) as a plain line of figures every second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._events import (
    AttemptFailed,
    AttemptStarted,
    RunFinished,
    RunStarted,
    TaskFinished,
    TaskQueued,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live

__all__ = ["ProgressObserver", "progress_observer", "with_progress"]


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


class ProgressObserver:
    """A rich live display of one run: done/total, running, failed, retrying, rate, ETA, cost.

    Attach it with ``observers=[fj.ProgressObserver()]`` or simply ``progress=True``.
    ``console`` defaults to rich's console on stderr; nothing is drawn when it is not a
    terminal (:attr:`enabled` is False). ``total`` is the number of tasks when known in
    advance (``map`` over a list); otherwise it grows as tasks are queued. ``get_time`` and
    ``auto_refresh=False`` make the display deterministic for tests. With ``force`` it is
    drawn when the console is not a terminal too, as one plain line of figures at most
    every ``every`` seconds and one at the end. One observer follows one run at a time.
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        total: int | None = None,
        description: str = "forkjoin",
        transient: bool = False,
        auto_refresh: bool = True,
        refresh_per_second: float = 8,
        get_time: Callable[[], float] | None = None,
        force: bool = False,
        every: float = 1.0,
    ) -> None:
        if console is None:
            from rich.console import Console

            console = Console(stderr=True)
        self.console = console
        self.plain = not console.is_terminal  # lines of text, not a live display
        self.enabled = bool(console.is_terminal) or force
        self._every = every
        self._total = total
        self._description = description
        self._transient = transient
        self._auto_refresh = auto_refresh
        self._refresh_per_second = refresh_per_second
        self._get_time = get_time or time.monotonic
        self._live: Live | None = None
        self._reset()

    def _reset(self) -> None:
        self.queued = 0
        self.started = 0
        self.done = 0
        self.failed = 0
        self.ok = 0
        self.other = 0  # skipped or cancelled
        self.cost = 0.0
        self.waiting: set[str] = set()  # tasks between a failed call and their retry
        self.running = 0
        self._t0 = 0.0
        self._last_draw = float("-inf")
        self._running = False

    # -- the observer --------------------------------------------------------------------

    def on_attempt_started(self, event: AttemptStarted) -> None:
        if not self.enabled:
            return
        if event.attempt == 1:
            self.started += 1
            self.running += 1
        elif event.name in self.waiting:
            self.waiting.discard(event.name)
            self.running += 1
        self._draw()

    def on_task_finished(self, event: TaskFinished) -> None:
        if not self.enabled:
            return
        o = event.outcome
        self.done += 1
        if o.started is not None:
            if o.name in self.waiting:
                self.waiting.discard(o.name)
            else:
                self.running -= 1
        status = o.status.value
        if status == "ok":
            self.ok += 1
        elif status in ("failed", "timed_out"):
            self.failed += 1
        else:
            self.other += 1
        if o.cost is not None:
            self.cost += o.cost
        self._draw()

    def on_task_queued(self, event: TaskQueued) -> None:
        if self.enabled:
            self.queued += 1
            self._draw()

    def on_attempt_failed(self, event: AttemptFailed) -> None:
        if not self.enabled:
            return
        if event.delay is not None:
            self.waiting.add(event.name)
            self.running -= 1
        self._draw()

    def on_run_started(self, event: RunStarted) -> None:
        if self.enabled:
            self._start()

    def on_run_finished(self, event: RunFinished) -> None:
        if self.enabled:
            self._stop()

    # -- drawing -------------------------------------------------------------------------

    def _start(self) -> None:
        self._stop()
        self._reset()
        self._t0 = self._get_time()
        if self.plain:
            self._running = True
            return
        from rich.live import Live

        self._live = Live(
            get_renderable=self._renderable,
            console=self.console,
            auto_refresh=self._auto_refresh,
            refresh_per_second=self._refresh_per_second,
            transient=self._transient,
            # never move the program's own output: stdout may be piped JSON
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start()
        self._draw(force=True)

    def _stop(self) -> None:
        if self.plain:
            if self._running:
                self._running = False
                self._print_line()
            return
        live = self._live
        if live is None:
            return
        self._draw(force=True)
        live.stop()
        self._live = None

    def _draw(self, force: bool = False) -> None:
        if self.plain:
            if self._running:
                now = self._get_time()
                if force or now - self._last_draw >= self._every:
                    self._last_draw = now
                    self._print_line()
            return
        live = self._live
        if live is None or self._auto_refresh:
            return  # with auto_refresh, rich's own thread redraws
        now = self._get_time()
        if force or now - self._last_draw >= 1 / self._refresh_per_second:
            self._last_draw = now
            live.refresh()

    def _print_line(self) -> None:
        self.console.print(f"{self._description}: {self.stats()}", highlight=False, soft_wrap=True)

    def _current_total(self) -> int | None:
        if self._total is not None:
            return self._total
        return max(self.queued, self.started) or None

    def lines(self) -> tuple[str, str]:
        """The two lines of figures the display shows: progress, then activity."""
        elapsed = self._get_time() - self._t0
        total = self._current_total()
        rate = self.done / elapsed if elapsed > 0 else 0.0
        first = f"{self.done}/{total if total else '?'} done"
        if total and rate > 0 and self.done < total:
            first += f" · ETA {_clock((total - self.done) / rate)}"
        else:
            first += f" · {_clock(elapsed)} elapsed"
        parts = [f"{self.running} running"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.waiting:
            parts.append(f"{len(self.waiting)} retrying")
        if self.other:
            parts.append(f"{self.other} skipped/cancelled")
        parts.append(f"{rate:.1f}/s")
        if self.cost:
            parts.append(f"${self.cost:.4f}")
        return first, " · ".join(parts)

    def stats(self) -> str:
        """:meth:`lines` as one line of text."""
        return " · ".join(self.lines())

    def _renderable(self) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        first, second = self.lines()
        total = self._current_total()
        grid = Table.grid(padding=(0, 1))
        grid.add_row(
            Text(self._description, style="bold"),
            ProgressBar(
                total=total,
                completed=self.done,
                width=24,
                animation_time=self._get_time(),
            ),
            Text(first),
        )
        return Group(grid, Text("  " + second, style="dim"))


def progress_observer(progress: Any, total: int | None = None) -> Any | None:
    """What ``progress=`` on a run attaches: None when off or when stderr is no terminal.

    ``progress`` is True/False or an observer to use as it is (e.g. a configured
    :class:`ProgressObserver`).
    """
    if not progress:
        return None
    if progress is True:
        obs = ProgressObserver(total=total)
        return obs if obs.enabled else None
    from ._events import HOOKS

    if not callable(getattr(progress, "on_event", None)) and not any(
        callable(getattr(progress, "on_" + hook, None)) for hook in HOOKS
    ):
        from ._errors import InvalidPolicy

        raise InvalidPolicy(f"progress: expected True, False or an observer, got {progress!r}")
    return progress


def with_progress(observers: Any, progress: Any, total: int | None = None) -> tuple[Any, ...]:
    """``observers`` plus the progress display ``progress=`` asks for (if one is drawn)."""
    obs = tuple(observers)
    extra = progress_observer(progress, total)
    return obs if extra is None else (*obs, extra)
