"""Validation: one rule per field, shared by the run options, tasks and policy values.

A value is valid or invalid wherever it is given (``fj.task(timeout=...)``,
``fj.Group(timeout=...)``, ``fj.gather(timeout=...)``): each raises InvalidPolicy naming
the field. The rule of a Retry setting lives with Retry (``_retry.check_retry``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ._errors import InvalidPolicy

__all__ = [
    "check_amount",
    "check_backend",
    "check_count",
    "check_group_map",
    "check_group_name",
    "check_instance",
    "check_limit",
    "check_seconds",
    "integer",
    "number",
]


def check_limit(where: str, value: Any) -> int | None:
    """A concurrency limit: an int >= 1, or None for no limit."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidPolicy(f"{where}: expected a positive integer or None, got {value!r}")
    if value < 1:
        raise InvalidPolicy(f"{where}: must be >= 1, got {value!r}")
    return value


def check_seconds(where: str, value: Any) -> float | None:
    """A duration (timeout, deadline): finite seconds > 0, or None for none."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise InvalidPolicy(f"{where}: expected seconds > 0, got {value!r}")
    if value <= 0:
        raise InvalidPolicy(f"{where}: must be > 0 seconds, got {value!r}")
    if math.isinf(value):
        raise InvalidPolicy(f"{where}: must be finite (None means no limit), got {value!r}")
    return float(value)


def check_amount(where: str, value: Any) -> float | None:
    """A cost or token estimate: a finite number >= 0, or None."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not value >= 0
        or math.isinf(value)
    ):
        raise InvalidPolicy(f"{where}: expected a finite number >= 0, got {value!r}")
    return value


def check_count(where: str, value: Any) -> int | None:
    """A count such as ``quorum`` or ``max_failures``: an int >= 1, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidPolicy(f"{where}: expected an integer >= 1, got {value!r}")
    return value


def check_instance(where: str, value: Any, kind: type) -> Any:
    """``value`` is None or an instance of ``kind`` (a policy value)."""
    if value is not None and not isinstance(value, kind):
        raise InvalidPolicy(f"{where}: expected fj.{kind.__name__}(...), got {value!r}")
    return value


def check_group_map(where: str, value: Any, kind: type) -> dict[str, Any]:
    """``{group name: kind}``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidPolicy(f"{where}: expected a mapping of group -> fj.{kind.__name__}")
    out: dict[str, Any] = {}
    for g, v in value.items():
        if not isinstance(g, str):
            raise InvalidPolicy(f"{where}: group names must be strings, got {g!r}")
        if not isinstance(v, kind):
            raise InvalidPolicy(f"{where}[{g!r}]: expected fj.{kind.__name__}(...), got {v!r}")
        out[g] = v
    return out


def check_group_name(where: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise InvalidPolicy(f"{where}: expected a string, got {value!r}")
    return value


def check_backend(where: str, value: Any) -> Any:
    """Where calls run: ``"loop"``, ``"thread"``, ``"process"``, ``"dask"``, a
    ProcessBackend or a DaskBackend, or None (inherit). A name becomes its backend value."""
    if value is None:
        return None
    from ._backends import KINDS, named

    if isinstance(value, KINDS):
        return value
    if isinstance(value, str):
        try:
            backend = named(value)
        except InvalidPolicy as e:
            raise InvalidPolicy(f"{where}: {e}") from None
        if backend is not None:
            return backend
    raise InvalidPolicy(
        f'{where}: expected "loop", "thread", "process", "dask", fj.ProcessBackend(...) '
        f"or fj.DaskBackend(...), got {value!r}"
    )


def number(owner: str, field: str, value: Any, *, minimum: float, strict: bool) -> float:
    """``value`` as a float, or InvalidPolicy naming ``owner.field``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise InvalidPolicy(f"{owner}.{field}: expected a number, got {value!r}")
    if math.isinf(value):
        raise InvalidPolicy(f"{owner}.{field}: must be finite, got {value!r}")
    if (strict and value <= minimum) or (not strict and value < minimum):
        sign = ">" if strict else ">="
        raise InvalidPolicy(f"{owner}.{field}: must be {sign} {minimum:g}, got {value!r}")
    return float(value)


def integer(owner: str, field: str, value: Any, *, minimum: int) -> int:
    """``value`` as an int >= ``minimum``, or InvalidPolicy naming ``owner.field``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidPolicy(f"{owner}.{field}: expected an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise InvalidPolicy(f"{owner}.{field}: must be >= {minimum}, got {value!r}")
    return value
