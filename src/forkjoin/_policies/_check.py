"""Validation helpers shared by the policy value classes: one clear InvalidPolicy each."""

from __future__ import annotations

import math
from typing import Any

from .._errors import InvalidPolicy


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
