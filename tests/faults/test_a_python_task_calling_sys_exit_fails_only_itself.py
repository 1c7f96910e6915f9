"""Guarantee: a CLI python task raising SystemExit or KeyboardInterrupt fails only itself.

The library re-raises these two from a run once every task is recorded (see
test_a_base_exception_never_hangs_the_run); for ``forkjoin run`` a user's function calling
``sys.exit(3)`` is that task's failure, not a request to stop the command line. The task
ends failed with the error, the other tasks keep their results, and the CLI exits 1 with
the JSON and the report, wherever the task ran (the loop, a thread, a process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MODULE = """
import sys

def exits():
    sys.exit(3)

def interrupts():
    raise KeyboardInterrupt

async def exits_async():
    raise SystemExit("bye")

def hands_back_a_coroutine():
    return exits_async()

def fine(x):
    return x * 2
"""


def _spec(backend: str | None) -> str:
    where = f'backend = "{backend}"\n' if backend else ""
    tasks = {
        "exits": "exits_mod:exits",
        "interrupts": "exits_mod:interrupts",
        "exits_async": "exits_mod:exits_async",
        "hands_back": "exits_mod:hands_back_a_coroutine",
    }
    text = "".join(f'[tasks.{n}]\ncall = "{c}"\n{where}\n' for n, c in tasks.items())
    return text + f'[tasks.fine]\ncall = "exits_mod:fine"\nargs = [21]\n{where}'


@pytest.mark.parametrize("backend", [None, "loop", "process"], ids=["default", "loop", "process"])
def test_the_task_fails_and_the_others_keep_their_results(tmp_path: Path, backend: str) -> None:
    (tmp_path / "exits_mod.py").write_text(MODULE)
    spec = tmp_path / "spec.toml"
    spec.write_text(_spec(backend))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    r = subprocess.run(
        [sys.executable, "-m", "forkjoin", "run", str(spec)],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    results = json.loads(r.stdout)["results"]
    assert results["fine"]["status"] == "ok"
    assert results["fine"]["value"] == 42
    errors = {n: results[n].get("error") for n in ("exits", "interrupts", "exits_async")}
    assert errors == {
        "exits": "TaskExit: the task raised SystemExit(3)",
        "interrupts": "TaskExit: the task raised KeyboardInterrupt",
        "exits_async": "TaskExit: the task raised SystemExit('bye')",
    }
    assert results["hands_back"]["error"] == "TaskExit: the task raised SystemExit('bye')"
    assert all(results[n]["status"] == "failed" for n in errors)
    # the report follows the JSON on stderr
    assert "tasks        5 (failed 4, ok 1)" in r.stderr
    assert "Traceback" not in r.stderr


LINES = """
import sys

def per_line(line):
    if line == "exit":
        sys.exit(3)
    if line == "interrupt":
        raise KeyboardInterrupt
    return line.upper()

async def per_line_async(line):
    if line == "exit":
        raise SystemExit(4)
    return line.upper()
"""


@pytest.mark.parametrize("fn", ["per_line", "per_line_async"])
def test_a_map_call_calling_sys_exit_fails_only_its_line(tmp_path: Path, fn: str) -> None:
    (tmp_path / "lines_mod.py").write_text(LINES)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    r = subprocess.run(
        [sys.executable, "-m", "forkjoin", "map", "--call", f"lines_mod:{fn}", "--keep-order"],
        input="a\nexit\ninterrupt\nb\n", capture_output=True, text=True, timeout=120,
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    out = [json.loads(x) for x in r.stdout.splitlines()]
    assert [o["input"] for o in out] == ["a", "exit", "interrupt", "b"]
    assert out[0]["value"] == "A"
    assert out[3]["value"] == "B"
    assert out[1]["status"] == "failed"
    assert "TaskExit: the task raised SystemExit" in out[1]["error"]
    if fn == "per_line":  # the sync one raises KeyboardInterrupt on that line
        assert out[2]["status"] == "failed"
        assert "TaskExit: the task raised KeyboardInterrupt" in out[2]["error"]
        assert "4 lines, 2 ok, 2 not ok" in r.stderr
    else:
        assert out[2]["value"] == "INTERRUPT"
        assert "4 lines, 3 ok, 1 not ok" in r.stderr
