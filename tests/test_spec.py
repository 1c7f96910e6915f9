"""The spec parser: values, one-line errors with file:line: key path, and fuzzing."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic_core import PydanticCustomError

from forkjoin.cli._spec import SpecError, load_spec, parse_duration, parse_rate

from .test_cli_helpers import invoke

LOCATED = re.compile(r"^forkjoin: (?P<file>[^:\n]+):(?P<line>\d+): (?P<rest>[^\n]+)\n$")


def write(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, text), "spec.toml")
    return str(info.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("5s", 5.0), ("2m", 120.0), ("2min", 120.0), ("1h", 3600.0),
     ("1.5s", 1.5), (3, 3.0), (0.5, 0.5), ("5", 5.0), (" 2.5 ", 2.5)],
)  # fmt: skip
def test_durations(text: object, seconds: float) -> None:
    # a plain number is seconds, in a spec, on the command line ("5") and in Python
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["fast", "", "-1s", "0s", "0", "5 parsecs", 0, -2, True, None])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(PydanticCustomError, match="expected a duration like"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "rate"),
    [("5/s", (5.0, 1.0)), ("60/min", (60.0, 60.0)), ("10/5s", (10.0, 5.0)), ("100/h", (100, 3600)),
     ("5", (5.0, 1.0)), (5, (5.0, 1.0)), (2.5, (2.5, 1.0))],
)  # fmt: skip
def test_rates(text: str, rate: tuple[float, float]) -> None:
    # a plain number is per second
    assert parse_rate(text) == rate


@pytest.mark.parametrize("bad", ["5/fortnight", "0/s", "/s", "0", 0, -1, True, "fast"])
def test_bad_rates(bad: object) -> None:
    with pytest.raises(PydanticCustomError, match="expected a rate like"):
        parse_rate(bad)


ISSUE_EXAMPLE = """\
# research a product
[run]
limit = 4
deadline = "30s"

[defaults]
timeout = "5s"
retry = 3

[vars]
product = "headphones"

