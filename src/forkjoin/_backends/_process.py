"""The process backend's value: ``fj.ProcessBackend``. Its pool (:mod:`._pool`), pebble
and cloudpickle are imported when a run first opens it, never at ``import forkjoin``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Final

from .._errors import InvalidPolicy
from .._validate import integer

if TYPE_CHECKING:
    from ._pool import ProcessRunner

__all__ = ["START_METHODS", "ProcessBackend"]

START_METHODS: Final = ("fork", "spawn", "forkserver")


@dataclass(frozen=True, slots=True)
class ProcessBackend:
    """Run calls in a pool of worker processes of the run's own: for CPU-bound work.

    ``workers``: how many processes (default: one per core); ``start_method``: how they are
    made, ``"fork"`` (the default where the platform has it: fast, and a worker replaced
    after a kill is ready at once), ``"spawn"`` or ``"forkserver"``. Functions and
    arguments travel with cloudpickle; a call the run stops is stopped by killing its
    worker, and a fresh worker takes its place. ``backend="process"`` is
    ``ProcessBackend()``.
    """

    workers: int | None = None
    start_method: str | None = None

    name: ClassVar[str] = "process"

    def __post_init__(self) -> None:
        if self.workers is not None:
            integer("ProcessBackend", "workers", self.workers, minimum=1)
        if self.start_method is not None and self.start_method not in START_METHODS:
            raise InvalidPolicy(
                "ProcessBackend.start_method: expected 'fork', 'spawn' or 'forkserver', "
                f"got {self.start_method!r}"
            )

    def open(self, run_name: str, limit: int | None) -> ProcessRunner:
        from ._pool import ProcessRunner

        return ProcessRunner(self)
