"""`forkjoin map`: JSON Lines per input line, streamed, with flat memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .test_cli_helpers import http_server, invoke

ROOT = Path(__file__).resolve().parent.parent
FORKJOIN = [sys.executable, "-m", "forkjoin"]


def lines_of(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def run_map(*args: str, stdin: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FORKJOIN, "map", *args], input=stdin, capture_output=True, text=True,
        timeout=timeout, cwd=ROOT,
    )  # fmt: skip


def test_call_per_line_keyed_by_input() -> None:
    r = run_map("--call", "tests.test_map_cli_funcs:shout", stdin="a\nboom\nc\n")
    assert r.returncode == 1
    got = {d["input"]: d for d in lines_of(r.stdout)}
    assert got["a"] == {"input": "a", "status": "ok", "value": "A"}
    assert got["c"]["value"] == "C"
    assert got["boom"]["status"] == "failed"
    assert got["boom"]["error"] == "ValueError: no boom allowed"
    assert "3 lines, 2 ok, 1 not ok" in r.stderr


def test_command_fills_each_argv_element_without_a_shell(tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    text = f"plain\nx; touch {pwned}\n"
    r = run_map("--ordered", "--", "echo", "<{}>", stdin=text)
    assert r.returncode == 0, r.stderr
    outs = [d["value"]["stdout"] for d in lines_of(r.stdout)]  # type: ignore[index]
    assert outs == ["<plain>\n", f"<x; touch {pwned}>\n"]
    assert not pwned.exists()
    # no {} in ARGV: the line is the last argument (as xargs does)
    r = run_map("--", "echo", "line:", stdin="one\n")
    assert lines_of(r.stdout)[0]["value"]["stdout"] == "line: one\n"  # type: ignore[index]


def test_ordered_output_follows_input_order() -> None:
    # later lines finish first (shorter sleeps), --ordered still writes them in input order
    stdin = "".join(f"{n}\n" for n in (0.3, 0.2, 0.1, 0.0))
    r = run_map("--ordered", "--limit", "4", "--", "sleep", stdin=stdin)
    assert [d["input"] for d in lines_of(r.stdout)] == ["0.3", "0.2", "0.1", "0.0"]
    r = run_map("--limit", "4", "--", "sleep", stdin=stdin)
    assert sorted(d["input"] for d in lines_of(r.stdout)) == ["0.0", "0.1", "0.2", "0.3"]


def test_http_variant_and_timeout_and_retry() -> None:
    with http_server() as base:
        r = run_map("--http", "get", f"{base}/item/{{}}", "--ordered", stdin="a b\nc/d\n")
        assert r.returncode == 0, r.stderr
        values = [d["value"]["json"] for d in lines_of(r.stdout)]  # type: ignore[index]
        assert values == [{"item": "a%20b"}, {"item": "c%2Fd"}]  # each line URL-quoted
        r = run_map("--http", "GET", f"{base}/slow?s={{}}", "--timeout", "200ms",
                    "--retry", "2", stdin="5\n")  # fmt: skip
        (doc,) = lines_of(r.stdout)
        assert doc["status"] == "timed_out"
        assert r.returncode == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give exactly one of"),
        (["--call", "json:dumps", "--", "echo"], "give exactly one of"),
        (["--call", "json:dumps", "--timeout", "soon"], '--timeout: expected a duration like "5s"'),
        (["--call", "json:dumps", "--rate", "lots"], "--rate: expected a rate like"),
        (["--call", "no_such_mod_q:f"], "--call: cannot import"),
        (["--http", "GET", "ftp://x/{}"], "--http: expected an http(s) URL"),
        (["--call", "json:dumps", "--input", "/nonexistent/in.txt"], "--input: /nonexistent"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    r = invoke("map", *args)
    assert r.exit_code == 2
    assert message in r.stderr, r.stderr


def test_results_stream_before_the_input_ends() -> None:
    proc = subprocess.Popen(
        [*FORKJOIN, "map", "--call", "tests.test_map_cli_funcs:shout"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        proc.stdin.write("first\n")
        proc.stdin.flush()
        # the result arrives while stdin is still open: streamed, not collected
        assert json.loads(proc.stdout.readline())["value"] == "FIRST"
        proc.stdin.write("second\n")
        proc.stdin.close()
        assert json.loads(proc.stdout.readline())["value"] == "SECOND"
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _peak_rss_kb(input_file: Path, out_file: Path) -> tuple[int, float]:
    """Run a map over ``input_file`` in a child; return its own peak RSS (KiB) and seconds."""
    started = time.monotonic()
    with out_file.open("w") as out:
        proc = subprocess.Popen(
            [*FORKJOIN, "map", "--limit", "100", "--quiet", "--input", str(input_file),
             "--call", "tests.test_map_cli_funcs:echo"],
            stdout=out, stderr=subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0
    return usage.ru_maxrss, time.monotonic() - started


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, Path]]:
    folder = tmp_path_factory.mktemp("map-input")
    made = {}
    for n in (100_000, 1_000_000):
        path = folder / f"{n}.txt"
        with path.open("w") as f:
            for start in range(0, n, 10_000):
                f.write("".join(f"line {i}\n" for i in range(start, min(n, start + 10_000))))
        made[n] = path
    return made


def test_a_million_lines_stream_with_flat_memory(inputs: dict[int, Path], tmp_path: Path) -> None:
    small, t_small = _peak_rss_kb(inputs[100_000], tmp_path / "small.jsonl")
    big, t_big = _peak_rss_kb(inputs[1_000_000], tmp_path / "big.jsonl")
    # every line came out, once
    with (tmp_path / "big.jsonl").open() as f:
        count = sum(1 for _ in f)
    assert count == 1_000_000
    last = json.loads((tmp_path / "big.jsonl").read_text()[-200:].splitlines()[-1])
    assert last["status"] == "ok"
    assert last["input"] == last["value"]
    # 10x the input, the same memory (within 15 MiB): nothing grows with the input
    print(f"peak RSS: 100k lines {small} KiB ({t_small:.1f}s), 1M lines {big} KiB ({t_big:.1f}s)")
    assert big - small < 15 * 1024, (small, big)


def test_interrupt_exits_130_after_what_was_written() -> None:
    import signal

    proc = subprocess.Popen(
        [*FORKJOIN, "map", "--limit", "2", "--", "sleep"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        proc.stdin.write("0\n30\n")
        proc.stdin.close()
        first = json.loads(proc.stdout.readline())  # written while `sleep 30` still runs
        assert first == {**first, "input": "0", "status": "ok"}
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 130
        assert time.monotonic() - started < 10  # the running command was stopped
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
