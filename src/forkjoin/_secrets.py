"""Secrets the process knows of, and the one way to shorten a text that may hold one.

A holder of secrets (the command line's redactor) registers itself while it lives; every
place that writes a task's error or value in a shortened form (the report, logs, spans,
the CLI's table) calls :func:`clip`, which redacts first and cuts after: a secret that
would straddle the cut cannot leave its first half behind. A text may also come already
cut (an error's message keeps the head of a long line): then a secret's first part at its
end (at least ``FRAGMENT`` characters) is redacted too.
With nothing registered, both are a check of an empty set.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Protocol

__all__ = ["FRAGMENT", "MASK", "clip", "register", "scrub", "secrets"]

MASK = "***"
FRAGMENT = 4  # the shortest end-of-text piece of a secret that is redacted


class _Holder(Protocol):
    @property
    def secrets(self) -> set[str]: ...


_HOLDERS: weakref.WeakSet[_Holder] = weakref.WeakSet()


def register(holder: _Holder) -> None:
    """Have ``holder.secrets`` redacted by :func:`clip` for as long as ``holder`` lives."""
    _HOLDERS.add(holder)


def secrets() -> list[str]:
    """Every live secret, longest first (a secret inside another is replaced after it)."""
    found: set[str] = set()
    for h in list(_HOLDERS):
        found.update(h.secrets)
    return sorted(found, key=len, reverse=True)


def scrub(text: str, known: Iterable[str] | None = None, *, cut: bool = False) -> str:
    """``text`` with every secret as ``***`` (``known``: the secrets, longest first; default
    every live one). ``cut``: ``text`` may have been cut by its maker (an error's message
    keeps the first part of a long line), so a secret's first part at its end goes too."""
    ordered = secrets() if known is None else list(known)
    if not ordered or not text:
        return text
    for s in ordered:
        if s in text:
            text = text.replace(s, MASK)
    if cut:
        for s in ordered:
            for k in range(min(len(s) - 1, len(text)), FRAGMENT - 1, -1):
                if text.endswith(s[:k]):
                    text = text[:-k] + MASK
                    break
    return text


def clip(text: str, limit: int) -> str:
    """``text`` redacted, then cut to ``limit`` characters (``…`` marks a cut)."""
    if _HOLDERS:
        text = scrub(text, cut=True)
    if len(text) <= limit:
        return text
    return text[: limit - 1] + "…"
