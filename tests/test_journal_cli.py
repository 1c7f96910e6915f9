"""The journal on the command line: map --journal, --retry-failed-only, `forkjoin journal`,
journal errors (exit 2), secrets, and the http kind's idempotency header."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import forkjoin as fj

from .test_cli_helpers import invoke

SCRIPT = 'case "$1" in bad*) test -e "$2.fixed" || exit 4;; esac; echo "$1" >> "$2"'


def map_args(side: Path, db: Path, source: Path, *extra: str) -> list[str | Path]:
    return [
        "map",
        "--journal",
        db,
        "--input",
        source,
        "--quiet",
        *extra,
        "--",
        "sh",
        "-c",
        SCRIPT,
        "sh",
        "{}",
        str(side),
    ]


def out_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_map_journal_resumes_lines_and_writes_them_again(tmp_path: Path) -> None:
    db, side, source = tmp_path / "m.db", tmp_path / "side", tmp_path / "in.txt"
    source.write_text("a\nb\nbad\n")
    first = invoke(*map_args(side, db, source))
    assert first.exit_code == 1  # "bad" failed
    assert sorted(side.read_text().split()) == ["a", "b"]
    source.write_text("a\nb\nbad\nc\n")
    log = tmp_path / "jobs.tsv"
    second = invoke(*map_args(side, db, source, "--joblog", str(log)))
    docs = {d["input"]: d for d in out_lines(second.stdout)}
    # the joblog says which lines came from the journal (and when they did not start)
    rows = {r.split("\t")[6]: r.split("\t") for r in log.read_text().splitlines()[1:]}
    assert {k: r[4] for k, r in rows.items()} == {
        "a": "ok (resumed)", "b": "ok (resumed)", "bad": "failed", "c": "ok",
    }  # fmt: skip
    assert rows["a"][1] == ""
    assert rows["c"][1] != ""
    assert set(docs) == {"a", "b", "bad", "c"}  # the output is complete
    assert docs["a"]["resumed"] is True
    assert docs["b"]["resumed"] is True
    assert "resumed" not in docs["c"]
    assert docs["bad"]["status"] == "failed"  # it failed before: it ran again
    assert sorted(side.read_text().split()) == ["a", "b", "c"]
    # the same lines under another command are other calls: they run again
    other = invoke("map", "--journal", db, "--input", source, "--", "echo", "{}")
    assert other.exit_code == 0
    assert not any(d.get("resumed") for d in out_lines(other.stdout))
    assert "forkjoin: warning: journal" in other.stderr
    assert "3 task(s) changed" in other.stderr


def test_retry_failed_only_runs_only_what_failed(tmp_path: Path) -> None:
    db, side, source = tmp_path / "m.db", tmp_path / "side", tmp_path / "in.txt"
    source.write_text("a\nbad1\nb\nbad2\n")
    assert invoke(*map_args(side, db, source)).exit_code == 1
    Path(f"{side}.fixed").touch()
    source.write_text("a\nbad1\nb\nbad2\nnew\n")
    side.write_text("")
    again = invoke(*map_args(side, db, source, "--retry-failed-only"))
    assert again.exit_code == 0, again.stderr
    docs = {d["input"]: d for d in out_lines(again.stdout)}
    assert sorted(side.read_text().split()) == ["bad1", "bad2"]
    assert docs["a"]["resumed"] is True
    assert docs["bad1"]["status"] == "ok"
    assert docs["new"]["status"] == "skipped"
    assert docs["new"]["reason"] == "not_failed_before"
    # the line that was not run has no record: a normal run runs it
    side.write_text("")
    assert invoke(*map_args(side, db, source)).exit_code == 0
    assert side.read_text().split() == ["new"]


def test_journal_show_and_export(tmp_path: Path) -> None:
    db, side, source = tmp_path / "m.db", tmp_path / "side", tmp_path / "in.txt"
    source.write_text("a\nbad\n")
    invoke(*map_args(side, db, source))
    shown = invoke("journal", "show", db)
    assert shown.exit_code == 0
    assert "map" in shown.stdout
    assert "failed 1" in shown.stdout
    assert "ok 1" in shown.stdout
    assert "CommandFailed" in shown.stdout  # the last errors
    exported = invoke("journal", "export", db, "--run", "map")
    assert exported.exit_code == 0
    rows = out_lines(exported.stdout)
    assert [(r["key"], r["status"]) for r in rows] == [(0, "ok"), (1, "failed")]
    assert rows[0]["value"]["exit_code"] == 0
    assert rows[1]["error"].startswith("CommandFailed")
    missing = invoke("journal", "export", db, "--run", "nope")
    assert missing.exit_code == 2
    assert "no run named 'nope'" in missing.stderr


@pytest.mark.parametrize("command", ["show", "export", "map", "run"])
def test_a_bad_journal_exits_2_with_one_line(tmp_path: Path, command: str) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a journal" * 100)
    spec = tmp_path / "spec.toml"
    spec.write_text('[tasks.a]\nargv = ["true"]\n')
    args: list[str | Path] = {
        "show": ["journal", "show", bad],
        "export": ["journal", "export", bad],
        "map": ["map", "--journal", bad, "--input", spec, "--", "echo", "{}"],
        "run": ["run", spec, "--journal", bad],
    }[command]
    r = invoke(*args)
    assert r.exit_code == 2
    assert r.stderr.count("\n") == 1
    assert "not a forkjoin journal" in r.stderr
    assert "Traceback" not in r.stderr
    assert r.exception is None
    assert bad.read_bytes() == b"not a journal" * 100


def test_run_journal_usage_and_spec_errors(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text('[tasks.a]\nargv = ["true"]\n')
    r = invoke("run", spec, "--fresh")
    assert r.exit_code == 2
    assert "--fresh: give --journal" in r.stderr
    spec.write_text('[run]\njournal = ""\n\n[tasks.a]\nargv = ["true"]\n')
    r = invoke("run", spec)
    assert r.exit_code == 2
    assert "spec.toml:2" in r.stderr
    assert "run.journal" in r.stderr
    r = invoke("map", "--retry-failed-only", "--", "echo")
    assert r.exit_code == 2
    assert "give --journal" in r.stderr


def test_secrets_are_not_stored_in_the_journal(tmp_path: Path) -> None:
    secret = "s3cr3t-value-42"
    spec = tmp_path / "spec.toml"
    spec.write_text(
        '[run]\njournal = "j.db"\n\n'
        '[tasks.leaky]\nargv = ["sh", "-c", "echo token=$0 >&2; exit 3", "${env:FJ_TOKEN}"]\n'
    )
    r = invoke("run", spec, "--quiet", env={"FJ_TOKEN": secret})
    assert r.exit_code == 1
    db = tmp_path / "j.db"
    (row,) = fj.Journal(db).outcomes()
    error = row["error"]
    assert "token=***" in error
    for path in tmp_path.glob("j.db*"):
        assert secret.encode() not in path.read_bytes()


# -- the http kind's Idempotency-Key ------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: dict[str, list[str]]
    fail: dict[str, int]
    lock = threading.Lock()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        with self.lock:
            self.seen.setdefault(self.path, []).append(self.headers.get("Idempotency-Key", ""))
            failing = self.fail.get(self.path, 0) > 0
            if failing:
                self.fail[self.path] -= 1
        body = b'{"error": "busy"}' if failing else b'{"ok": true}'
        self.send_response(503 if failing else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if failing:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def recording_server(
    fail: dict[str, int],
) -> Iterator[tuple[str, dict[str, list[str]], dict[str, int]]]:
    seen: dict[str, list[str]] = {}
    handler = type("Handler", (_Recorder,), {"seen": seen, "fail": fail})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen, fail
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_http_idempotency_header_is_stable_across_retries_and_resumes(tmp_path: Path) -> None:
    with recording_server({"/pay/a": 1, "/pay/b": 2}) as (url, seen, fail):
        spec = tmp_path / "spec.toml"
        spec.write_text(
            f"""
