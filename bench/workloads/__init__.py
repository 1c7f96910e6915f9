"""The workloads of the benchmark (issue 3), in order."""

from __future__ import annotations

from . import (
    w1_overhead,
    w2_limited,
    w3_makespan,
    w4_lazy,
    w5_policies,
    w6_blocking,
    w7_rate,
    w8_breaker,
    w9_durable,
    w10_shell,
    w11_shell_makespan,
    w12_call,
    w13_startup,
    w14_cpu,
    w15_dask,
    w16_dag,
    w17_shell_contended,
)
from ._base import Contender, Result, Skip, Workload

ALL: tuple[Workload, ...] = (
    w1_overhead.WORKLOAD,
    w2_limited.WORKLOAD,
    w3_makespan.WORKLOAD,
    w4_lazy.WORKLOAD,
    w5_policies.WORKLOAD,
    w6_blocking.WORKLOAD,
    w7_rate.WORKLOAD,
    w8_breaker.WORKLOAD,
    w9_durable.WORKLOAD,
    w10_shell.WORKLOAD,
    w11_shell_makespan.WORKLOAD,
    w12_call.WORKLOAD,
    w13_startup.WORKLOAD,
    w14_cpu.WORKLOAD,
    w15_dask.WORKLOAD,
    w16_dag.WORKLOAD,
    w17_shell_contended.WORKLOAD,
)


def get(workload_id: int) -> Workload:
    for w in ALL:
        if w.id == workload_id:
            return w
    raise KeyError(f"no workload {workload_id}")


__all__ = ["ALL", "Contender", "Result", "Skip", "Workload", "get"]
