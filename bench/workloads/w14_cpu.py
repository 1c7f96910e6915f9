"""Workload 14: CPU-bound work — n calls of about 20 ms of pure-Python arithmetic on every
core: ``backend="process"`` against ``backend="thread"`` (which the GIL serialises),
``concurrent.futures.ProcessPoolExecutor`` and joblib, with the same number of workers.

Each contender's time includes making its pool (and stopping it): what a run costs.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from ._base import Contender, Result, Workload, start, stop

WORKERS = 2
ITERATIONS = 250_000  # about 20 ms of CPU on this machine


def burn(i: int) -> int:
    s = 0
    for k in range(ITERATIONS):
        s += k * k % 7
    return i + s * 0


def _check(values: Any, n: int, what: str) -> None:
    if sorted(values) != list(range(n)):
        raise AssertionError(f"{what}: wrong results")


def ppe(n: int, params: dict[str, Any]) -> Result:
    import multiprocessing

    t0 = start()
    ctx = multiprocessing.get_context("fork")  # as the process backend's default
    with ProcessPoolExecutor(max_workers=WORKERS, mp_context=ctx) as ex:
        futures = [ex.submit(burn, i) for i in range(n)]
        out = [f.result() for f in as_completed(futures)]
    dt, cpu = stop(t0)
    _check(out, n, "ProcessPoolExecutor")
    return {"seconds": dt, "cpu": cpu}


def joblib_parallel(n: int, params: dict[str, Any]) -> Result:
    from joblib import Parallel, delayed

    t0 = start()
    out = Parallel(n_jobs=WORKERS)(delayed(burn)(i) for i in range(n))
    dt, cpu = stop(t0)
    _check(out, n, "joblib")
    return {"seconds": dt, "cpu": cpu}


def _fj(backend: Any) -> Any:
    def run(n: int, params: dict[str, Any]) -> Result:
        import forkjoin as fj

        t0 = start()
        results = fj.run({str(i): (burn, i) for i in range(n)}, backend=backend)
        dt, cpu = stop(t0)
        _check((o.value for o in results.values()), n, f"fj.run(backend={backend!r})")
        out: Result = {"seconds": dt, "cpu": cpu}
        info = results.report.options.get("backends", {}).get("process")
        if info:
            out["pool_start"] = info["started_in"]
        return out

    return run


def _backend() -> Any:
    import forkjoin as fj

    return fj.ProcessBackend(workers=WORKERS)


def fj_process(n: int, params: dict[str, Any]) -> Result:
    return _fj(_backend())(n, params)


def fj_thread(n: int, params: dict[str, Any]) -> Result:
    return _fj("thread")(n, params)


def _cores() -> str | None:
    return None if (os.cpu_count() or 1) >= WORKERS else f"needs {WORKERS} cores"


WORKLOAD = Workload(
    id=14,
    title="CPU-bound work",
    description=f"n calls of about 20 ms of pure-Python arithmetic, {WORKERS} workers "
    f"(ideal n × 20 ms / {WORKERS}); every contender's time includes making and stopping "
    "its pool",
    contenders=(
        Contender("ppe", f"ProcessPoolExecutor({WORKERS}).submit", "sync", ppe),
        Contender(
            "joblib",
            f"joblib Parallel(n_jobs={WORKERS}) (loky)",
            "sync",
            joblib_parallel,
            needs=("joblib",),
        ),
        Contender(
            "fj.process",
            f"fj.run(backend=ProcessBackend(workers={WORKERS}))",
            "sync",
            fj_process,
            is_forkjoin=True,
        ),
        Contender("fj.thread", 'fj.run(backend="thread")', "sync", fj_thread, is_forkjoin=True),
    ),
    sizes={"quick": (20,), "full": (200,)},
    baseline="ppe",
    unit="s",
    ideal=lambda n: n * 0.020 / WORKERS,
    repeats={"quick": 1, "full": 3},
    available=_cores,
    note="Wall time (the work is in the workers, not in the timed process). The thread "
    "backend runs the calls one at a time: the GIL.",
)
