"""What the CLI prints: keyed JSON results and the report (rich on a terminal, plain text
otherwise). Everything passes through the run's :class:`Redactor` before it is written."""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import forkjoin as fj

from .._secrets import scrub, secrets
from ._process import CommandFailed
from ._template import Redactor

if TYPE_CHECKING:
    import json

    from rich.table import Table

__all__ = ["UNENCODABLE", "command_line", "dumps", "outcome_doc", "render_report", "results_doc"]


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return dict(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    return repr(value)


# one encoder for every line `forkjoin map` writes (json.dumps with options builds a new one
# per call, a third of the per-line cost), made with the first line that needs it: json
# (its scanner's and encoder's patterns) is not loaded by a map whose lines all take
# command_line (5M of a one-line map's 273M instructions); NaN and infinities are not JSON:
# they fail in it and take the fallback below
_ENCODERS: dict[int | None, json.JSONEncoder] = {}

UNENCODABLE = "$unencodable"
_DEPTH = 200  # deeper than this, a value is shown as a marker (the encoder recurses)
_REPR_CHARS = 200
_KEY_TYPES = (str, int, float, bool, type(None))


def dumps(value: Any, *, indent: int | None = None) -> str:
    """JSON text for any value a task may return: non-JSON values as their JSON form
    (sets and tuples as lists, dataclasses and mappings as objects) or their repr. Always
    valid JSON: what cannot be encoded (NaN or an infinity, an int too long to print, a
    circular or too deeply nested structure, an object whose repr raises) becomes
    ``{"$unencodable": "TypeName", "repr": "..."}`` in its place, and a key that is not a
    string, a number, a bool or null becomes its repr; the rest of the value is kept."""
    encoder = _ENCODERS.get(indent)
    if encoder is None:
        import json

        encoder = _ENCODERS[indent] = json.JSONEncoder(
            default=_default, ensure_ascii=False, allow_nan=False, indent=indent
        )
    try:
        return encoder.encode(value)
    except Exception:
        return encoder.encode(_safe(value, 0, set()))


def command_line(line: Any, value: Any) -> str | None:
    """The JSON line of a command's ok result (``{"exit_code", "stdout", "stderr"}``) for
    input ``line``, as :func:`dumps` writes it, built here: a fifth of the encoder's cost,
    which ran once per line; ``None`` for any other value (``dumps`` it)."""
    if (
        type(line) is str
        and type(value) is dict
        and len(value) == 3
        and type(code := value.get("exit_code")) is int
        and type(out := value.get("stdout")) is str
        and type(err := value.get("stderr")) is str
    ):
        return (
            f'{{"input": {_string(line)}, "status": "ok", "value": {{"exit_code": {code}, '
            f'"stdout": {_string(out)}, "stderr": {_string(err)}}}}}'
        )
    return None


try:  # what json's encoder uses with ensure_ascii=False (its C version), without json
    from _json import encode_basestring as _string
except ImportError:  # pragma: no cover - a Python without _json
    from json.encoder import py_encode_basestring as _string


def _marker(value: Any, text: str | None = None) -> dict[str, str]:
    if text is None:
        try:
            text = repr(value)
        except Exception as e:
            text = f"<repr raised {type(e).__name__}>"
        if len(text) > _REPR_CHARS:
            text = text[: _REPR_CHARS - 1] + "…"
    return {UNENCODABLE: type(value).__name__, "repr": text}


def _safe(value: Any, depth: int, path: set[int]) -> Any:
    """``value`` as plain JSON data, each part that cannot be encoded as a marker."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        try:
            str(value)
        except ValueError:  # more digits than int-to-str converts
            return _marker(value, f"<int of {value.bit_length()} bits>")
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _marker(value)
    if depth >= _DEPTH:
        return _marker(value, f"<nested deeper than {_DEPTH}>")
    if id(value) in path:
        return _marker(value, "<circular reference>")
    if isinstance(value, dict | list | tuple | set | frozenset):
        path.add(id(value))
        try:
            if isinstance(value, dict):
                return {_key(k): _safe(v, depth + 1, path) for k, v in value.items()}
            return [_safe(v, depth + 1, path) for v in value]
        finally:
            path.discard(id(value))
    try:
        converted = _default(value)
    except Exception:
        return _marker(value)
    if isinstance(converted, str) and not isinstance(value, bytes):
        return converted  # its repr, already a string
    path.add(id(value))
    try:
        return _safe(converted, depth + 1, path)
    finally:
        path.discard(id(value))


def _key(key: Any) -> Any:
    if isinstance(key, _KEY_TYPES) and not (isinstance(key, float) and not math.isfinite(key)):
        if isinstance(key, int) and not isinstance(key, bool):
            try:
                str(key)
            except ValueError:
                return f"<int of {key.bit_length()} bits>"
        return key
    try:
        return repr(key)
    except Exception as e:
        return f"<{type(key).__name__}: repr raised {type(e).__name__}>"


def error_text(error: BaseException | None) -> str | None:
    if error is None:
        return None
    text = str(error)
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    # the message may have been cut by its maker (a command's error line): a secret's first
    # part at its end is redacted with the secrets the process knows of
    return scrub(text, cut=True) if secrets() else text


def failure_fields(error: BaseException | None) -> dict[str, Any]:
    """What a failed call leaves beside its error: a command's exit code, stdout and
    stderr (capped), so they are fields of the result, not only part of a message."""
    if isinstance(error, CommandFailed):
        return error.fields()
    return {}


def detail_text(o: fj.Outcome) -> str:
    """Why a task did not end ok, in one line: its reason, and its error unless the
    error only repeats the reason (a task skipped or cancelled by the run)."""
    if o.ok:
        return ""
    error = o.error
    if error is None or isinstance(error, fj.TaskSkipped | fj.TaskCancelled):
        return o.reason or (error_text(error) or "")
    text = error_text(error) or ""
    return f"{o.reason}: {text}" if o.reason else text


def outcome_doc(o: fj.Outcome) -> dict[str, Any]:
    """One Outcome as JSON: status, value or error, reason, attempts, duration, cost, and
    where its last call ran when that was off the loop."""
    doc: dict[str, Any] = {"status": o.status.value}
    if o.ok:
        doc["value"] = o.value
    else:
        doc["error"] = error_text(o.error)
        doc.update(failure_fields(o.error))
    if o.reason:
        doc["reason"] = o.reason
    doc["attempts"] = o.attempts
    d = o.duration
    doc["duration"] = round(d, 6) if d is not None else None
    if o.cost is not None:
        doc["cost"] = o.cost
    if o.fallback:
        doc["fallback"] = True
    if o.resumed:
        doc["resumed"] = True  # from the journal: not run again
    history = o.history
    if history and history[-1].where is not None:  # off the loop: a thread, a worker
        doc["where"] = history[-1].where
    return doc


def results_doc(results: Mapping[str, fj.Outcome]) -> dict[str, Any]:
    return {name: outcome_doc(o) for name, o in results.items()}


_STYLE = {
    "ok": "green",
    "failed": "red",
    "timed_out": "yellow",
    "cancelled": "magenta",
    "skipped": "dim",
}


def _report_dict(report: Any) -> dict[str, Any]:
    if isinstance(report, dict):
        return report
    return dict(report.to_dict())


def render_report(
    report: Any,
    outcomes: Mapping[str, fj.Outcome] | None,
    redact: Redactor,
    *,
    terminal: bool,
    width: int = 100,
) -> str:
    """The report as text: a rich table on a terminal; otherwise plain lines, as wide as
    their content (never padded to a width, never wrapped)."""
    if not terminal:
        parts = [_plain_tasks(outcomes, redact)] if outcomes else []
        parts.append(str(report) if not isinstance(report, dict) else _plain(report))
        return redact("\n".join(parts) + "\n")
    from rich.console import Console
    from rich.table import Table

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=width, highlight=False)
    if outcomes:
        table = Table(title="tasks", title_justify="left", box=None)
        for col in _COLUMNS:
            table.add_column(col, justify="right" if col in ("attempts", "duration") else "left")
        for name, o in outcomes.items():
            status = o.status.value
            row = _task_row(name, o, redact)
            row[1] = f"[{_STYLE.get(status, '')}]{status}[/]"
            table.add_row(*row)
        console.print(table)
    if hasattr(report, "__rich__"):
        console.print(report)
    else:
        console.print(_summary_table(_report_dict(report)))
    return redact(buf.getvalue())


_COLUMNS = ("task", "status", "attempts", "duration", "detail")
_DETAIL_CHARS = 120


def _task_row(name: str, o: fj.Outcome, redact: Redactor) -> list[str]:
    # each cell redacted before it is cut (and before rich may wrap it across lines)
    d = o.duration
    return [
        redact.clip(name, 1 << 16),
        o.status.value,
        str(o.attempts),
        f"{d:.3f}s" if d is not None else "-",
        redact.clip(detail_text(o), _DETAIL_CHARS),
    ]


def _plain_tasks(outcomes: Mapping[str, fj.Outcome], redact: Redactor) -> str:
    rows = [list(_COLUMNS), *(_task_row(name, o, redact) for name, o in outcomes.items())]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    lines = ["tasks"]
    for r in rows:
        cells = [
            r[i].rjust(widths[i]) if _COLUMNS[i] in ("attempts", "duration") else r[i].ljust(w)
            for i, w in enumerate(widths)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _summary_table(d: dict[str, Any]) -> Table:
    table = Table(title="report", title_justify="left", show_header=False, box=None)
    table.add_column("what", style="bold")
    table.add_column("value")
    for key, value in _summary_rows(d):
        table.add_row(key, value)
    return table


def _summary_rows(d: dict[str, Any]) -> list[tuple[str, str]]:
    counts = ", ".join(f"{k} {v}" for k, v in sorted((d.get("counts") or {}).items())) or "none"
    rows = [
        ("tasks", f"{d.get('tasks', 0)} ({counts})"),
        ("wall", f"{d.get('wall', 0.0):.3f}s"),
        ("sequential", f"{d.get('total_duration', 0.0):.3f}s (sum of task durations)"),
        ("speedup", f"{d.get('speedup', 0.0):.2f}x"),
        (
            "concurrency",
            f"peak {d.get('peak_concurrency', 0)}, mean {d.get('mean_concurrency', 0.0):.2f}",
        ),
        ("attempts", f"{d.get('attempts', 0)} ({_retries(int(d.get('retries') or 0))})"),
    ]
    cost = d.get("cost")
    if isinstance(cost, dict):
        cost = cost.get("total")
    if cost:
        rows.append(("cost", f"${cost:.4f} (sequential would cost the same)"))
    reasons = d.get("reasons") or {}
    if reasons:
        rows.append(("reasons", ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))))
    slowest = d.get("slowest") or []
    if slowest and isinstance(slowest[0], dict):
        rows.append(("slowest", f"{slowest[0].get('name')} ({slowest[0].get('duration', 0):.3f}s)"))
    return rows


def _retries(n: int) -> str:
    return f"{n} {'retry' if n == 1 else 'retries'}"


def _plain(d: dict[str, Any]) -> str:
    return "\n".join(f"{k:<12} {v}" for k, v in _summary_rows(d))