[tasks.amazon]
timeout = "fast"
url = "https://example.com/search?q={product}"
"""


def test_the_issue_example_error_line(tmp_path: Path) -> None:
    assert error_of(tmp_path, ISSUE_EXAMPLE) == (
        'spec.toml:14: tasks.amazon.timeout: expected a duration like "5s", got "fast"'
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[tasks.a]\nargv = ["true"]\nbogus = 1\n', "spec.toml:3: tasks.a.bogus: unknown key"),
        ("[tasks.a]\nshell = true\n", "spec.toml:1: tasks.a: expected kind ="),
        ('[tasks.a]\nkind = "ftp"\n', "spec.toml:1: tasks.a: expected kind ="),
        ('[tasks.a]\nkind = "command"\n', "spec.toml:1: tasks.a.argv: missing required key"),
        ("[tasks.a]\nargv = []\n", "spec.toml:2: tasks.a.argv: expected a non-empty list"),
        (
            '[tasks.a]\nargv = "ls"\n',
            "spec.toml:2: tasks.a.argv: a command line string needs shell",
        ),
        ("[run]\nlimit = 0\n[tasks.a]\nargv = ['x']\n", "spec.toml:2: run.limit: "),
        ("[run]\nlimit = '4'\n[tasks.a]\nargv = ['x']\n", "spec.toml:2: run.limit: expected"),
        ("[run]\non_error = 'never'\n[tasks.a]\nargv = ['x']\n", "spec.toml:2: run.on_error:"),
        (
            "[groups.llm]\nrate = 'lots'\n[tasks.a]\nargv = ['x']\n",
            'spec.toml:2: groups.llm.rate: expected a rate like "5/s" or "60/min", got "lots"',
        ),
        ("[tasks]\na = { argv = ['x'], timeout = 'soon' }\n", "spec.toml:2: tasks.a.timeout"),
        (
            '[tasks."my task"]\nargv = ["x"]\n\nretry = "often"\n',
            "spec.toml:4: tasks.my task.retry: expected a number of attempts",
        ),
        ("[tasks.a]\nurl = 'ftp://x'\n", "spec.toml:2: tasks.a.url: "),
        ("[tasks.a]\nquery = 'select 1'\n", "spec.toml:1: tasks.a.dsn: missing required key"),
        ("[tasks.a]\ncall = 'not a ref'\n", "spec.toml:2: tasks.a.call: "),
        (
            "[vars]\nx = {a = 1}\n[tasks.a]\nargv = ['x']\n",
            "spec.toml:2: vars.x: expected a string, number or boolean",
        ),
        ("[run]\nlimit = 2\n", "spec.toml:1: tasks: missing required key"),
        ("[tasks.a]\nargv = [\n  'x',\n  3,\n]\ntimeout = 'x'\n", "spec.toml:2: tasks.a.argv"),
        ("[tasks.a]\nargv = ['a']\n[tasks.a]\nargv = ['b']\n", "spec.toml:3: invalid TOML"),
        ("[tasks.a\n", "spec.toml:1: invalid TOML"),
        ("x = 'unterminated\n", "spec.toml:1: invalid TOML"),
    ],
)
def test_errors_name_the_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    message = error_of(tmp_path, text)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_multi_line_values_do_not_confuse_the_line_finder(tmp_path: Path) -> None:
    text = (
        '[vars]\ndoc = """\n[tasks.fake]\ntimeout = "x"\n"""\n'
        "[tasks.real]\nargv = [\n  'a', # [tasks.other]\n  'b',\n]\ntimeout = 'never'\n"
    )
    assert error_of(tmp_path, text).startswith("spec.toml:11: tasks.real.timeout")


def test_a_valid_spec_loads(tmp_path: Path) -> None:
    spec, _ = load_spec(write(tmp_path, ISSUE_EXAMPLE.replace('"fast"', '"2s"')))
    t = spec.tasks["amazon"]
    assert t.kind == "http"
    assert t.timeout == 2.0
    assert spec.defaults.retry is not None
    assert spec.defaults.retry.attempts == 3
    assert spec.run.deadline == 30.0


def test_bad_spec_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = (
        f'[tasks.touch]\nargv = ["touch", "{marker}"]\n\n'
        '[tasks.broken]\nargv = ["true"]\ntimeout = "fast"\n'
    )
    r = invoke("run", write(tmp_path, text))
    assert r.exit_code == 2
    assert LOCATED.match(r.stderr), r.stderr
    assert r.stdout == ""
    assert not marker.exists()


def test_unknown_variable_and_missing_env_are_located(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = f'[tasks.touch]\nargv = ["touch", "{marker}"]\n[tasks.b]\nargv = ["echo", "{{nope}}"]\n'
    r = invoke("run", write(tmp_path, text))
    assert r.exit_code == 2
    assert r.stderr.startswith("forkjoin: ")
    assert ":4: tasks.b.argv.1: unknown variable {nope}" in (r.stderr)
    text = '[tasks.b]\nurl = "http://x/"\nheaders = {auth = "${env:FORKJOIN_TEST_UNSET}"}\n'
    r = invoke("run", write(tmp_path, text), env={"FORKJOIN_TEST_UNSET": None})  # type: ignore[dict-item]
    assert r.exit_code == 2
    assert ":3: tasks.b.headers.auth: environment variable FORKJOIN_TEST_UNSET is not set" in (
        r.stderr
    )
    assert not marker.exists()


def test_bad_var_option_is_usage_error(tmp_path: Path) -> None:
    r = invoke("run", write(tmp_path, '[tasks.a]\nargv = ["true"]\n'), "--var", "novalue")
    assert r.exit_code == 2
    assert "--var: expected key=value" in r.stderr


def test_hedge_needs_idempotent(tmp_path: Path) -> None:
    text = '[tasks.a]\nargv = ["true"]\nhedge = "100ms"\n'
    r = invoke("run", write(tmp_path, text))
    assert r.exit_code == 2
    assert ":3: tasks.a.hedge: hedging starts a duplicate call" in r.stderr


def test_quorum_larger_than_the_tasks(tmp_path: Path) -> None:
    r = invoke("run", write(tmp_path, '[run]\nquorum = 3\n[tasks.a]\nargv = ["true"]\n'))
    assert r.exit_code == 2
    assert ":2: run.quorum: quorum 3 is larger" in r.stderr


def test_python_call_that_cannot_be_imported(tmp_path: Path) -> None:
    r = invoke("run", write(tmp_path, '[tasks.a]\ncall = "no_such_module_x:f"\n'))
    assert r.exit_code == 2
    assert ":2: tasks.a.call: cannot import 'no_such_module_x'" in r.stderr


# -- fuzzing: never a traceback, always exit 2 with a location -------------------------------

VALID = """\
[run]
limit = 2
on_error = "collect"

