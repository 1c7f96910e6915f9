"""RunReport: what ran, how long, how concurrently, and what it cost."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._outcome import Results

__all__ = ["RunReport"]

SCHEMA_VERSION = 1


def _peak_concurrency(intervals: list[tuple[float, float]]) -> int:
    # sweep over start/end points; an end at the same instant as a start frees first
    points: list[tuple[float, int]] = []
    for s, e in intervals:
        points.append((s, 1))
        points.append((e, -1))
    points.sort()
    peak = cur = 0
    for _, d in points:
        cur += d
        if cur > peak:
            peak = cur
    return peak


@dataclass(frozen=True, slots=True)
class RunReport:
    """Summary of one run.

    ``total_duration`` is the sum of task durations — what running them one after another
    would have taken; ``speedup`` is ``total_duration / wall``.
    """

    wall: float
    total_duration: float
    speedup: float
    peak_concurrency: int
    mean_concurrency: float
    tasks: int
    counts: dict[str, int]
    reasons: dict[str, int]
    attempts: int
    retries: int
    cost: float
    slowest: list[tuple[str, float]] = field(default_factory=list)
    started_at: float = 0.0
    limit: int | None = None

    @classmethod
    def from_results(cls, results: Results) -> RunReport:
        info = results._info
        intervals: list[tuple[float, float]] = []
        counts: dict[str, int] = {}
        reasons: dict[str, int] = {}
        total = 0.0
        attempts = retries = 0
        cost = 0.0
        durations: list[tuple[str, float]] = []
        for name, o in results.items():
            counts[o.status.value] = counts.get(o.status.value, 0) + 1
            if o.reason:
                reasons[o.reason] = reasons.get(o.reason, 0) + 1
            attempts += o.attempts
            retries += max(0, o.attempts - 1)
            if o.cost is not None:
                cost += o.cost
            if o.started is not None and o.ended is not None:
                intervals.append((o.started, o.ended))
                d = o.ended - o.started
                total += d
                durations.append((name, d))
        if info is not None:
            wall = info.wall
        elif intervals:
            wall = max(e for _, e in intervals) - min(s for s, _ in intervals)
        else:
            wall = 0.0
        durations.sort(key=lambda nd: nd[1], reverse=True)
        return cls(
            wall=wall,
            total_duration=total,
            speedup=(total / wall) if wall > 0 else 0.0,
            peak_concurrency=_peak_concurrency(intervals),
            mean_concurrency=(total / wall) if wall > 0 else 0.0,
            tasks=len(results),
            counts=counts,
            reasons=reasons,
            attempts=attempts,
            retries=retries,
            cost=cost,
            slowest=durations[:5],
            started_at=info.started_at if info is not None else 0.0,
            limit=info.limit if info is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (schema ``version`` 1)."""
        return {
            "version": SCHEMA_VERSION,
            "started_at": datetime.fromtimestamp(self.started_at, UTC).isoformat()
            if self.started_at
            else None,
            "wall": self.wall,
            "total_duration": self.total_duration,
            "speedup": self.speedup,
            "peak_concurrency": self.peak_concurrency,
            "mean_concurrency": self.mean_concurrency,
            "limit": self.limit,
            "tasks": self.tasks,
            "counts": dict(self.counts),
            "reasons": dict(self.reasons),
            "attempts": self.attempts,
            "retries": self.retries,
            "cost": self.cost,
            "slowest": [{"name": n, "duration": d} for n, d in self.slowest],
        }

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), **kwargs)

    def __str__(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())) or "none"
        lines = [
            f"tasks        {self.tasks} ({counts})",
            f"wall         {self.wall:.3f}s",
            f"sequential   {self.total_duration:.3f}s (sum of task durations)",
            f"speedup      {self.speedup:.2f}x",
            f"concurrency  peak {self.peak_concurrency}, mean {self.mean_concurrency:.2f}",
            f"attempts     {self.attempts} ({self.retries} retries)",
        ]
        if self.cost:
            lines.append(f"cost         ${self.cost:.4f} (sequential would cost the same)")
        if self.reasons:
            lines.append(
                "reasons      " + ", ".join(f"{k} {v}" for k, v in sorted(self.reasons.items()))
            )
        if self.slowest:
            name, d = self.slowest[0]
            lines.append(f"slowest      {name} ({d:.3f}s)")
        return "\n".join(lines)
