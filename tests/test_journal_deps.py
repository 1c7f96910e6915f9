"""A journal with dependencies: a resumed dependency feeds its recorded value on, a
dependent is looked up on the arguments its references were filled with (so it runs
again when what it read changed), and a fan-out group spawns again while its tasks
resume — also across processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import forkjoin as fj


def _chain(calls: list[str], a_arg: int, b_fails: bool = False) -> dict[str, Any]:
    def a(n: int) -> dict[str, int]:
        calls.append("a")
        return {"n": n}

    def b(x: dict[str, int]) -> int:
        calls.append("b")
        if b_fails:
            raise RuntimeError("b is down")
        return x["n"] * 10

    def c(y: int) -> int:
        calls.append("c")
        return y + 1

    return {
        "a": fj.task(a, a_arg),
        "b": fj.task(b, fj.ref("a")),
        "c": fj.task(c, fj.ref("b")),
    }


def test_a_finished_chain_is_not_called_again(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    calls: list[str] = []
    first = fj.run(_chain(calls, 3), journal=journal)
    assert [first[k].value for k in "abc"] == [{"n": 3}, 30, 31]
    calls.clear()
    again = fj.run(_chain(calls, 3), journal=journal)
    assert calls == []
    assert [again[k].value for k in "abc"] == [{"n": 3}, 30, 31]
    assert all(again[k].resumed for k in "abc")


def test_a_resumed_dependency_feeds_its_recorded_value_to_what_failed(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    calls: list[str] = []
    first = fj.run(_chain(calls, 2, b_fails=True), journal=journal)
    assert first["b"].status is fj.Status.FAILED
    assert first["c"].status is fj.Status.SKIPPED
    calls.clear()
    again = fj.run(_chain(calls, 2), journal=journal)
    assert calls == ["b", "c"]  # a is resumed; b is given its recorded value
    assert again["a"].resumed
    assert not again["b"].resumed
    assert (again["b"].value, again["c"].value) == (20, 21)


def test_a_dependent_runs_again_when_what_it_read_changed(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    calls: list[str] = []
    fj.run(_chain(calls, 3), journal=journal)
    calls.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fj.JournalWarning)  # a's arguments changed
        again = fj.run(_chain(calls, 4), journal=journal)
    # a ran with 4, so b's filled-in argument is new: b and c run again, not resumed stale
    assert calls == ["a", "b", "c"]
    assert (again["b"].value, again["c"].value) == (40, 41)
    assert not again["b"].resumed


SCRIPT = """
import json, sys
import forkjoin as fj

calls = []

def search():
    calls.append("search")
    return [1, 2, 3]

def deep(x):
    calls.append(f"deep {x}")
    return x * 2

def total(xs):
    calls.append("total")
    return sum(xs)

tasks = {
    "search": search,
    "deep": fj.each("search", deep, fj.item()),
    "total": fj.task(total, fj.ref("deep")),
}
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    r = fj.run(tasks, journal=sys.argv[1])
print(json.dumps({
    "calls": calls,
    "values": {n: o.value for n, o in r.items()},
    "resumed": sorted(n for n, o in r.items() if o.resumed),
    "warnings": [str(w.message) for w in caught],
}))
"""


def test_a_fan_out_group_resumes_its_tasks_across_processes(tmp_path: Path) -> None:
    script = tmp_path / "deep.py"
    script.write_text(textwrap.dedent(SCRIPT))
    journal = str(tmp_path / "j.db")

    def run() -> dict[str, Any]:
        out = subprocess.run([sys.executable, str(script), journal], capture_output=True,
                             text=True, timeout=120, check=True)  # fmt: skip
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    first = run()
    assert first["values"]["total"] == 12
    second = run()  # another process: the function's repr (its address) differs
    assert second["warnings"] == []  # nothing is said to have changed
    assert second["calls"] == []  # every task of the group, and what read it, resumed
    assert second["values"] == first["values"]
    assert {"search", "deep/0", "deep/1", "deep/2", "total"} <= set(second["resumed"])