[defaults]
timeout = "5s"

[vars]
word = "hi"

[tasks.one]
call = "json:dumps"
args = ["{word}"]

[tasks.two]
kind = "python"
call = "json:loads"
args = ["[1, 2]"]
retry = 2
priority = 1
"""


def _check_outcome(tmp_path: Path, text: str) -> None:
    r = invoke("run", write(tmp_path, text), "--quiet")
    assert r.exception is None, f"traceback for:\n{text}\n{r.exception!r}"
    if r.exit_code == 2:
        m = LOCATED.match(r.stderr)
        assert m, f"no single located line: {r.stderr!r}"
        assert m.group("file").endswith("spec.toml")
        assert 1 <= int(m.group("line")) <= max(1, text.count("\n") + 1)
    else:
        assert r.exit_code in (0, 1), (r.exit_code, r.stderr)
        assert "results" in r.json()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(VALID)),
            st.integers(0, 6),
            st.text(alphabet=string.printable + "é\x00", max_size=6),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_fuzzed_toml_never_tracebacks(tmp_path: Path, edits: list[tuple[int, int, str]]) -> None:
    text = VALID
    for pos, delete, insert in edits:
        pos = min(pos, len(text))
        text = text[:pos] + insert + text[pos + delete :]
    _check_outcome(tmp_path, text)


KEYS = [
    ("run", "limit"), ("run", "deadline"), ("run", "on_error"), ("run", "quorum"),
    ("defaults", "timeout"), ("defaults", "retry"), ("tasks.one", "timeout"),
    ("tasks.one", "priority"), ("tasks.one", "retry"), ("tasks.one", "cost"),
    ("tasks.one", "args"), ("tasks.one", "call"), ("tasks.two", "group"),
    ("tasks.two", "hedge"), ("tasks.two", "idempotent"), ("vars", "word"),
]  # fmt: skip
VALUES = st.one_of(
    st.integers(-5, 5).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.sampled_from(["true", "false", '"fast"', '"5s"', '"0ms"', "[]", "{}", '"x:y"', "[1, 'a']"]),
    st.text(alphabet=string.ascii_letters + " {}$", max_size=8).map(lambda s: f'"{s}"'),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.sampled_from(KEYS), VALUES)
def test_bad_values_point_at_their_line(tmp_path: Path, key: tuple[str, str], value: str) -> None:
    table, name = key
    lines = VALID.splitlines()
    header = lines.index(f"[{table}]")
    # replace the key if the table has it, else add it under the header
    for i in range(header + 1, len(lines)):
        if lines[i].startswith("["):
            lines.insert(header + 1, f"{name} = {value}")
            line = header + 2
            break
        if lines[i].startswith(f"{name} ="):
            lines[i] = f"{name} = {value}"
            line = i + 1
            break
    text = "\n".join(lines) + "\n"
    r = invoke("run", write(tmp_path, text), "--quiet")
    assert r.exception is None, f"traceback for {key}={value}: {r.exception!r}"
    if r.exit_code == 2:
        m = LOCATED.match(r.stderr)
        assert m, r.stderr
        if f"{table}.{name}:" in m.group("rest") or f"{table}.{name}." in m.group("rest"):
            assert int(m.group("line")) == line, (text, r.stderr)
    else:
        assert r.exit_code in (0, 1)


def test_policies_reach_the_library(tmp_path: Path) -> None:
    import forkjoin as fj
    from forkjoin.cli._kinds import build_plan
    from forkjoin.cli._template import Redactor, Vars

    text = """
