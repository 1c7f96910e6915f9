"""The spec file: a TOML document of named tasks and policies, validated with pydantic.

Errors are one line naming the file, the line and the key path
(``spec.toml:14: tasks.amazon.timeout: expected a duration like "5s", got "fast"``).
tomllib gives no positions for values, so :class:`KeyLines` scans the text for table
headers and keys to map a pydantic error location back to a line.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from . import _usage
from ._usage import SpecError, show

__all__ = ["BACKENDS", "KINDS", "SpecError", "load_spec", "parse_duration", "parse_rate"]

KINDS = ("command", "http", "sql", "python")


# -- value types ------------------------------------------------------------------------


def parse_duration(value: Any, *, zero: bool = False) -> float:
    """Seconds from ``"250ms"``, ``"5s"``, ``"2m"``, ``"1h"`` or a number of seconds (> 0),
    finite: a number too large for a float (400 digits) is as wrong as ``"1e308s"``."""
    try:
        seconds = _usage.parse_duration(value, zero=zero)
    except _usage.BadValue as e:
        raise PydanticCustomError("duration", "{msg}", {"msg": str(e)}) from None
    except OverflowError:
        seconds = math.inf
    if math.isinf(seconds):
        raise PydanticCustomError(
            "duration", "{msg}", {"msg": f'expected a duration like "5s", got {show(value)}'}
        )
    return seconds


def parse_rate(value: Any) -> tuple[float, float]:
    """``(rate, per_seconds)`` from ``"5/s"``, ``"60/min"``, ``"10/5s"`` or a number per
    second; both finite."""
    try:
        rate, per = _usage.parse_rate(value)
    except _usage.BadValue as e:
        raise PydanticCustomError("rate", "{msg}", {"msg": str(e)}) from None
    except OverflowError:
        rate = per = math.inf
    if math.isinf(rate) or math.isinf(per):
        raise PydanticCustomError(
            "rate", "{msg}", {"msg": f'expected a rate like "5/s" or "60/min", got {show(value)}'}
        )
    return rate, per


def _check(what: str, ok: Any) -> Any:
    def validate(value: Any) -> Any:
        if not ok(value):
            raise PydanticCustomError("value", "expected {what}, got {got}",
                                      {"what": what, "got": show(value)})  # fmt: skip
        return value

    return BeforeValidator(validate)


def _is_scalar(v: Any) -> bool:
    return isinstance(v, str | int | float | bool)


def _is_argv(v: Any) -> bool:
    return isinstance(v, str) or (
        isinstance(v, list) and bool(v) and all(isinstance(a, str) for a in v)
    )


def _is_params(v: Any) -> bool:
    if isinstance(v, list):
        return all(_is_scalar(p) for p in v)
    return isinstance(v, dict) and all(_is_scalar(p) for p in v.values())


Duration = Annotated[float, BeforeValidator(parse_duration)]
ZeroDuration = Annotated[float, BeforeValidator(lambda v: parse_duration(v, zero=True))]
Scalar = Annotated[Any, _check("a string, number or boolean", _is_scalar)]
PositiveInt = Annotated[int, Field(ge=1)]


def _table_or(field: str, what: str, types: tuple[type, ...] = ()) -> Any:
    """A before-validator: a scalar is shorthand for ``{field = scalar}``; ``false`` = off."""

    def convert(value: Any) -> Any:
        if value is False:
            return {"enabled": False}
        if value is True:
            return {}
        if isinstance(value, dict):
            return value
        if field and isinstance(value, types):
            return {field: value}
        raise PydanticCustomError("shorthand", "expected {what}, got {got}",
                                  {"what": what, "got": show(value)})  # fmt: skip

    return BeforeValidator(convert)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RetrySpec(_Model):
    enabled: bool = True
    attempts: PositiveInt = 3
    backoff: ZeroDuration = 0.5
    max_delay: Duration = 30.0
    jitter: bool = True


class RateSpec(_Model):
    rate: Annotated[float, Field(gt=0)]
    per: Duration = 1.0
    burst: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            rate, per = parse_rate(value)
            return {"rate": rate, "per": per}
        if isinstance(value, dict) and isinstance(value.get("rate"), str):
            rate, per = parse_rate(value["rate"])
            return {**value, "rate": rate, "per": per}
        return value


class AdaptiveSpec(_Model):
    enabled: bool = True
    initial: PositiveInt = 4
    min: PositiveInt = 1
    max: PositiveInt = 64


class HedgeSpec(_Model):
    enabled: bool = True
    after: Duration = 1.0
    max_extra: PositiveInt = 1


class BudgetSpec(_Model):
    usd: Annotated[float, Field(ge=0)] | None = None
    tokens: Annotated[int, Field(ge=0)] | None = None


RetryField = Annotated[
    RetrySpec, _table_or("attempts", "a number of attempts, false or a table", (int,))
]
HedgeField = Annotated[
    HedgeSpec, _table_or("after", 'a delay like "300ms" or a table', (int, float, str))
]
AdaptiveField = Annotated[AdaptiveSpec, _table_or("", "true, false or a table")]
BudgetField = Annotated[BudgetSpec, _table_or("usd", "an amount in USD or a table", (int, float))]


BACKENDS = ("loop", "thread", "process", "dask")
Backend = Literal["loop", "thread", "process", "dask"]


class DaskSpec(_Model):
    """``[run.dask]``: the cluster ``backend = "dask"`` means (default: one forkjoin starts)."""

    address: Annotated[str, Field(min_length=1)] | None = None
    workers: PositiveInt | None = None
    threads: PositiveInt | None = None


class RunSpec(_Model):
    limit: PositiveInt | None = None
    rate: RateSpec | None = None
    deadline: Duration | None = None
    on_error: Literal["collect", "fail_fast"] = "collect"
    quorum: PositiveInt | None = None
    budget: BudgetField | None = None
    journal: Annotated[str, Field(min_length=1)] | None = None
    # exit 0 when some tasks are ok (as --allow-partial): a run that reports partial
    # results on purpose is not a failed run
    allow_partial: bool = False
    backend: Backend | None = None
    dask: DaskSpec | None = None


class DefaultsSpec(_Model):
    timeout: Duration | None = None
    retry: RetryField | None = None


class GroupSpec(_Model):
    limit: PositiveInt | None = None
    rate: RateSpec | None = None
    adaptive: AdaptiveField | None = None
    timeout: Duration | None = None
    retry: RetryField | None = None
    backend: Backend | None = None


Json = Any


class _TaskBase(_Model):
    after: list[Annotated[str, Field(min_length=1)]] = []
    for_each: Annotated[str, Field(min_length=1)] | None = None
    group: str | None = None
    priority: int = 0
    timeout: Duration | None = None
    retry: RetryField | None = None
    cost: Annotated[float, Field(ge=0)] | None = None
    idempotent: bool = False
    hedge: HedgeField | None = None
    backend: Backend | None = None


class CommandTask(_TaskBase):
    kind: Literal["command"] = "command"
    argv: Annotated[Any, _check("a non-empty list of strings", _is_argv)]
    shell: bool = False
    ok_codes: list[int] = [0]
    cwd: str | None = None
    env: dict[str, str] = {}
    stdin: str | None = None
    max_output: PositiveInt = 1_000_000

    @model_validator(mode="after")
    def _shell_string(self) -> CommandTask:
        if isinstance(self.argv, str) and not self.shell:
            raise PydanticCustomError(
                "argv", "a command line string needs shell = true; otherwise give a list"
            )
        return self


class HttpTask(_TaskBase):
    kind: Literal["http"] = "http"
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = "GET"
    url: Annotated[str, Field(pattern=r"^(https?://|\{)")]
    headers: dict[str, str] = {}
    query: dict[str, Scalar] = {}
    json_: Annotated[Json, Field(alias="json")] = None
    body: str | None = None
    expect: list[Annotated[int, Field(ge=100, le=599)]] | None = None
    max_body: PositiveInt = 1_000_000
    follow_redirects: bool = False
    # a header that carries fj.idempotency_key(): the same on every attempt and resume
    idempotency_header: Annotated[str, Field(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")] | None = (
        None
    )

    model_config = ConfigDict(populate_by_name=True)

    @model_validator(mode="after")
    def _one_body(self) -> HttpTask:
        if self.json_ is not None and self.body is not None:
            raise PydanticCustomError("body", "give json or body, not both")
        return self


class SqlTask(_TaskBase):
    kind: Literal["sql"] = "sql"
    dsn: Annotated[str, Field(pattern=r"^(sqlite://|postgres(ql)?://|\{)")]
    query: Annotated[str, Field(min_length=1)]
    params: Annotated[
        Any, _check("a list or table of strings, numbers or booleans", _is_params)
    ] = []
    max_rows: PositiveInt = 100_000


class PythonTask(_TaskBase):
    kind: Literal["python"] = "python"
    call: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")]
    args: list[Json] = []
    kwargs: dict[str, Json] = {}


def _kind_of(value: Any) -> str | None:
    if not isinstance(value, dict):
        return getattr(value, "kind", None)
    kind = value.get("kind")
    if kind is not None:
        return kind if isinstance(kind, str) and kind in KINDS else None
    for key, k in (("argv", "command"), ("url", "http"), ("call", "python"), ("query", "sql")):
        if key in value:
            return k
    return None


TaskSpec = Annotated[
    Annotated[CommandTask, Tag("command")]
    | Annotated[HttpTask, Tag("http")]
    | Annotated[SqlTask, Tag("sql")]
    | Annotated[PythonTask, Tag("python")],
    Discriminator(
        _kind_of,
        custom_error_type="task_kind",
        custom_error_message='expected kind = "command", "http", "sql" or "python" '
        "(or a task with argv, url, query or call)",
    ),
]


class CallSpec(_Model):
    call: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")]
    kwargs: dict[str, Json] = {}


class SetupSpec(CallSpec):
    """A context manager run around the tasks (e.g. local servers); it yields extra vars."""

    provides: list[str] = []
    skip_if_var: str | None = None


class Spec(_Model):
    run: RunSpec = RunSpec()
    defaults: DefaultsSpec = DefaultsSpec()
    vars: dict[str, Scalar] = {}
    groups: dict[str, GroupSpec] = {}
    tasks: Annotated[dict[str, TaskSpec], Field(min_length=1)]
    setup: SetupSpec | None = None
    aggregate: CallSpec | None = None


# -- locations --------------------------------------------------------------------------


def _split_key(text: str) -> list[str] | None:
    """Dotted TOML key -> parts (handles quoted parts); None when it is not a key."""
    parts: list[str] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            return None
        if text[i] in "\"'":
            q = text[i]
            j = text.find(q, i + 1)
            if j < 0:
                return None
            parts.append(text[i + 1 : j])
            i = j + 1
        else:
            m = re.match(r"[A-Za-z0-9_-]+", text[i:])
            if not m:
                return None
            parts.append(m.group(0))
            i += m.end()
        while i < n and text[i] in " \t":
            i += 1
        if i < n:
            if text[i] != ".":
                return None
            i += 1
    return parts or None


class KeyLines:
    """Map key paths of a TOML document to the line where they are written."""

    def __init__(self, text: str) -> None:
        self.lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        depth = 0  # open brackets of a multi-line value
        in_string: str | None = None  # a multi-line string's quotes
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if in_string is not None:
                if line.count(in_string) % 2 == 1:
                    in_string = None
                continue
            if depth > 0:
                depth = max(0, depth + _bracket_delta(line))
                continue
            if not line or line.startswith("#"):
                continue
            header = re.match(r"^\[\[?\s*(.*?)\s*\]\]?\s*(#.*)?$", line)
            if header and not _has_assignment(line):
                parts = _split_key(header.group(1))
                if parts is not None:
                    table = tuple(parts)
                    # [tasks.a.b] also defines tasks.a (where a table "a.b" is another key)
                    for k in range(1, len(table) + 1):
                        self.lines.setdefault(table[:k], lineno)
                continue
            eq = _assignment_at(line)
            if eq is None:
                continue
            parts = _split_key(line[:eq])
            if parts is None:
                continue
            path = table + tuple(parts)
            self.lines.setdefault(path, lineno)
            for k in range(len(table) + 1, len(path)):
                self.lines.setdefault(path[:k], lineno)
            value = line[eq + 1 :]
            for q in ('"""', "'''"):
                if value.count(q) % 2 == 1:
                    in_string = q
            depth = max(0, _bracket_delta(value))

    def find(self, path: tuple[str, ...]) -> int:
        for k in range(len(path), 0, -1):
            if path[:k] in self.lines:
                return self.lines[path[:k]]
        return 1


