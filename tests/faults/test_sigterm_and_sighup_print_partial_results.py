"""Guarantee: SIGTERM and SIGHUP get what Ctrl-C gets. ``forkjoin run`` and ``forkjoin map``
stop the run, stop the commands still running (by pid: gone), print what they have (the
partial results on stdout, the report on stderr) and exit 128 + the signal: 130 for
SIGINT, 143 for SIGTERM, 129 for SIGHUP."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from ._cli import BOUND, cli, gone, pid_of, spec

SIGNALS = [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]


@pytest.mark.parametrize(("sig", "code"), SIGNALS, ids=["INT", "TERM", "HUP"])
def test_run_prints_partial_results(
    tmp_path: Path, sig: int, code: int, children: Any, commands: list[Any]
) -> None:
    text = f"""
[tasks.quick]
argv = ["true"]

[tasks.long]
argv = ["sh", "-c", "echo $$ > {tmp_path}/long.pid; exec sleep 30"]
after = ["quick"]
"""
    with cli("run", str(spec(tmp_path, text))) as proc:
        long = pid_of(tmp_path / "long.pid", proc)  # quick has ended: long runs after it
        commands.append(long)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=BOUND)
    assert proc.returncode == code, err
    results = json.loads(out)["results"]
    assert results["quick"]["status"] == "ok"
    assert results["long"]["status"] == "cancelled"
    assert "tasks        2 (cancelled 1, ok 1)" in err
    assert "Traceback" not in err
    assert gone([long]) == []


@pytest.mark.parametrize(("sig", "code"), SIGNALS, ids=["INT", "TERM", "HUP"])
def test_map_prints_partial_results(
    tmp_path: Path, sig: int, code: int, children: Any, commands: list[Any]
) -> None:
    command = f"echo $$ > {tmp_path}/$1.pid; exec sleep $1"
    lines = tmp_path / "lines.txt"
    lines.write_text("0\n30\n")
    with cli("map", "--input", str(lines), "-j", "2", "--", "sh", "-c", command, "sh") as proc:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())  # written while `sleep 30` still runs
        long = pid_of(tmp_path / "30.pid", proc)
        commands.append(long)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=BOUND)
    assert proc.returncode == code, err
    assert first["input"] == "0"
    assert first["status"] == "ok"
    assert out == ""  # the line still running is not a result
    word = {130: "interrupted", 143: "terminated", 129: "hung up"}[code]
    assert err.startswith("map: 1 line, 1 ok, 0 not ok in "), err
    assert f"; {word}: lines still running were stopped" in err
    assert gone([long]) == []
