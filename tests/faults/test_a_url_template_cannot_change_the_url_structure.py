"""Guarantee: a value filled into a URL cannot add a path segment, a query or a fragment.

In ``url`` every template value is percent-encoded (reserved characters, ``%`` and a
value made only of dots included): in the path it is one segment, in the query one
value. Only the template that starts the URL (its base, e.g. ``{base}/items``) and the
explicit ``{name!raw}`` are taken as URL text. Checked against a real HTTP server on
127.0.0.1 that records the request target it received.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ..test_cli_helpers import invoke


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        # the request target exactly as sent: path, query and all
        body = json.dumps({"target": self.path}).encode()
        self.send_response(500 if self.path.startswith("/fail") else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _run(tmp_path: Path, base: str, url: str, value: str, *extra: str) -> dict[str, object]:
    spec = tmp_path / "spec.toml"
    spec.write_text(f'[tasks.t]\nurl = "{url}"\n')
    r = invoke("run", spec, "--quiet", "--var", f"base={base}", "--var", f"v={value}", *extra)
    assert r.exit_code == 0, r.stdout + r.stderr
    result: dict[str, object] = r.json()["results"]["t"]["value"]["json"]
    return result


@pytest.mark.parametrize(
    ("value", "target"),
    [
        ("../admin?role=root#frag", "/items/..%2Fadmin%3Frole%3Droot%23frag"),
        ("..", "/items/%2E%2E"),
        (".", "/items/%2E"),
        ("a/b", "/items/a%2Fb"),
        ("%2F..%2F", "/items/%252F..%252F"),
        ("x y+z;w", "/items/x%20y%2Bz%3Bw"),
        ("é/ü", "/items/%C3%A9%2F%C3%BC"),
        ("a.b", "/items/a.b"),
    ],
)
def test_a_value_in_the_path_is_one_segment(
    tmp_path: Path, base: str, value: str, target: str
) -> None:
    got = _run(tmp_path, base, "{base}/items/{v}", value)
    assert got["target"] == target


def test_a_value_in_the_query_is_one_value(tmp_path: Path, base: str) -> None:
    got = _run(tmp_path, base, "{base}/items?q={v}&page=1", "a&role=root#f=1")
    assert got["target"] == "/items?q=a%26role%3Droot%23f%3D1&page=1"


def test_a_result_is_encoded_the_same_way(tmp_path: Path, base: str) -> None:
    (tmp_path / "url_src.py").write_text("def path():\n    return '../admin?role=root#frag'\n")
    spec = tmp_path / "spec.toml"
    spec.write_text(
        '[tasks.src]\ncall = "url_src:path"\n\n[tasks.t]\nurl = "{base}/items/{tasks.src.value}"\n'
    )
    r = invoke("run", spec, "--quiet", "--var", f"base={base}")
    assert r.exit_code == 0, r.stderr
    assert r.json()["results"]["t"]["value"]["json"]["target"] == (
        "/items/..%2Fadmin%3Frole%3Droot%23frag"
    )


def test_raw_is_the_explicit_way_to_fill_url_text(tmp_path: Path, base: str) -> None:
    got = _run(tmp_path, base, "{base}/items/{v!raw}", "a/b?c=d")
    assert got["target"] == "/items/a/b?c=d"


def test_an_encoded_secret_is_still_redacted(tmp_path: Path, base: str) -> None:
    secret = "s3cr3t key&x"
    spec = tmp_path / "spec.toml"
    spec.write_text('[tasks.t]\nurl = "{base}/fail?key=${env:FJ_URL_SECRET}"\n')
    r = invoke("run", spec, "--var", f"base={base}", env={"FJ_URL_SECRET": secret})
    assert r.exit_code == 1
    error = r.json()["results"]["t"]["error"]
    assert "key=***" in error
    for shown in (secret, "s3cr3t%20key%26x"):
        assert shown not in r.stdout + r.stderr


@pytest.mark.parametrize("field", ["headers = { h = '{v!raw}' }", "query = { q = '{v!raw}' }"])
def test_raw_outside_a_url_is_a_spec_error(tmp_path: Path, base: str, field: str) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(f'[tasks.t]\nurl = "{base}/items"\n{field}\n')
    r = invoke("run", spec, "--quiet", "--var", "v=x")
    assert r.exit_code == 2
    assert r.stdout == ""
    assert "spec.toml:3: tasks.t." in r.stderr
    assert "!raw is for a URL" in r.stderr


def test_map_http_encodes_each_line_the_same_way(tmp_path: Path, base: str) -> None:
    import os
    import subprocess
    import sys

    lines = ["../admin?role=root#frag", "..", ".", "a/b", "a.b"]
    r = subprocess.run(
        [sys.executable, "-m", "forkjoin", "map", "--keep-order", "--http", "GET",
         f"{base}/items/{{}}"],
        input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    got = [json.loads(x)["value"]["json"]["target"] for x in r.stdout.splitlines()]
    assert got == [
        "/items/..%2Fadmin%3Frole%3Droot%23frag",
        "/items/%2E%2E",
        "/items/%2E",
        "/items/a%2Fb",
        "/items/a.b",
    ]
