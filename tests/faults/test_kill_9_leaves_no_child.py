"""Guarantee: no command outlives the CLI, even one killed by ``kill -9`` (which runs no
handler): every command it started, and what a ``shell = true`` command started in turn,
is gone by pid soon after. A watchdog in a session of its own kills their process groups
once its pipe from the CLI closes; on a busy machine, where the CLI hands its commands to
spawner processes, each spawner kills the groups of its commands once its socket from the
CLI closes (both ways are run: ``_FORKJOIN_SPAWNERS=always`` forces the spawners)."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from ._cli import cli, gone, pid_of, spawners_of, spec, watchdog_of


@pytest.fixture(params=["here", "spawners"], autouse=True)
def spawn_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Commands started by the CLI itself, then by its spawners (the CLI inherits this)."""
    monkeypatch.setenv("_FORKJOIN_SPAWNERS", "never" if request.param == "here" else "always")
    return str(request.param)


def test_kill_9_of_run_leaves_no_command_and_no_shell_child(
    tmp_path: Path, commands: list[Any], spawn_mode: str
) -> None:
    text = f"""
[tasks.plain]
argv = ["sh", "-c", "echo $$ > {tmp_path}/plain.pid; exec sleep 30"]

[tasks.shell]
argv = "sleep 30 & echo $! > {tmp_path}/grandchild.pid; echo $$ > {tmp_path}/shell.pid; wait"
shell = true
"""
    with cli("run", str(spec(tmp_path, text))) as proc:
        commands += [
            pid_of(tmp_path / name, proc) for name in ("plain.pid", "shell.pid", "grandchild.pid")
        ]
        commands.append(watchdog_of(proc))  # it ends too, once it has done its work
        spawners = spawners_of(proc)
        assert bool(spawners) == (spawn_mode == "spawners")
        commands += spawners
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert gone(commands) == []


def test_kill_9_of_map_leaves_no_command(
    tmp_path: Path, commands: list[Any], spawn_mode: str
) -> None:
    command = f"echo $$ > {tmp_path}/$1.pid; exec sleep $1"
    lines = tmp_path / "lines.txt"
    lines.write_text("0\n30\n31\n")
    with cli("map", "--input", str(lines), "-j", "3", "--", "sh", "-c", command, "sh") as proc:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["input"] == "0"
        commands += [pid_of(tmp_path / f"{n}.pid", proc) for n in (30, 31)]
        commands.append(watchdog_of(proc))
        spawners = spawners_of(proc)
        assert bool(spawners) == (spawn_mode == "spawners")
        commands += spawners
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert gone(commands) == []


def test_the_watchdog_ends_with_the_cli(tmp_path: Path, children: Any, commands: list[Any]) -> None:
    go = tmp_path / "go"
    text = f"""
[tasks.a]
argv = ["sh", "-c", "echo $$ > {tmp_path}/a.pid; while [ ! -e {go} ]; do sleep 0.01; done"]
"""
    with cli("run", str(spec(tmp_path, text))) as proc:
        command = pid_of(tmp_path / "a.pid", proc)
        commands.append(command)
        watchdogs = [watchdog_of(proc)]
        assert watchdogs[0].pid != command.pid
        watchdogs += spawners_of(proc)  # they end with it too
        go.write_text("")
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert json.loads(out)["results"]["a"]["status"] == "ok"
    assert gone(watchdogs) == []
