"""``{name}`` templates and ``${env:NAME}`` secrets in spec values, and their redaction.

Templates are filled inside each string value (an argv element, a URL, a header, a SQL
parameter) — never by handing a string to a shell or formatting it into SQL. In a shell
command (``shell = true``) a template becomes a reference to a positional parameter
(``"${1}"``) and its value is handed to ``sh -c`` as that parameter, so the shell never
parses it. In a URL a value is percent-encoded (one path segment, one query value): only
the template that starts the URL (its base) and ``{name!raw}`` are URL text. Values read
from the environment are secrets: :class:`Redactor` replaces them with ``***`` in
everything forkjoin prints or writes.

A task's fields may also read the results of other tasks, ``{tasks.NAME.value.KEY.0}``,
and, in a task with ``for_each``, its element, ``{item}`` / ``{item.KEY}``. Those are
filled when the task is admitted (its dependencies have ended); while the spec is
checked, a :class:`Results` scope only validates them and notes which tasks they read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any

from .._secrets import clip, scrub
from .._secrets import register as register_secrets
from ._usage import SpecError, quote_segment

__all__ = ["RESULT", "Redactor", "Results", "Vars", "expand", "result_source"]

# ${env:NAME} | {{ | }} | {tasks.NAME.value...} / {item...} | {name}, the last two with
# an optional !raw (URL text, in a url)
_TEMPLATE = (
    r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}|\{\{|\}\}"
    r"|\{((?:tasks|item)(?:\.[A-Za-z0-9_-]+)*)(!raw)?\}"
    r"|\{([A-Za-z_][A-Za-z0-9_]*)(!raw)?\}"
)
RESULT = r"^\{(tasks(?:\.[A-Za-z0-9_-]+)*)\}$"  # one result, the whole string
REDACTED = "***"
_UNSET: Any = object()


class Redactor:
    """Replaces every secret (a value read from the environment) with ``***``.

    While it holds secrets it is registered with the library, so the report, logs and
    spans redact them before they cut a text (a secret straddling a cut leaves no half).
    """

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        self._ordered: list[str] = []

    def add(self, secret: str) -> None:
        if secret:
            self.secrets.add(secret)
            # the same secret as it appears inside JSON text
            import json  # not at import: a map of commands need not load it (_render)

            escaped = json.dumps(secret)[1:-1]
            if escaped != secret:
                self.secrets.add(escaped)
            self._ordered = sorted(self.secrets, key=len, reverse=True)
            register_secrets(self)

    def __call__(self, text: str) -> str:
        for s in self._ordered:
            if s in text:
                text = text.replace(s, REDACTED)
        return text

    def clip(self, text: str, limit: int) -> str:
        """``text`` redacted, then cut to ``limit`` characters."""
        return clip(scrub(text, self._ordered, cut=True), limit)

    def value(self, value: Any, _depth: int = 0) -> Any:
        """Redact inside a JSON-like value (strings in lists and dicts). In a dict marked
        ``truncated`` (a command's or a response's capped output) a string that ends in a
        secret's first part loses it too. Deeper than 100 levels (or circular) a value is
        left to the redaction of the text it is written as."""
        if not self.secrets or _depth > 100:
            return value
        if isinstance(value, str):
            return self(value)
        if isinstance(value, list | tuple):
            return [self.value(v, _depth + 1) for v in value]
        if isinstance(value, dict):
            cut = value.get("truncated") is True
            return {
                self(k) if isinstance(k, str) else k: scrub(v, self._ordered, cut=True)
                if cut and isinstance(v, str)
                else self.value(v, _depth + 1)
                for k, v in value.items()
            }
        return value


class Results:
    """What a task's templates may read of other tasks: the names of the spec's tasks, and
    (once it is admitted) their values and its element. Without values it only checks the
    templates and notes, in ``used``, the tasks they read."""

    def __init__(
        self,
        tasks: Collection[str],
        for_each: bool,
        values: Mapping[str, Any] | None = None,
        item: Any = _UNSET,
    ) -> None:
        self.tasks = tasks
        self.for_each = for_each
        self.values = values
        self.item = item
        self.used: list[str] = []

    def read(self, ref: str, where: tuple[str, int]) -> Any:
        """The value ``{ref}`` stands for (``ref`` is ``tasks.NAME.value...`` or
        ``item...``); while checking, the template itself."""
        parts = ref.split(".")
        if parts[0] == "item":
            if not self.for_each:
                raise SpecError(
                    "{item} is the element of a task with for_each, and this task has none "
                    "({item} and {tasks.…} are not variables)",
                    line=where[1],
                    path=where[0],
                )
            if self.values is None:
                return "{" + ref + "}"
            return _walk(self.item, parts[1:], ref, where)
        if len(parts) < 3 or parts[2] != "value":
            raise SpecError(
                f"expected {{tasks.NAME.value}} (or a path into it: {{tasks.NAME.value.KEY}}), "
                f"got {{{ref}}}",
                line=where[1],
                path=where[0],
            )
        name = parts[1]
        if name not in self.tasks:
            known = ", ".join(sorted(self.tasks))
            raise SpecError(
                f"{{{ref}}} reads task {name!r}, which is not a task of this spec (tasks: {known})",
                line=where[1],
                path=where[0],
            )
        self.used.append(name)
        if self.values is None:
            return "{" + ref + "}"
        return _walk(self.values[name], parts[3:], ref, where)


def _walk(value: Any, path: list[str], ref: str, where: tuple[str, int]) -> Any:
    for step in path:
        if isinstance(value, list | tuple) and re.fullmatch(r"-?\d+", step):
            i = int(step)
            if -len(value) <= i < len(value):
                value = value[i]
                continue
            what = f"no element {i} (it has {len(value)})"
        elif isinstance(value, Mapping) and step in value:
            value = value[step]
            continue
        elif isinstance(value, Mapping):
            keys = ", ".join(str(k) for k in list(value)[:8]) or "none"
            what = f"no key {step!r} (keys: {keys})"
        else:
            what = f"no {step!r} in a {type(value).__name__}"
        raise SpecError(f"{{{ref}}}: {what}", line=where[1], path=where[0])
    return value


def result_source(text: str) -> tuple[str, tuple[str | int, ...]] | None:
    """``"{tasks.NAME.value.KEY.0}"`` as ``("NAME", ("KEY", 0))`` (for ``for_each``)."""
    m = re.match(RESULT, text)
    if m is None:
        return None
    parts = m.group(1).split(".")
    if len(parts) < 3 or parts[2] != "value":
        return None
    return parts[1], tuple(int(p) if re.fullmatch(r"\d+", p) else p for p in parts[3:])


class Vars:
    """The variables of a run: ``[vars]``, what a setup provided, and ``--var`` (last wins);
    in a task's fields also what :class:`Results` it may read."""

    def __init__(self, redactor: Redactor, environ: Mapping[str, str] | None = None) -> None:
        self.values: dict[str, Any] = {}
        self.redactor = redactor
        self.environ = os.environ if environ is None else environ
        self.results: Results | None = None

    def scoped(self, results: Results) -> Vars:
        """The same variables, for the fields of a task that may read ``results``."""
        other = Vars(self.redactor, self.environ)
        other.values = self.values
        other.results = results
        return other

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
        url: bool = False,
    ) -> Any:
        """Fill the templates of one string. A string that is exactly ``{name}`` takes the
        variable's own type (a number stays a number), and one that is exactly a result
        template the result itself. With ``url``, each value is percent-encoded (it stays
        one path segment or one query value) except the one that starts the URL (its base)
        and ``{name!raw}``, which are URL text."""
        whole = re.fullmatch(_TEMPLATE, text)
        if whole and not env_only:
            if whole.group(4):
                self._raw(whole.group(5), url, where)
                return self._lookup(whole.group(4), where)
            if whole.group(2):
                self._raw(whole.group(3), url, where)
                return self._result(whole.group(2), where)

        def sub(m: re.Match[str]) -> str:
            if m.group(0) in ("{{", "}}"):
                return m.group(0) if env_only else m.group(0)[0]
            if env_only and not m.group(1):
                return m.group(0)
            value, raw = self._value(m, where)
            if not url or raw or m.start() == 0:
                return value
            if m.group(2) and self.results is not None and self.results.values is None:
                return value  # a placeholder while the spec is checked
            return self._url_encoded(value)

        def check(m: re.Match[str]) -> str:
            if not env_only:
                self._raw(m.group(3) or m.group(5), url, where)
            return sub(m)

        return re.sub(_TEMPLATE, check, text)

    def shell(self, text: str, where: tuple[str, int]) -> tuple[str, list[str]]:
        """A shell command's templates as positional parameters: the script, where each
        template became ``"${N}"`` (``${N}`` inside double quotes, ``'"${N}"'`` inside
        single quotes: the value is literal text wherever it stands), and the values, for
        ``sh -c SCRIPT forkjoin VALUE...``. The shell never parses a value."""
        out: list[str] = []
        values: list[str] = []
        state = _ShellState()
        at = 0
        for m in re.finditer(_TEMPLATE, text):
            literal = text[at : m.start()]
            at = m.end()
            if m.group(0) in ("{{", "}}"):
                literal += m.group(0)[0]
            out.append(literal)
            state.scan(literal)
            if m.group(0) in ("{{", "}}"):
                continue
            if m.group(3) or m.group(5):
                raise SpecError(
                    "!raw is for a URL; in a shell command a value is always one piece of "
                    "text the shell never parses: write {" + (m.group(2) or m.group(4)) + "}",
                    line=where[1],
                    path=where[0],
                )
            if state.escaped:
                raise SpecError(
                    f"a template right after a backslash in a shell command: remove the "
                    f"backslash before {m.group(0)}",
                    line=where[1],
                    path=where[0],
                )
            value, _ = self._value(m, where)
            values.append(value)
            out.append(state.reference(len(values)))
            state.prev = '"'
        out.append(text[at:])
        return "".join(out), values

    def _value(self, m: re.Match[str], where: tuple[str, int]) -> tuple[str, bool]:
        """The text a template (not ``{{``/``}}``) stands for, and whether it is ``!raw``."""
        if m.group(1):
            return self.env(m.group(1), where), False
        if m.group(2):
            return _text(self._result(m.group(2), where)), bool(m.group(3))
        v = self._lookup(m.group(4), where)
        return ("true" if v is True else "false" if v is False else str(v)), bool(m.group(5))

    def _url_encoded(self, value: str) -> str:
        # every reserved character encoded: one segment, or one query value; a value of
        # only dots has them encoded too (a "." or ".." segment would climb the path)
        encoded = quote_segment(value)
        # a secret inside the value is also a secret once encoded
        for secret in list(self.redactor.secrets):
            if secret in value:
                from urllib.parse import quote  # imported once a URL is filled in

                self.redactor.add(quote(secret, safe=""))
        return encoded

    @staticmethod
    def _raw(flag: str | None, url: bool, where: tuple[str, int]) -> None:
        if flag and not url:
            raise SpecError(
                "!raw is for a URL (the value as URL text); elsewhere a value is never "
                "parsed: drop the !raw",
                line=where[1],
                path=where[0],
            )

    def _result(self, ref: str, where: tuple[str, int]) -> Any:
        if self.results is None:
            raise SpecError(
                f"{{{ref}}}: the results of tasks are read only in the fields of a task",
                line=where[1],
                path=where[0],
            )
        return self.results.read(ref, where)

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


