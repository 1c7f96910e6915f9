"""A secret never reaches an output, whole or in part: stdout JSON, ``--report-json``,
``--html``, the report table on stderr (plain and rich), log records and OTel spans.

Texts are cut at several lengths (a command's error line at 200 characters, a report's
error at 300, a table's detail at 120, a span's status at 200); a secret that straddles a
cut must not leave its first part behind. Each run places the secret at every position
around every cut, and hypothesis varies the secret itself."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import forkjoin as fj
from forkjoin.cli import _app
from forkjoin.cli._render import render_report
from forkjoin.cli._template import Redactor

from ..test_cli_helpers import invoke

# letters that nothing forkjoin writes on its own spells four of in a row
SECRETS = st.text(alphabet="QXZJKVWY", min_size=6, max_size=40)
# the secret's start, around the 120 and 300 character cuts (after a prefix of up to 60)
PYTHON_PADS = [*range(58, 122), *range(238, 302)]
COMMAND_PADS = range(158, 202)  # around the 200 characters kept of a command's error line

MODULE = """
def fail(pad, secret):
    raise ValueError(pad + secret + "-end")
"""


def fragments(secret: str) -> set[str]:
    return {secret[i : i + 4] for i in range(len(secret) - 3)}


def leaks(secret: str, text: str) -> list[str]:
    return sorted(f for f in fragments(secret) if f in text)


def spec(tmp_path: Path) -> Path:
    (tmp_path / "leaky.py").write_text(MODULE)
    lines = ['[vars]\ntoken = "${env:FJ_FAULT_TOKEN}"\n']
    for n in PYTHON_PADS:
        lines.append(f'[tasks.py{n}]\ncall = "leaky:fail"\nargs = ["{"x" * n}", "{{token}}"]\n')
    script = "import sys; sys.stderr.write(sys.argv[1] + sys.argv[2] + '-end'); sys.exit(3)"
    for n in COMMAND_PADS:
        argv = f'["{sys.executable}", "-c", "{script}", "{"x" * n}", "{{token}}"]'
        lines.append(f"[tasks.cmd{n}]\nargv = {argv}\n")
    path = tmp_path / "spec.toml"
    path.write_text("\n".join(lines))
    return path


@pytest.fixture
def logs() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("forkjoin")
    handler, level = Keep(logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)  # the run logs itself: each record is checked
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def record_text(r: logging.LogRecord) -> str:
    return r.getMessage() + " " + " ".join(repr(v) for v in vars(r).values())


_FIXTURES = [HealthCheck.function_scoped_fixture]


@settings(max_examples=3, deadline=None, suppress_health_check=_FIXTURES)
@given(secret=SECRETS)
def test_no_fragment_in_the_cli_outputs_or_logs(
    secret: str, tmp_path_factory: pytest.TempPathFactory, logs: list[logging.LogRecord],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    tmp_path = tmp_path_factory.mktemp("run")
    path = spec(tmp_path)
    report, html = tmp_path / "report.json", tmp_path / "run.html"
    logs.clear()
    r = invoke("run", path, "--report-json", report, "--html", html, env={"FJ_FAULT_TOKEN": secret})
    assert r.exit_code == 1, r.stderr
    assert r.stdout.count('"status": "failed"') == len(PYTHON_PADS) + len(COMMAND_PADS)
    assert "***" in r.stdout
    assert "***" in r.stderr
    for name, text in [
        ("stdout", r.stdout),
        ("stderr", r.stderr),
        ("--report-json", report.read_text()),
        ("--html", html.read_text()),
    ]:
        assert not leaks(secret, text), name
    assert logs, "the run logged nothing"
    for record in logs:
        assert not leaks(secret, record_text(record)), record.getMessage()

    # the same run's table as a terminal shows it (rich wraps long cells across lines)
    with monkeypatch.context() as m:
        m.setattr(_app, "_stderr_is_terminal", lambda: True)
        r = invoke("run", path, env={"FJ_FAULT_TOKEN": secret})
    assert "cmd158" in r.stderr
    assert not leaks(secret, r.stderr), "rich table"


def test_the_rich_table_redacts_each_cell_before_cutting_it() -> None:
    secret = "QXZJKVWYQXZJKVWY"
    redact = Redactor()
    redact.add(secret)

    async def fail(n: int) -> None:
        raise ValueError("x" * n + secret)

    results = fj.run({f"t{n}": fj.task(fail, n) for n in range(90, 120)})
    for terminal in (True, False):
        text = render_report(results.report, results, redact, terminal=terminal, width=400)
        assert "***" in text
        assert not leaks(secret, text)


@settings(max_examples=6, deadline=None)
@given(secret=SECRETS)
def test_no_fragment_in_spans_or_records_of_a_library_run(secret: str) -> None:
    redact = Redactor()  # the CLI's secrets, while it runs
    redact.add(secret)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("fault-test-log")
    logger.addHandler(Keep())
    logger.setLevel(logging.DEBUG)

    async def fail(n: int) -> None:
        raise ValueError("x" * n + secret + "-end")

    tasks = {f"t{n}": fj.task(fail, n) for n in range(150, 205)}
    observers: list[Any] = [
        fj.OtelObserver(tracer_provider=provider),
        fj.LogObserver(logger, log_values=False),
    ]
    results = fj.run(tasks, observers=observers)
    assert all(o.status.value == "failed" for o in results.values())
    spans = exporter.get_finished_spans()
    assert spans
    for span in spans:
        parts = [span.name, str(span.status.description), repr(dict(span.attributes or {}))]
        parts += [repr(dict(e.attributes or {})) for e in span.events]
        assert not leaks(secret, " ".join(parts)), span.name
    assert records
    for record in records:
        assert not leaks(secret, record_text(record)), record.getMessage()
    del redact
