"""Guarantee: a bad spec runs nothing and exits 2 with one line naming file:line:key.

Every spec below also holds a command that would leave a marker file: none of them may
run it, print results or write a traceback.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ..test_cli_helpers import invoke

BIG = "9" * 400

# (spec text after the marker task, line, key, what the message says)
CASES = {
    "unknown group": (
        '[tasks.a]\nargv = ["true"]\ngroup = "nogroup"\n',
        7, "tasks.a.group",
        "unknown group 'nogroup' (groups: none): declare it with [groups.nogroup]",
    ),
    "unknown group, groups declared": (
        '[groups.llm]\nlimit = 2\n\n[tasks.a]\nargv = ["true"]\ngroup = "lm"\n',
        10, "tasks.a.group", "unknown group 'lm' (groups: llm)",
    ),
    "a dotted name beside its table": (
        '[tasks."a.b"]\nargv = ["true"]\n\n[tasks.a.b]\nargv = ["true"]\n',
        8, "tasks.a", 'expected kind = "command"',
    ),
    "a 400-digit timeout": (
        f'[tasks.a]\nargv = ["true"]\ntimeout = {BIG}\n',
        7, "tasks.a.timeout", 'expected a duration like "5s", got 999',
    ),
    "a 400-digit timeout string": (
        f'[tasks.a]\nargv = ["true"]\ntimeout = "{BIG}s"\n',
        7, "tasks.a.timeout", 'expected a duration like "5s", got "999',
    ),
    "an exponent timeout": (
        '[tasks.a]\nargv = ["true"]\ntimeout = "1e308s"\n',
        7, "tasks.a.timeout", 'expected a duration like "5s", got "1e308s"',
    ),
    "a 400-digit deadline": (
        f'[run]\ndeadline = {BIG}\n',
        6, "run.deadline", 'expected a duration like "5s", got 999',
    ),
    "a 400-digit rate": (
        f'[run]\nrate = {BIG}\n',
        6, "run.rate", 'expected a rate like "5/s" or "60/min", got 999',
    ),
    "raw outside a url": (
        '[tasks.a]\nargv = ["echo", "{spec_dir!raw}"]\n',
        6, "tasks.a.argv.1", "!raw is for a URL",
    ),
    "raw in a shell command": (
        '[tasks.a]\nargv = "echo {spec_dir!raw}"\nshell = true\n',
        6, "tasks.a.argv", "!raw is for a URL",
    ),
    "a template after a backslash in a shell command": (
        '[tasks.a]\nargv = "echo \\\\{spec_dir}"\nshell = true\n',
        6, "tasks.a.argv", "a template right after a backslash",
    ),
    "an unknown variable": (
        '[tasks.a]\nurl = "http://127.0.0.1:9/{nope}"\n',
        6, "tasks.a.url", "unknown variable {nope}",
    ),
}  # fmt: skip

LINE = re.compile(r"^forkjoin: \S*spec\.toml:(?P<line>\d+): (?P<key>\S+): (?P<msg>[^\n]+)\n$")


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_spec_runs_nothing(tmp_path: Path, case: str) -> None:
    text, line, key, message = CASES[case]
    marker = tmp_path / "ran"
    spec = tmp_path / "spec.toml"
    spec.write_text(f'[tasks.first]\nargv = ["touch", "{marker}"]\nafter = []\n\n{text}')
    r = invoke("run", spec)
    assert r.exit_code == 2, r.stdout + r.stderr
    assert r.stdout == ""
    m = LINE.match(r.stderr)
    assert m is not None, r.stderr
    assert (int(m["line"]), m["key"]) == (line, key), r.stderr
    assert message in m["msg"]
    assert "Traceback" not in r.stderr
    assert not marker.exists()
