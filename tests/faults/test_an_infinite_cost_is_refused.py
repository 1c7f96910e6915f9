"""A cost that is not a finite number >= 0 (inf, nan, negative) is refused where it is
given, with one clear line: ``fj.task(cost=...)`` raises InvalidPolicy naming the field,
and a spec's ``cost = inf`` is a file:line error (exit 2) before anything runs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import forkjoin as fj

from ..test_cli_helpers import invoke


def noop() -> None:
    return None


@pytest.mark.parametrize("cost", [math.inf, -math.inf, math.nan, -1.0])
def test_fj_task_refuses_a_cost_that_is_not_finite(cost: float) -> None:
    with pytest.raises(fj.InvalidPolicy, match=r"task\.cost: expected a finite number >= 0"):
        fj.task(noop, cost=cost)


@pytest.mark.parametrize("cost", ["inf", "+inf", "nan", "-1"])
def test_a_spec_cost_that_is_not_finite_is_a_file_line_error(tmp_path: Path, cost: str) -> None:
    marker = tmp_path / "ran"
    spec = tmp_path / "spec.toml"
    spec.write_text(f'[tasks.a]\nargv = ["touch", "{marker}"]\ncost = {cost}\n')
    r = invoke("run", spec)
    assert r.exit_code == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"forkjoin: {spec}:")  # file:line
    assert "tasks.a" in lines[0]
    assert "cost: expected a" in lines[0]
    assert "number >= 0" in lines[0]
    assert "Traceback" not in r.stderr
    assert not marker.exists()  # nothing ran