def _text(v: Any) -> str:
    """A value inside a longer string: JSON for what is not a string or a number."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool) or v is None or isinstance(v, list | tuple | dict):
        import json

        return json.dumps(v)
    return str(v)


def expand(
    value: Any,
    variables: Vars,
    path: tuple[str, ...],
    line_of: Callable[[tuple[str, ...]], int],
    *,
    url: bool = False,
) -> Any:
    """Fill templates in every string inside ``value`` (lists and tables too)."""
    if isinstance(value, str):
        if "{" not in value:
            return value
        return variables.fill(value, (".".join(path), line_of(path)), url=url)
    if isinstance(value, list):
        return [
            expand(v, variables, (*path, str(i)), line_of, url=url) for i, v in enumerate(value)
        ]
    if isinstance(value, dict):
        return {
            k: expand(v, variables, (*path, str(k)), line_of, url=url) for k, v in value.items()
        }
    return value


class _ShellState:
    """Where a position of a POSIX shell script is, as far as quoting goes: a stack of
    ``'`` and ``"`` quotes, ``$(``/``(`` and ``${`` nestings, backquotes and comments."""

    def __init__(self) -> None:
        self.stack: list[str] = [""]
        self.escaped = False  # the last character was an unquoted or double-quoted backslash
        self.prev = " "

    def scan(self, text: str) -> None:
        stack = self.stack
        for c in text:
            mode = stack[-1]
            if self.escaped:
                self.escaped = False
                self.prev = "a"  # an escaped character is a plain one
                continue
            if mode == "'":
                if c == "'":
                    stack.pop()
            elif mode == "#":
                if c == "\n":
                    stack.pop()
            elif c == "\\":
                self.escaped = True
            elif mode == '"':
                if c == '"':
                    stack.pop()
                elif c == "`":
                    stack.append("`")
                elif self.prev == "$" and c in "({":
                    stack.append(c)
            elif c in "'\"":
                stack.append(c)
            elif c == "`":
                if mode == "`":
                    stack.pop()
                else:
                    stack.append("`")
            elif (c in "({" and self.prev == "$") or (c == "(" and mode == "("):
                stack.append(c)
            elif (c == ")" and mode == "(") or (c == "}" and mode == "{"):
                stack.pop()
            elif c == "#" and (self.prev.isspace() or self.prev in ";&|()<>"):
                stack.append("#")
            self.prev = c

    def reference(self, n: int) -> str:
        mode = self.stack[-1]
        if mode == '"':
            return f"${{{n}}}"
        if mode == "'":
            return f"'\"${{{n}}}\"'"
        return f'"${{{n}}}"'
