"""Guarantee: a template value never reaches a parser: a shell, a URL's structure, SQL.

Hostile strings (quotes, $(), backticks, ;, |, newlines, NUL, ../, ?, #, %2F, unicode)
go through ``--var`` into one spec with a shell command in each quoting context, a URL
path and query sent to a real server on 127.0.0.1, and an SQLite query. Each must come
back exactly as it went in: printed as one piece of text, received as one path segment
and one query value, bound as one SQL parameter; nothing in it may run.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ..test_cli_helpers import invoke

FRAGMENTS = [
    "'", '"', "$(touch {m})", "`touch {m}`", "; touch {m}", "| touch {m}", "\ntouch {m}\n",
    "&& touch {m}", "\x00", "../", "..", ".", "?", "#", "%2F", "&", "=", "+", "\\", "${IFS}",
    "*", "~", "é", "日本", "\U0001f600", "' OR '1'='1", '"); DROP TABLE t; --', "{", "}",
]  # fmt: skip


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = json.dumps({"target": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The server's base URL and a folder holding the spec and the database."""
    folder = tmp_path_factory.mktemp("parsers")
    with sqlite3.connect(folder / "db.sqlite") as conn:
        conn.execute("create table t (name text)")
        conn.execute("insert into t values ('kept')")
    conn.close()
    (folder / "spec.toml").write_text(f"""
[tasks.shell_bare]
argv = "printf '%s' {{v}}"
shell = true

[tasks.shell_double]
argv = "printf '%s' \\"<{{v}}>\\""
shell = true

[tasks.shell_single]
argv = "printf '%s' '<{{v}}>'"
shell = true

[tasks.url]
url = "{{base}}/items/{{v}}?q={{v}}&page=1#top"

[tasks.sql]
dsn = "sqlite:///{folder / "db.sqlite"}"
query = "select ? as v, (select count(*) from t) as n"
params = ["{{v}}"]
""")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


hostile = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)), min_size=1, max_size=6
).map("".join)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=hostile)
@example(raw="../admin?role=root#frag")
@example(raw="$(touch {m})")
@example(raw="'; touch {m}; echo '")
@example(raw='"; touch {m}; echo "')
@example(raw="x' OR '1'='1")
@example(raw="..")
@example(raw="%2F..%2F")
@example(raw="a\x00b")
def test_a_value_comes_back_exactly_as_it_went_in(place: tuple[str, Path], raw: str) -> None:
    base, folder = place
    marker = folder / "pwned"
    value = raw.replace("{m}", str(marker))
    r = invoke("run", folder / "spec.toml", "--quiet", "--var", f"base={base}", "--var",
               f"v={value}")  # fmt: skip
    results = r.json()["results"]
    assert not marker.exists()

    for name, shown in (("shell_bare", "{}"), ("shell_double", "<{}>"), ("shell_single", "<{}>")):
        task = results[name]
        if "\x00" in value:  # no program can take a NUL in an argument: the task fails
            assert task["status"] == "failed"
            assert "null" in task["error"]
        else:
            assert task["status"] == "ok", task
            assert task["value"]["stdout"] == shown.format(value)

    target = results["url"]["value"]["json"]["target"]
    parts = urlsplit(target)
    segments = parts.path.split("/")
    assert segments[:2] == ["", "items"], target
    assert len(segments) == 3, target
    assert segments[2] not in (".", "..")
    assert unquote(segments[2], errors="strict") == value
    assert parse_qsl(parts.query, keep_blank_values=True, errors="strict") == [
        ("q", value),
        ("page", "1"),
    ]
    assert "#" not in target  # a fragment is never sent, and the value added none

    assert results["sql"]["value"] == [{"v": value, "n": 1}]