[run]
limit = 8
rate = "100/min"
budget = { usd = 2.5, tokens = 1000 }

[defaults]
timeout = "2s"
retry = { attempts = 4, backoff = "100ms", max_delay = "1s" }

[groups.llm]
adaptive = { initial = 2, max = 16 }
rate = "5/s"

[groups.db]
limit = 3
timeout = "30s"
retry = 5

[tasks.a]
call = "json:dumps"
args = [1]
group = "llm"
cost = 0.1
idempotent = true
hedge = { after = "250ms", max_extra = 2 }
retry = false
"""
    spec, keylines = load_spec(write(tmp_path, text))
    plan = build_plan(spec, keylines, Vars(Redactor()), tmp_path)
    o = plan.options
    assert o["limit"] == 8
    assert o["timeout"] == 2.0
    assert o["retry"] == fj.Retry(attempts=4, backoff=0.1, max_delay=1.0)
    assert isinstance(o["rate"], fj.RateLimit)
    assert isinstance(o["budget"], fj.Budget)
    assert isinstance(o["limits"]["llm"], fj.AdaptiveLimit)
    assert o["limits"]["db"] == 3
    assert isinstance(o["rates"]["llm"], fj.RateLimit)
    assert o["groups"]["db"] == fj.Group(timeout=30.0, retry=fj.Retry(attempts=5))
    t = plan.tasks["a"]
    assert t.retry is False
    assert t.group == "llm"
    assert t.cost == 0.1
    assert isinstance(getattr(t, "hedge", None), fj.Hedge)


def test_a_var_option_reading_a_missing_env_var(tmp_path: Path) -> None:
    spec = write(tmp_path, '[tasks.a]\nargv = ["echo", "{k}"]\n')
    r = invoke("run", spec, "--var", "k=${env:FJ_SURELY_UNSET}", env={"FJ_SURELY_UNSET": None})  # type: ignore[dict-item]
    assert r.exit_code == 2
    assert r.stderr == "forkjoin: --var k: environment variable FJ_SURELY_UNSET is not set\n"
    r = invoke("run", spec, "--var", "k=${env:FJ_SET}", env={"FJ_SET": "hidden-value"})
    assert r.exit_code == 0
    assert r.json()["results"]["a"]["value"]["stdout"] == "***\n"


def test_the_readme_spec_example_is_valid(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", readme, flags=re.S)
    assert blocks, "the README shows a spec"
    for block in blocks:
        spec, _ = load_spec(write(tmp_path, block))
        assert spec.tasks


# pydantic's own phrasing, which must never reach a user
_PYDANTIC_WORDS = re.compile(
    r"should|Input|input should|validation|pattern|dictionary|valid integer|valid string|"
    r"instance of|RunSpec|Spec\b|_Model|\^\(|\\w",
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[tasks]\n", "spec.toml:1: tasks: expected at least one task: add a [tasks.NAME] table"),
        ('[tasks.a]\nurl = "ftp://x"\n',
         'spec.toml:2: tasks.a.url: expected an http:// or https:// URL (or a {variable}), got '
         '"ftp://x"'),
        ('[tasks.a]\ndsn = "mysql://x"\nquery = "select 1"\n',
         'spec.toml:2: tasks.a.dsn: expected "sqlite:///path.db" or "postgresql://..."'),
        ('[tasks.a]\ncall = "nocolon"\n',
         'spec.toml:2: tasks.a.call: expected "module:function", e.g. "mypkg.tasks:score", got '
         '"nocolon"'),
        ('[tasks.a]\nurl = "http://x"\nidempotency_header = "Bad Header:"\n',
         'spec.toml:3: tasks.a.idempotency_header: expected an HTTP header name, e.g. '
         '"Idempotency-Key", got "Bad Header:"'),
        ('[tasks.a]\ndsn = "sqlite:///x.db"\nquery = ""\n',
         'spec.toml:3: tasks.a.query: expected a non-empty string, got ""'),
        ("[run]\nlimit = 0\n[tasks.a]\nargv = ['x']\n",
         "spec.toml:2: run.limit: expected a whole number >= 1, got 0"),
        ("[run]\nlimit = 2.5\n[tasks.a]\nargv = ['x']\n",
         "spec.toml:2: run.limit: expected a whole number, got 2.5"),
        ("[run]\non_error = 'explode'\n[tasks.a]\nargv = ['x']\n",
         'spec.toml:2: run.on_error: expected "collect" or "fail_fast", got "explode"'),
        ('[tasks.a]\nurl = "http://x"\nmethod = "FETCH"\n',
         'spec.toml:3: tasks.a.method: expected "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD" '
         'or "OPTIONS", got "FETCH"'),
        ('[tasks.a]\nargv = ["x"]\nidempotent = "yes"\n',
         'spec.toml:3: tasks.a.idempotent: expected true or false, got "yes"'),
        ('[tasks.a]\nargv = ["x"]\nenv = ["a"]\n',
         'spec.toml:3: tasks.a.env: expected a table, got ["a"]'),
        ('[tasks.a]\nurl = "http://x"\nexpect = [700]\n',
         "spec.toml:3: tasks.a.expect.0: expected a whole number <= 599, got 700"),
        ('[tasks.a]\nargv = ["x"]\ncost = -1\n',
         "spec.toml:3: tasks.a.cost: expected a number >= 0, got -1"),
        ("run = 5\n[tasks.a]\nargv = ['x']\n", "spec.toml:1: run: expected a table, got 5"),
        ('[tasks.a]\nurl = "http://x"\nheaders = {a = 1}\n',
         "spec.toml:3: tasks.a.headers.a: expected a string, got 1"),
        ('[setup]\ncall = "x:y"\nprovides = "a"\n[tasks.a]\nargv = ["x"]\n',
         'spec.toml:3: setup.provides: expected a list, got "a"'),
    ],
)  # fmt: skip
def test_errors_are_in_forkjoins_words(tmp_path: Path, text: str, expected: str) -> None:
    message = error_of(tmp_path, text)
    assert message.startswith(expected), message
    assert not _PYDANTIC_WORDS.search(message.removeprefix(expected)), message


_FIELDS = {
    "run": ["limit", "rate", "deadline", "on_error", "quorum", "budget", "allow_partial"],
    "defaults": ["timeout", "retry"],
    "groups.g": ["limit", "rate", "adaptive", "timeout", "retry"],
    "tasks.t": ["argv", "shell", "ok_codes", "cwd", "env", "stdin", "max_output", "group",
                "priority", "timeout", "retry", "cost", "idempotent", "hedge"],
    "tasks.h": ["url", "method", "headers", "query", "json", "body", "expect", "max_body",
                "follow_redirects"],
    "tasks.s": ["dsn", "query", "params", "max_rows"],
    "tasks.p": ["call", "args", "kwargs"],
    "setup": ["call", "kwargs", "provides", "skip_if_var"],
}  # fmt: skip
_BASE = {"tasks.t": 'argv = ["x"]', "tasks.h": 'url = "http://x"',
         "tasks.s": 'dsn = "sqlite:///x.db"\nquery = "select 1"', "tasks.p": 'call = "m:f"',
         "setup": 'call = "m:f"'}  # fmt: skip
_BAD = st.sampled_from(
    ['"nonsense"', "-7", "0", "3.5", "true", "[1, [2]]", "{x = 1}", '""', "[]", "{}", '"ftp://"']
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(_FIELDS)), st.data(), _BAD)
def test_no_bad_value_gets_pydantics_words(table: str, data: st.DataObject, bad: str) -> None:
    import tempfile

    key = data.draw(st.sampled_from(_FIELDS[table]))
    base = [line for line in _BASE.get(table, "").splitlines() if not line.startswith(key + " ")]
    body = "\n".join([*base, f"{key} = {bad}"])
    text = f"[{table}]\n{body}\n" + (
        "" if table.startswith("tasks.") else '[tasks.a]\nargv = ["x"]\n'
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.toml"
        path.write_text(text)
        try:
            load_spec(path, "spec.toml")
        except SpecError as e:
            message = str(e)
            assert message.startswith("spec.toml:"), message
            assert not _PYDANTIC_WORDS.search(message.split(": ", 2)[-1]), (text, message)
