from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ._cli import gone


@pytest.fixture
def commands() -> Iterator[list[Any]]:
    """The commands (psutil.Process) a test saw its CLI start: each still running at the
    end is killed by pid, so that a failing test leaves nothing behind either."""
    seen: list[Any] = []
    yield seen
    gone(seen)
