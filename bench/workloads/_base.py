"""The vocabulary of the harness: a Workload is a list of Contenders run at some sizes.

A contender's ``fn(n, params)`` does the work once and returns a dict with at least
``seconds`` (only the timed region: the fan-out itself, not interpreter start-up or imports).
It checks its own results after the timed region and raises if they are wrong, so a
contender that silently skips work cannot look fast.
"""

from __future__ import annotations

import gc
import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Result = dict[str, Any]


class Skip(Exception):
    """Raised by a contender (or its ``available`` check) that cannot run here."""


@dataclass(frozen=True)
class Contender:
    key: str  # stable id, used on the command line (--only) and in the JSON
    label: str  # what the table shows
    runtime: str  # "asyncio" (uvloop applies), "trio", or "sync" (makes its own loop, if any)
    fn: Callable[..., Any]
    needs: tuple[str, ...] = ()  # importable modules it needs; missing -> skipped, with a note
    preload: tuple[str, ...] = ()  # imported before the RSS mark, so imports are not "work"
    available: Callable[[], str | None] | None = None  # a reason to skip, or None
    max_n: int | None = None  # full mode: larger sizes are not run (too slow or too big)
    uvloop: bool = True  # also run on uvloop (asyncio runtime only)
    uvloop_max_n: int | None = None  # full mode: the uvloop variant only up to this size
    is_forkjoin: bool = False

    def modules(self) -> tuple[str, ...]:
        """What the child imports before it measures anything."""
        return (*self.needs, *self.preload, *(("forkjoin",) if self.is_forkjoin else ()))

    def skip_reason(self) -> str | None:
        for mod in self.needs:
            if importlib.util.find_spec(mod) is None:
                return f"`{mod}` is not installed"
        if self.available is not None:
            return self.available()
        return None


@dataclass(frozen=True)
class Workload:
    id: int
    title: str
    description: str
    contenders: tuple[Contender, ...]
    sizes: dict[str, tuple[int, ...]]  # mode -> sizes
    baseline: str  # key of the contender every figure is divided by, or "ideal"
    unit: str = "us"  # "us": µs per task; "s": seconds for the whole batch (makespan)
    ideal: Callable[[int], float] | None = None  # seconds, for unit "s"
    repeats: dict[str, int] = field(default_factory=lambda: {"quick": 1, "full": 3})
    params: dict[str, Any] = field(default_factory=dict)
    uvloop_sizes: dict[str, tuple[int, ...]] | None = None  # sizes also run on uvloop
    note: str = ""
    # CPU-bound (no sleeps, no threads): the floors judge CPU time, which other processes
    # on a shared machine disturb far less than wall time (both are reported)
    cpu_bound: bool = False
    available: Callable[[], str | None] | None = None  # a reason to skip the whole workload
    # contenders also run on an asyncio loop whose selector is select() (loop "select"):
    # its timeouts have microsecond resolution where epoll's are rounded up to the next
    # millisecond, which is most of a makespan's excess on a slow machine (workload 3)
    select_loop: tuple[str, ...] = ()
    # the baseline of each row, when it is not one contender for all (workload 10: xargs
    # with the same command and N); None: ``baseline`` for every row
    baseline_of: Callable[[str], str] | None = None

    def baseline_for(self, key: str) -> str:
        """The key of the contender that the row of ``key`` is divided by."""
        return self.baseline_of(key) if self.baseline_of is not None else self.baseline

    def contender(self, key: str) -> Contender:
        for c in self.contenders:
            if c.key == key:
                return c
        raise KeyError(f"workload {self.id} has no contender {key!r}")


def check_sum(values: Any, n: int, what: str) -> None:
    """Raise unless ``values`` are exactly 0..n-1 in some order (summed, counted)."""
    values = list(values)
    if len(values) != n or sum(values) != n * (n - 1) // 2:
        raise AssertionError(f"{what}: wrong results ({len(values)} values for {n} items)")


_cpu0 = 0.0


def start() -> float:
    """Begin a timed region: the same clean heap for everyone (the region pays its own GC)."""
    global _cpu0
    gc.collect()
    _cpu0 = time.process_time()
    return time.perf_counter()


def stop(t0: float) -> tuple[float, float]:
    """End a timed region: (wall seconds, CPU seconds of this process).

    CPU time counts only the cycles this process got: on a shared machine, when other
    processes take the CPU away, it moves much less than wall time.
    """
    return time.perf_counter() - t0, time.process_time() - _cpu0
