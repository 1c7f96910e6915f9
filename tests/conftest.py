from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from forkjoin.testing import run as run_virtual

T = TypeVar("T")


@pytest.fixture
def vrun() -> Any:
    """Run a coroutine on a virtual-clock loop: timers jump, nothing really sleeps."""

    def _run(coro: Coroutine[Any, Any, T]) -> T:
        return run_virtual(coro)

    return _run


def no_orphans() -> None:
    """Assert that only the calling task is left on the running loop."""
    current = asyncio.current_task()
    others = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert others == [], f"tasks left running: {others}"


class Children:
    """The child processes a test starts: each must be gone when the test ends."""

    def __init__(self) -> None:
        import psutil

        self._me = psutil.Process()
        self.before = {p.pid: p for p in self._me.children(recursive=True)}
        self.seen: dict[int, Any] = {}
        self.allowed: set[int] = set()

    def look(self) -> list[Any]:
        """The children started since the test began, alive now (and remembered)."""
        now = [
            p
            for p in self._me.children(recursive=True)
            if p.pid not in self.before and p.pid not in self.allowed and not _helper(p)
        ]
        for p in now:
            self.seen.setdefault(p.pid, p)
        return now

    def allow(self, pids: Any) -> None:
        """Processes that are not the test's: the session cluster's workers, which its
        nanny starts again when a test kills one."""
        self.allowed.update(pids)
        for pid in pids:
            self.seen.pop(pid, None)

    def pids(self) -> set[int]:
        return set(self.seen)

    def left(self) -> list[Any]:
        """Every child seen (or started since) that is still running, after giving the
        kernel a moment to finish the ones already killed (a bound, not a wait for luck:
        nothing here is expected to be running at all)."""
        import psutil

        self.look()
        alive = [p for p in self.seen.values() if _running(p)]
        if alive:
            _, alive = psutil.wait_procs(alive, timeout=30)
        return [p for p in alive if _running(p)]


def _helper(p: Any) -> bool:
    """multiprocessing's resource tracker: one per interpreter, started by the first
    spawned process, ending with the interpreter."""
    import psutil

    try:
        return "multiprocessing.resource_tracker" in " ".join(p.cmdline())
    except psutil.Error:
        return False


def _running(p: Any) -> bool:
    import psutil

    try:
        return bool(p.is_running() and p.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def children() -> Any:
    """Fails the test if a process it started (directly or not) is still running at its
    end, by pid."""
    watch = Children()
    yield watch
    left = watch.left()
    assert not left, f"processes left running: {[(p.pid, p.name()) for p in left]}"


@pytest.fixture(scope="session")
def dask_cluster() -> Any:
    """A real distributed.LocalCluster of two worker processes for the whole session,
    closed at its end. Its scheduler gives up on a call at its worker's first death, as
    forkjoin's embedded cluster does."""
    import logging

    import dask
    import distributed

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
            silence_logs=logging.CRITICAL,
        )
    try:
        yield cluster
    finally:
        cluster.close()
