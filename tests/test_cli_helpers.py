"""Helpers for the CLI tests (no tests here): a local HTTP server and a CLI invoker."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from typer.testing import CliRunner

from forkjoin.cli import app


@dataclass
class Invocation:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None

    def json(self) -> Any:
        return json.loads(self.stdout)


def invoke(*args: str | Path, env: dict[str, str] | None = None) -> Invocation:
    """Run the CLI in-process, stdout and stderr kept apart."""
    result = CliRunner(env=env).invoke(app, [str(a) for a in args], catch_exceptions=True)
    exc = result.exception if not isinstance(result.exception, SystemExit) else None
    return Invocation(result.exit_code, result.stdout, result.stderr, exc)


_SEEN: dict[str, int] = {}
_SEEN_LOCK = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes

    def _send(self, code: int, body: bytes, ctype: str = "application/json",
              headers: dict[str, str] | None = None) -> None:  # fmt: skip
        # a client that timed out first has hung up: nothing to tell
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    def _handle(self) -> None:
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        parts = url.path.strip("/").split("/")
        if parts[0] == "echo":
            doc = {
                "method": self.command,
                "path": url.path,
                "query": query,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body,
            }
            self._send(200, json.dumps(doc).encode())
        elif parts[0] == "status":
            code = int(parts[1])
            self._send(code, b'{"error": "as asked"}', headers={"Retry-After": "0"})
        elif parts[0] == "slow":
            time.sleep(float(query.get("s", "1")))
            self._send(200, b'{"slow": true}')
        elif parts[0] == "big":
            self._send(200, b"x" * int(query.get("n", "100000")), ctype="text/plain")
        elif parts[0] == "limited":  # 429 with Retry-After: 1 on a key's first call
            with _SEEN_LOCK:
                n = _SEEN[parts[1]] = _SEEN.get(parts[1], 0) + 1
            if n == 1:
                self._send(429, b'{"error": "slow down"}', headers={"Retry-After": "1"})
            else:
                self._send(200, json.dumps({"call": n}).encode())
        elif parts[0] == "item":
            self._send(200, json.dumps({"item": parts[1]}).encode())
        else:
            self._send(404, b'{"error": "not found"}')

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

    def log_message(self, *args: object) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up early is part of the tests, not news on stderr


@contextmanager
def http_server() -> Iterator[str]:
    """A local HTTP server on 127.0.0.1 (an ephemeral port): /echo, /status/N, /slow?s=,
    /big?n=, /item/X, /limited/KEY (429 + Retry-After: 1 on a key's first call)."""
    server = _QuietServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
