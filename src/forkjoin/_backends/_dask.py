"""The Dask backend's value: ``fj.DaskBackend``. Its runner (:mod:`._cluster`) and Dask
are imported when a run first opens it, never at ``import forkjoin``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .._errors import InvalidPolicy
from .._validate import check_seconds, integer

if TYPE_CHECKING:
    from ._cluster import DaskRunner

__all__ = ["DaskBackend"]


@dataclass(frozen=True, slots=True)
class DaskBackend:
    """Run calls on a Dask cluster.

    With no ``address`` and no ``client``, a ``distributed.LocalCluster`` is started for the
    run (``workers`` processes, default one per core, each with ``threads`` threads,
    default 1) and closed when the run ends — the embedded default, which needs the main
    module guarded by ``if __name__ == "__main__":`` (its workers are spawned).
    ``address="tcp://host:8786"`` connects to a running scheduler (forkjoin must be
    installed on its workers); ``client=`` uses the caller's ``distributed.Client``.
    ``window``: most calls submitted at once (default: four per thread of the cluster, at
    least 32);
    ``connect_timeout``: seconds to reach a scheduler. ``backend="dask"`` is
    ``DaskBackend()``.
    """

    address: str | None = None
    client: Any = None
    workers: int | None = None
    threads: int | None = None
    window: int | None = None
    connect_timeout: float = 10.0

    name: ClassVar[str] = "dask"

    def __post_init__(self) -> None:
        import importlib.util  # not at `import forkjoin`: only a Dask run needs it

        if importlib.util.find_spec("distributed") is None:
            raise InvalidPolicy(
                "DaskBackend: Dask distributed is not installed: pip install 'forkjoin[dask]'"
            )
        if self.address is not None and (not isinstance(self.address, str) or not self.address):
            raise InvalidPolicy(
                f"DaskBackend.address: expected a scheduler address such as "
                f"'tcp://host:8786', got {self.address!r}"
            )
        if self.client is not None:
            if self.address is not None:
                raise InvalidPolicy("DaskBackend: give address=... or client=..., not both")
            if not callable(getattr(self.client, "submit", None)):
                raise InvalidPolicy(
                    f"DaskBackend.client: expected a distributed.Client, got {self.client!r}"
                )
        if (self.workers is not None or self.threads is not None) and (
            self.address is not None or self.client is not None
        ):
            raise InvalidPolicy(
                "DaskBackend: workers= and threads= size the cluster forkjoin starts; "
                "a cluster given by address or client has its own"
            )
        for field in ("workers", "threads", "window"):
            value = getattr(self, field)
            if value is not None:
                integer("DaskBackend", field, value, minimum=1)
        check_seconds("DaskBackend.connect_timeout", self.connect_timeout)

    def open(self, run_name: str, limit: int | None) -> DaskRunner:
        from ._cluster import DaskRunner

        return DaskRunner(self, limit)