def _assignment_at(line: str) -> int | None:
    quote: str | None = None
    for i, c in enumerate(line):
        if quote:
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "=":
            return i
        elif c in "[{#":
            return None
    return None


def _has_assignment(line: str) -> bool:
    return _assignment_at(line) is not None


def _bracket_delta(text: str) -> int:
    delta = 0
    quote: str | None = None
    for c in text:
        if quote:
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "#":
            break
        elif c in "[{":
            delta += 1
        elif c in "]}":
            delta -= 1
    return delta


# pydantic's error types, in forkjoin's words (pydantic's own sentences never reach a user)
_WORDS = {
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_type": "expected a string",
    "string_too_short": "expected a non-empty string",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "dict_type": "expected a table",
    "model_type": "expected a table",
    "model_attributes_type": "expected a table",
    "too_short": "expected at least one item",
}
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
           "less_than_equal": "<="}  # fmt: skip
_FORMS = {
    "url": "expected an http:// or https:// URL (or a {variable})",
    "dsn": 'expected "sqlite:///path.db" or "postgresql://..." (or a {variable})',
    "call": 'expected "module:function", e.g. "mypkg.tasks:score"',
    "idempotency_header": 'expected an HTTP header name, e.g. "Idempotency-Key"',
}


def _message(err: Any) -> str:
    """One pydantic error as forkjoin says it: what was expected, and what was given."""
    kind = err.get("type", "")
    if kind in ("duration", "rate", "shorthand", "task_kind", "argv", "body", "value"):
        return str(err["msg"])
    if kind == "missing":
        return "missing required key"
    if kind == "extra_forbidden":
        return "unknown key"
    loc = tuple(str(p) for p in err.get("loc", ()))
    ctx = err.get("ctx") or {}
    if kind == "too_short" and loc == ("tasks",):
        return "expected at least one task: add a [tasks.NAME] table"
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()), "?")
        what = "a whole number" if isinstance(bound, int) else "a number"
        shown = f"{bound:g}" if isinstance(bound, float) else str(bound)
        text = f"expected {what} {_BOUNDS[kind]} {shown}"
    elif kind == "literal_error":
        text = "expected " + str(ctx.get("expected", "one of the allowed values")).replace("'", '"')
    elif kind == "string_pattern_mismatch":
        text = _FORMS.get(loc[-1] if loc else "", "expected a value of another form")
    else:
        text = _WORDS.get(kind, "invalid value")
    if "input" in err:
        text += f", got {show(err['input'])}"
    return text


