"""Workload 9: durable runs — n trivial tasks with a journal (SQLite, WAL), and a resume.

What a journal adds per task, against the same ``fj.gather`` without one, in each
durability mode; how long a rerun takes that finds every task finished (it calls nothing);
and DBOS Transact's durable steps on SQLite, the peer that checkpoints every step.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ._base import Contender, Result, Skip, Workload, start, stop

DBOS_MAX = 2_000  # a durable step costs milliseconds: more would take minutes


async def trivial(i: int) -> int:
    return i


def _check(results: Any, n: int, what: str, resumed: int = 0) -> None:
    values = [o.value for o in results.values()]
    if len(values) != n or sum(values) != n * (n - 1) // 2:
        raise AssertionError(f"{what}: wrong results ({len(values)} values for {n} tasks)")
    got = sum(1 for o in results.values() if o.resumed)
    if got != resumed:
        raise AssertionError(f"{what}: {got} tasks resumed, expected {resumed}")


async def _gather(n: int, journal: Any, what: str) -> Result:
    import forkjoin as fj

    tasks = {f"t{i}": (trivial, i) for i in range(n)}
    t0 = start()
    results = await fj.gather(tasks, journal=journal)
    dt, cpu = stop(t0)
    _check(results, n, what)
    return {"seconds": dt, "cpu": cpu}


async def fj_plain(n: int, params: dict[str, Any]) -> Result:
    return await _gather(n, None, "fj.gather")


async def fj_batch(n: int, params: dict[str, Any]) -> Result:
    import forkjoin as fj

    d = tempfile.mkdtemp(prefix="fj-bench-")
    try:
        return await _gather(n, fj.Journal(Path(d) / "run.db"), "fj.gather+journal")
    finally:
        shutil.rmtree(d, ignore_errors=True)


async def fj_sync(n: int, params: dict[str, Any]) -> Result:
    import forkjoin as fj

    d = tempfile.mkdtemp(prefix="fj-bench-")
    try:
        journal = fj.Journal(Path(d) / "run.db", durability="sync")
        return await _gather(n, journal, "fj.gather+journal(sync)")
    finally:
        shutil.rmtree(d, ignore_errors=True)


async def fj_resume(n: int, params: dict[str, Any]) -> Result:
    import forkjoin as fj

    d = tempfile.mkdtemp(prefix="fj-bench-")
    try:
        journal = fj.Journal(Path(d) / "run.db")
        tasks = {f"t{i}": (trivial, i) for i in range(n)}
        await fj.gather(tasks, journal=journal)  # the run that finished (not timed)
        tasks = {f"t{i}": (trivial, i) for i in range(n)}
        t0 = start()
        results = await fj.gather(tasks, journal=journal)
        dt, cpu = stop(t0)
        _check(results, n, "fj.gather resumed", resumed=n)
        return {"seconds": dt, "cpu": cpu}
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _dbos_available() -> str | None:
    if importlib.util.find_spec("dbos") is None:
        return "`dbos` is not installed"
    return None


def dbos_steps(n: int, params: dict[str, Any]) -> Result:
    """n DBOS steps in one workflow, each checkpointed in DBOS's SQLite system database."""
    return _dbos(n, resume=False)


def dbos_resume(n: int, params: dict[str, Any]) -> Result:
    """A workflow whose n steps all finished, run again from after its last step
    (``DBOS.fork_workflow``): every step's recorded output is replayed, none is called."""
    return _dbos(n, resume=True)


def _dbos(n: int, resume: bool) -> Result:
    from dbos import DBOS, SetWorkflowID

    d = tempfile.mkdtemp(prefix="dbos-bench-")
    try:
        DBOS(
            config={
                "name": "forkjoin-bench",
                "system_database_url": f"sqlite:///{d}/dbos.sqlite",
                "run_admin_server": False,
            }
        )

        called = [0]

        @DBOS.step()
        def step(i: int) -> int:
            called[0] += 1
            return i

        @DBOS.workflow()
        def workflow(k: int) -> int:
            return sum(step(i) for i in range(k))

        try:
            DBOS.launch()
        except Exception as e:  # pragma: no cover - depends on the installed version
            raise Skip(f"DBOS could not start on SQLite here: {type(e).__name__}: {e}") from e
        try:
            if resume:
                with SetWorkflowID("finished"):
                    workflow(n)  # the run that finished (not timed)
                called[0] = 0
                t0 = start()
                total = DBOS.fork_workflow("finished", n + 1).get_result()
                dt, cpu = stop(t0)
            else:
                t0 = start()
                total = workflow(n)
                dt, cpu = stop(t0)
        finally:
            DBOS.destroy()
        if total != n * (n - 1) // 2:
            raise AssertionError(f"dbos: wrong sum {total} for {n} steps")
        if called[0] != (0 if resume else n):
            raise AssertionError(f"dbos: {called[0]} steps called")
        return {"seconds": dt, "cpu": cpu}
    finally:
        shutil.rmtree(d, ignore_errors=True)


WORKLOAD = Workload(
    id=9,
    title="durable runs",
    description="n trivial async tasks (no limit) with an SQLite journal (batch and sync), "
    "a rerun of n finished tasks that calls nothing, and DBOS Transact durable steps",
    contenders=(
        Contender(
            "fj.gather",
            "fj.gather, no journal (baseline)",
            "asyncio",
            fj_plain,
            is_forkjoin=True,
            uvloop=False,
        ),
        Contender(
            "fj.journal",
            "fj.gather, journal (batch)",
            "asyncio",
            fj_batch,
            is_forkjoin=True,
            uvloop=False,
        ),
        Contender(
            "fj.journal-sync",
            "fj.gather, journal (sync: a commit per task)",
            "asyncio",
            fj_sync,
            is_forkjoin=True,
            uvloop=False,
        ),
        Contender(
            "fj.resume",
            "fj.gather rerun: every task resumed, none called",
            "asyncio",
            fj_resume,
            is_forkjoin=True,
            uvloop=False,
        ),
        Contender(
            "dbos.steps",
            "DBOS Transact: one workflow of n durable steps (SQLite)",
            "sync",
            dbos_steps,
            needs=("dbos",),
            available=_dbos_available,
            max_n=DBOS_MAX,
            uvloop=False,
        ),
        Contender(
            "dbos.resume",
            "DBOS Transact: that workflow forked after its last step (all replayed)",
            "sync",
            dbos_resume,
            needs=("dbos",),
            available=_dbos_available,
            max_n=DBOS_MAX,
            uvloop=False,
        ),
    ),
    sizes={"quick": (200,), "full": (2_000, 100_000)},
    baseline="fj.gather",
    repeats={"quick": 1, "full": 3},
    note="A journal's cost is I/O to the page cache (SQLite in WAL mode, synchronous=NORMAL: "
    "no fsync per commit), so this workload is judged on wall time. DBOS Transact runs "
    f"up to {DBOS_MAX:,} steps (each step costs milliseconds); its per-task figure is "
    "per durable step, and its resume is `fork_workflow` of a finished workflow from after "
    "its last step (every step's output replayed from SQLite, none called).",
)
