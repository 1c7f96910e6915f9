"""Guarantee: a stopped command gets SIGTERM first, then SIGKILL after a grace (GRACE, less
than the engine's ABANDON_GRACE): one that traps SIGTERM is killed while the run goes on,
not abandoned, and its output pipes stay open meanwhile (a command that writes as it
stops must not die of SIGPIPE instead of its own way out)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from forkjoin._engine import ABANDON_GRACE
from forkjoin.cli._process import GRACE

from ._cli import BOUND, cli, gone, pid_of, spec


def test_a_command_trapping_sigterm_is_killed_after_the_grace(
    tmp_path: Path, children: Any, commands: list[Any]
) -> None:
    assert GRACE < ABANDON_GRACE  # killed before the run would give up on it
    said = tmp_path / "said"
    pid = tmp_path / "stubborn.pid"
    # it writes on stdout, notes the SIGTERM and carries on (its sleep, in the same group,
    # is killed by it and started again)
    stubborn = (
        f"trap 'echo stopping; echo TERM >> {said}' TERM; echo $$ > {pid}; "
        "while :; do sleep 0.05; done"
    )
    # ends once the stubborn command is gone: only its SIGKILL, by the run, ends the run
    # (the CLI's exit would kill it too, but the run would never get there)
    waiter = (
        f"while [ ! -s {pid} ]; do sleep 0.01; done; p=$(cat {pid}); "
        "while kill -0 $p 2>/dev/null; do sleep 0.01; done"
    )
    text = f"""
[tasks.stubborn]
argv = ["sh", "-c", "{stubborn}"]
timeout = "1s"

[tasks.waiter]
argv = ["sh", "-c", "{waiter}"]
timeout = "20s"
"""
    with cli("run", str(spec(tmp_path, text))) as proc:
        commands.append(pid_of(pid, proc))
        out, err = proc.communicate(timeout=BOUND)
    assert proc.returncode == 1, err
    results = json.loads(out)["results"]
    assert results["stubborn"]["status"] == "timed_out"
    assert results["stubborn"].get("reason") != "abandoned"  # killed, not left running
    assert results["waiter"]["status"] == "ok"  # it saw the stubborn one die, in the run
    assert said.read_text().split() == ["TERM"]  # asked first, once; it could still write
    assert gone(commands) == []