def _clean_loc(loc: tuple[Any, ...]) -> tuple[str, ...]:
    out = [str(p) for p in loc]
    # drop pydantic's union tags and the before-validators' own names from the path
    if len(out) > 2 and out[0] == "tasks" and out[2] in KINDS:
        del out[2]
    out = [p for p in out if not p.startswith(("function-", "json-or-python"))]
    return tuple("json" if p == "json_" else p for p in out)


def _first_error(exc: ValidationError, keylines: KeyLines) -> tuple[tuple[str, ...], str]:
    """The error written first in the document (pydantic reports in field order)."""
    found = []
    for err in exc.errors(include_url=False):
        loc = _clean_loc(tuple(err["loc"]))
        if err.get("type") in ("argv", "body"):  # a whole-task check names its key
            loc = (*loc, str(err["type"]))
        found.append((keylines.find(loc), loc, _message(err)))
    _, loc, message = min(found, key=lambda f: f[0])
    return loc, message


def load_spec(path: Path, display: str | None = None) -> tuple[Spec, KeyLines]:
    """Read and validate a spec file; raise :class:`SpecError` with file:line: path."""
    name = display or str(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise SpecError(f"cannot read the spec: {e.strerror or e}", file=name) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise SpecError("not UTF-8 text", file=name, line=line) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        # "at end of document": the last line with something on it
        line = int(m.group(1)) if m else max(1, len(text.rstrip().splitlines()))
        detail = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", msg)
        col = f" (column {m.group(2)})" if m else ""
        raise SpecError(f"invalid TOML: {detail}{col}", file=name, line=line) from None
    keylines = KeyLines(text)
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        loc, message = _first_error(e, keylines)
        raise SpecError(message, file=name, line=keylines.find(loc),
                        path=".".join(loc) or None) from None  # fmt: skip
    return spec, keylines
