"""``{name}`` templates and ``${env:NAME}`` secrets in spec values, and their redaction.

Templates are filled inside each string value (an argv element, a URL, a header, a SQL
parameter) — never by handing a string to a shell or formatting it into SQL. Values read
from the environment are secrets: :class:`Redactor` replaces them with ``***`` in
everything forkjoin prints or writes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Callable, Mapping
from typing import Any

from ._usage import SpecError

__all__ = ["Redactor", "Vars", "expand"]

_TEMPLATE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}|\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
REDACTED = "***"


class Redactor:
    """Replaces every secret (a value read from the environment) with ``***``."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()

    def add(self, secret: str) -> None:
        if secret:
            self.secrets.add(secret)
            # the same secret as it appears inside JSON text
            escaped = json.dumps(secret)[1:-1]
            if escaped != secret:
                self.secrets.add(escaped)

    def __call__(self, text: str) -> str:
        for s in sorted(self.secrets, key=len, reverse=True):
            if s in text:
                text = text.replace(s, REDACTED)
        return text

    def value(self, value: Any) -> Any:
        """Redact inside a JSON-like value (strings in lists and dicts)."""
        if not self.secrets:
            return value
        if isinstance(value, str):
            return self(value)
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {self(str(k)): self.value(v) for k, v in value.items()}
        return value


class Vars:
    """The variables of a run: ``[vars]``, what a setup provided, and ``--var`` (last wins)."""

    def __init__(self, redactor: Redactor, environ: Mapping[str, str] | None = None) -> None:
        self.values: dict[str, Any] = {}
        self.redactor = redactor
        self.environ = os.environ if environ is None else environ

    def update(self, values: Mapping[str, Any], where: Callable[[str], tuple[str, int]]) -> None:
        """Add variables; ``${env:NAME}`` inside them is read now (and becomes a secret)."""
        for name, value in values.items():
            if isinstance(value, str):
                value = self.fill(value, where(name), env_only=True)
            self.values[name] = value

    def env(self, name: str, where: tuple[str, int]) -> str:
        value = self.environ.get(name)
        if value is None:
            raise SpecError(
                f"environment variable {name} is not set", file=None, line=where[1], path=where[0]
            )
        self.redactor.add(value)
        return value

    def fill(
        self,
        text: str,
        where: tuple[str, int],
        *,
        env_only: bool = False,
        quote: bool = False,
    ) -> Any:
        """Fill the templates of one string. A string that is exactly ``{name}`` takes the
        variable's own type (a number stays a number); ``quote`` shell-quotes each value."""
        whole = _TEMPLATE.fullmatch(text)
        if whole and whole.group(2) and not env_only and not quote:
            return self._lookup(whole.group(2), where)

        def sub(m: re.Match[str]) -> str:
            if m.group(1):
                value = self.env(m.group(1), where)
            elif m.group(0) in ("{{", "}}"):
                return m.group(0) if env_only else m.group(0)[0]
            elif env_only:
                return m.group(0)
            else:
                v = self._lookup(m.group(2), where)
                value = json.dumps(v) if isinstance(v, bool) else str(v)
            return shlex.quote(value) if quote else value

        return _TEMPLATE.sub(sub, text)

    def _lookup(self, name: str, where: tuple[str, int]) -> Any:
        if name not in self.values:
            known = ", ".join(sorted(self.values)) or "none"
            raise SpecError(
                f"unknown variable {{{name}}} (defined: {known}); set it in [vars] or with "
                f"--var {name}=...",
                line=where[1],
                path=where[0],
            )
        return self.values[name]


def expand(
    value: Any,
    variables: Vars,
    path: tuple[str, ...],
    line_of: Callable[[tuple[str, ...]], int],
    *,
    quote: bool = False,
) -> Any:
    """Fill templates in every string inside ``value`` (lists and tables too)."""
    if isinstance(value, str):
        if "{" not in value:
            return value
        return variables.fill(value, (".".join(path), line_of(path)), quote=quote)
    if isinstance(value, list):
        return [
            expand(v, variables, (*path, str(i)), line_of, quote=quote) for i, v in enumerate(value)
        ]
    if isinstance(value, dict):
        return {
            k: expand(v, variables, (*path, str(k)), line_of, quote=quote) for k, v in value.items()
        }
    return value
