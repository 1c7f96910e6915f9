"""What every command shares and nothing heavy: exit codes, usage and spec errors, and
the parsing of durations and rates (the spec model wraps the same rules for pydantic).

This module imports no third-party package: ``forkjoin --version``, ``--help`` and
``forkjoin map`` start without typer, rich, pydantic or httpx.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import re
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_NOT_OK",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "BadValue",
    "SpecError",
    "UsageError",
    "check_journal",
    "journal_warnings",
    "looks_like_address",
    "parse_duration",
    "parse_rate",
    "quote_segment",
    "resolve_call",
    "say",
    "show",
]

EXIT_OK = 0
EXIT_NOT_OK = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

# patterns are compiled on first use (re caches them), not at import: the five of the
# command line were 2 % of a one-line map's start-up
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_DURATION_RE = r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|min|m|h)?\s*$"
_PER = {
    "s": 1.0, "sec": 1.0, "second": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0,
    "h": 3600.0, "hour": 3600.0,
}  # fmt: skip
_RATE_RE = r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:/\s*(\d+(?:\.\d*)?)?\s*([a-z]+))?\s*$"


class UsageError(Exception):
    """A bad command line: one line, exit code 2."""


class SpecError(Exception):
    """A bad spec or usage: one line naming where and what."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 path: str | None = None) -> None:  # fmt: skip
        self.file = file
        self.line = line
        self.path = path
        self.detail = message
        where = (
            f"{file}:{line}: "
            if file is not None and line is not None
            else (f"{file}: " if file is not None else "")
        )
        super().__init__(f"{where}{path + ': ' if path else ''}{message}")

    def in_file(self, file: str) -> SpecError:
        """The same error, naming ``file``."""
        if self.file is not None or self.line == 0:  # line 0: the command line, not the file
            return self
        return SpecError(self.detail, file=file, line=self.line, path=self.path)


class BadValue(ValueError):
    """A duration or rate that does not parse; ``kind`` is "duration" or "rate"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def say(message: str) -> None:
    """One line on stderr, as every forkjoin message is written."""
    sys.stderr.write(f"forkjoin: {message}\n")
    sys.stderr.flush()


def show(value: Any) -> str:
    """A user's value as they would write it (JSON-ish, short)."""
    import json  # not at import: a map of commands need not load it (see _render)

    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):  # pragma: no cover - default=str handles the rest
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_duration(value: Any, *, zero: bool = False) -> float:
    """Seconds from ``"250ms"``, ``"5s"``, ``"2m"``, ``"1h"``, or a number of seconds
    (``5``, ``"5"``, ``2.5``), > 0 (or 0 with ``zero``)."""
    if not isinstance(value, bool):
        seconds = -1.0
        if isinstance(value, int | float) and math.isfinite(value):
            seconds = float(value)
        elif isinstance(value, str):
            m = re.match(_DURATION_RE, value)
            if m:
                seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
        if seconds > 0 or (zero and seconds == 0):
            return seconds
    raise BadValue("duration", f'expected a duration like "5s", got {show(value)}')


def parse_rate(value: Any) -> tuple[float, float]:
    """``(rate, per_seconds)`` from ``"5/s"``, ``"60/min"``, ``"10/5s"``, or a number per
    second (``10``, ``"10"``)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if math.isfinite(value) and value > 0:
            return float(value), 1.0
    elif isinstance(value, str):
        m = re.match(_RATE_RE, value)
        if m and (m.group(3) is None or m.group(3) in _PER):
            rate = float(m.group(1))
            per = float(m.group(2) or 1) * _PER[m.group(3) or "s"]
            if rate > 0 and per > 0:
                return rate, per
    raise BadValue("rate", f'expected a rate like "5/s" or "60/min", got {show(value)}')


def resolve_call(ref: str, search: str | Path | None = None) -> Callable[..., Any]:
    """``"package.module:function"`` -> the callable (the spec's folder is importable)."""
    module_name, _, attr = ref.partition(":")
    if search is not None and str(search) not in sys.path:
        sys.path.insert(0, str(search))
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"cannot import {module_name!r}: {e}") from None
    except Exception as e:  # the module itself failed while importing
        raise ValueError(f"importing {module_name!r} failed: {type(e).__name__}: {e}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{module_name!r} has no {attr!r}") from None
    if not callable(obj):
        raise ValueError(f"{ref!r} is not callable")
    return obj  # type: ignore[no-any-return]


@contextlib.contextmanager
def journal_warnings(redact: Callable[[str], str] | None = None) -> Iterator[None]:
    """A JournalWarning is one line on stderr (``forkjoin: warning: ...``), not a Python
    warning with its source line."""
    import warnings

    import forkjoin as fj

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", fj.JournalWarning)
        try:
            yield
        finally:
            for w in caught:
                if issubclass(w.category, fj.JournalWarning):
                    text = str(w.message)
                    sys.stderr.write(f"forkjoin: warning: {redact(text) if redact else text}\n")
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def check_journal(path: str | Path, run: str) -> None:
    """:class:`UsageError` if ``path`` is not a usable journal, or ``run`` is locked."""
    import os

    import forkjoin as fj

    if not os.path.exists(path):
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise UsageError(f"--journal: {path}: no such directory: {parent}")
        return
    try:
        runs = fj.Journal(path).runs()
    except fj.JournalError as e:
        raise UsageError(str(e)) from None
    for r in runs:
        if r["run"] == run and r["holder_pid"] is not None:
            raise UsageError(
                f"{path}: run {run!r} is being run by process {r['holder_pid']}: wait for it "
                "to end, or give another journal"
            )


def looks_like_address(text: str) -> bool:
    """A Dask scheduler's address: ``tcp://host:port`` (any scheme) or ``host:port``."""
    host, _, port = text.rpartition(":")
    return "://" in text or (bool(host) and port.isdigit())


def quote_segment(value: str) -> str:
    """``value`` percent-encoded as one URL path segment or one query value: every reserved
    character encoded, and a value of only dots too (a ``.`` or ``..`` segment would climb
    the path)."""
    from urllib.parse import quote

    encoded = quote(value, safe="")
    if encoded and encoded.strip(".") == "":
        encoded = "%2E" * len(encoded)
    return encoded
