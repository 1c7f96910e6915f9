"""Guarantee: a stopped command gets SIGTERM first, then SIGKILL after a grace (GRACE, less
than the engine's ABANDON_GRACE): one that traps SIGTERM cannot keep the run going past
its deadline plus the grace, and the CLI exits promptly with the command gone by pid."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from forkjoin._engine import ABANDON_GRACE
from forkjoin.cli._process import GRACE

from ._cli import BOUND, cli, gone, pid_of, spec


def test_a_command_trapping_sigterm_is_killed_after_the_grace(
    tmp_path: Path, children: Any
) -> None:
    assert GRACE < ABANDON_GRACE  # killed before the run would give up on it
    said = tmp_path / "said"
    # the shell notes the SIGTERM and carries on (its sleep, in the same group, is
    # killed by it and started again)
    script = (
        f"trap 'echo TERM >> {said}' TERM; echo $$ > {tmp_path}/stubborn.pid; "
        "while :; do sleep 0.05; done"
    )
    text = f"""
[run]
deadline = "2s"

[tasks.quick]
argv = ["true"]

[tasks.stubborn]
argv = ["sh", "-c", "{script}"]
"""
    started = time.monotonic()
    with cli("run", str(spec(tmp_path, text))) as proc:
        stubborn = pid_of(tmp_path / "stubborn.pid", proc)
        out, err = proc.communicate(timeout=BOUND)
    took = time.monotonic() - started
    assert proc.returncode == 1, err
    results = json.loads(out)["results"]
    assert results["quick"]["status"] == "ok"
    assert results["stubborn"]["status"] == "timed_out"
    assert results["stubborn"].get("reason") != "abandoned"  # killed, not left running
    assert said.read_text().split() == ["TERM"]  # asked first, once
    assert gone([stubborn]) == []
    assert took < BOUND / 3  # not the 30 s bound: deadline + grace, then the exit
