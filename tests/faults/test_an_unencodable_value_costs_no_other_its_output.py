"""One value that JSON cannot hold (tuple keys, a circular structure, a 5,000-digit int,
an object whose repr raises, a very deep structure, NaN and infinities) never costs the
other results their output: stdout, ``--json``, ``--report-json``, ``forkjoin map`` lines
and ``--results`` files stay strict JSON, the value a marker in its place."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forkjoin.cli._render import dumps

from ..test_cli_helpers import invoke

MODULE = """
import math


class BadRepr:
    def __repr__(self):
        raise RuntimeError("no repr")


def deep():
    v = []
    for _ in range(100_000):
        v = [v]
    return v


def circular():
    d = {"ok": 1}
    d["self"] = d
    return d


VALUES = {
    "tuple_keys": lambda: {(1, 2): "a", "b": 2},
    "circular": circular,
    "big_int": lambda: 10 ** 5000,
    "bad_repr": lambda: [1, BadRepr()],
    "deep": deep,
    "not_finite": lambda: {"nan": math.nan, "inf": math.inf, "ninf": -math.inf},
    "fine": lambda: {"answer": 42},
}


def make(name):
    return VALUES[name]()


def per_line(line):
    return VALUES[line]()
"""

NAMES = ["tuple_keys", "circular", "big_int", "bad_repr", "deep", "not_finite", "fine"]


def strict(text: str) -> Any:
    def refuse(token: str) -> Any:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def markers(value: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if "$unencodable" in v:
                found.append(v)
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return found


def check_values(values: dict[str, Any]) -> None:
    assert values["fine"] == {"answer": 42}  # the other results are whole
    assert values["tuple_keys"] == {"(1, 2)": "a", "b": 2}
    assert values["circular"]["ok"] == 1
    assert markers(values["circular"]) == [{"$unencodable": "dict", "repr": "<circular reference>"}]
    assert values["big_int"] == {"$unencodable": "int", "repr": "<int of 16610 bits>"}
    assert values["bad_repr"] == [
        1,
        {"$unencodable": "BadRepr", "repr": "<repr raised RuntimeError>"},
    ]
    assert [m["$unencodable"] for m in markers(values["deep"])] == ["list"]
    assert values["not_finite"] == {
        "nan": {"$unencodable": "float", "repr": "nan"},
        "inf": {"$unencodable": "float", "repr": "inf"},
        "ninf": {"$unencodable": "float", "repr": "-inf"},
    }


@pytest.fixture
def module_dir(tmp_path: Path) -> Path:
    (tmp_path / "odd_values.py").write_text(MODULE)
    return tmp_path


@pytest.mark.parametrize("with_secret", [False, True])
def test_run_writes_every_result_as_strict_json(module_dir: Path, with_secret: bool) -> None:
    lines = ['[vars]\ntoken = "${env:FJ_FAULT_TOKEN}"\n'] if with_secret else []
    for name in NAMES:
        lines.append(f'[tasks.{name}]\ncall = "odd_values:make"\nargs = ["{name}"]\n')
    spec = module_dir / "spec.toml"
    spec.write_text("\n".join(lines))
    out, report = module_dir / "out.json", module_dir / "report.json"
    env = {"FJ_FAULT_TOKEN": "QXZJKVWY"} if with_secret else None
    r = invoke("run", spec, "--report-json", report, env=env)
    assert r.exit_code == 0, r.stderr
    doc = strict(r.stdout)
    check_values({n: doc["results"][n]["value"] for n in NAMES})
    assert all(doc["results"][n]["status"] == "ok" for n in NAMES)
    assert strict(report.read_text())["tasks"] == len(NAMES)
    r = invoke("run", spec, "--json", out, "--quiet", env=env)
    assert r.exit_code == 0
    check_values({n: v["value"] for n, v in strict(out.read_text())["results"].items()})


def test_map_writes_every_line_and_results_file_as_strict_json(module_dir: Path) -> None:
    results = module_dir / "results"
    env = {
        **os.environ,
        "PYTHONPATH": f"{module_dir}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    p = subprocess.run(
        [sys.executable, "-m", "forkjoin", "map", "--call", "odd_values:per_line",
         "--keep-order", "--results", str(results)],
        input="\n".join(NAMES) + "\n", capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    docs = [strict(line) for line in p.stdout.splitlines()]
    assert [d["input"] for d in docs] == NAMES
    assert all(d["status"] == "ok" for d in docs)
    check_values({d["input"]: d["value"] for d in docs})
    files = sorted(results.glob("*.json"))
    assert len(files) == len(NAMES)
    check_values({(d := strict(f.read_text()))["input"]: d["value"] for f in files})


JSON_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(),
    st.integers(min_value=10**4400, max_value=10**4500),
    st.builds(object), st.tuples(st.integers()), st.frozensets(st.integers()),
)  # fmt: skip
VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.one_of(st.text(), st.integers(), st.tuples(st.integers())), inner)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(VALUES, min_size=1, max_size=5))
def test_any_value_encodes_to_strict_json_beside_the_others(values: list[Any]) -> None:
    doc = {f"t{i}": {"value": v} for i, v in enumerate(values)} | {"fine": {"value": [1, "a"]}}
    for indent in (None, 2):
        back = strict(dumps(doc, indent=indent))
        assert back["fine"] == {"value": [1, "a"]}
        assert set(back) == set(doc)


def test_a_value_that_encodes_is_written_as_before() -> None:
    value = {"a": [1, 2.5, None, True], "b": "é", "c": (1, 2), "d": {1, 2}}
    assert dumps(value) == '{"a": [1, 2.5, null, true], "b": "é", "c": [1, 2], "d": [1, 2]}'
    assert not markers(strict(dumps({"x": math.pi})))