[defaults]
retry = 2

[tasks.a]
kind = "http"
method = "POST"
url = "{url}/pay/a"
idempotency_header = "Idempotency-Key"

[tasks.b]
kind = "http"
method = "POST"
url = "{url}/pay/b"
idempotency_header = "Idempotency-Key"
"""
        )
        first = invoke("run", spec, "--journal", tmp_path / "j.db", "--quiet")
        assert first.exit_code == 1  # b failed twice
        assert len(seen["/pay/a"]) == 2
        assert len(set(seen["/pay/a"])) == 1
        assert seen["/pay/a"][0]
        assert len(set(seen["/pay/b"])) == 1
        assert seen["/pay/a"][0] != seen["/pay/b"][0]
        again = invoke("run", spec, "--journal", tmp_path / "j.db", "--quiet")
        assert again.exit_code == 0, again.stderr
        assert len(seen["/pay/a"]) == 2  # resumed: not sent again
        assert len(seen["/pay/b"]) == 3
        assert len(set(seen["/pay/b"])) == 1  # the resumed run sends the same key
        assert fail["/pay/b"] == 0


def test_an_idempotency_header_must_be_a_header_name(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(
        '[tasks.a]\nkind = "http"\nurl = "http://127.0.0.1:9/"\n'
        'idempotency_header = "Bad Header: x"\n'
    )
    r = invoke("run", spec)
    assert r.exit_code == 2
    assert "tasks.a.idempotency_header" in r.stderr
    assert "spec.toml:4" in r.stderr
