"""`forkjoin run`: the four task kinds, templates and secrets, outputs and exit codes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .test_cli_helpers import http_server, invoke

ROOT = Path(__file__).resolve().parent.parent
FORKJOIN = [sys.executable, "-m", "forkjoin"]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with http_server() as url:
        yield url


def spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


# -- command -------------------------------------------------------------------------------


def test_command_templates_cannot_inject(tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    text = f"""
[vars]
name = "x; touch {pwned}"

[tasks.plain]
argv = ["echo", "hello {{name}}"]

[tasks.shell]
argv = "echo hello {{name}}"
shell = true
"""
    r = invoke("run", spec(tmp_path, text), "--quiet")
    assert r.exit_code == 0, r.stderr
    results = r.json()["results"]
    assert results["plain"]["value"]["stdout"] == f"hello x; touch {pwned}\n"
    # with shell = true the value is quoted: still one argument, never a second command
    assert results["shell"]["value"]["stdout"] == f"hello x; touch {pwned}\n"
    assert not pwned.exists()


def test_command_exit_codes_and_partial(tmp_path: Path) -> None:
    text = """
[tasks.ok]
argv = ["true"]

[tasks.grep_nothing]
argv = ["sh", "-c", "exit 1"]
ok_codes = [0, 1]

[tasks.broken]
argv = ["sh", "-c", "echo half done; echo bad thing >&2; exit 3"]
"""
    r = invoke("run", spec(tmp_path, text), "--quiet")
    assert r.exit_code == 1
    results = r.json()["results"]
    assert results["ok"]["status"] == "ok"
    assert results["grep_nothing"]["status"] == "ok"
    assert results["grep_nothing"]["value"]["exit_code"] == 1
    # a failed command keeps its exit code and output as fields, not only in the error
    assert results["broken"] == {
        "status": "failed",
        "error": "CommandFailed: exit code 3: bad thing",
        "exit_code": 3,
        "stdout": "half done\n",
        "stderr": "bad thing\n",
        "attempts": 1,
        "duration": results["broken"]["duration"],
    }
    assert invoke("run", spec(tmp_path, text), "--quiet", "--allow-partial").exit_code == 0
    # the spec can say so itself: [run] allow_partial
    partial = spec(tmp_path, "[run]\nallow_partial = true\n" + text)
    assert invoke("run", partial, "--quiet").exit_code == 0
    nothing_ok = spec(tmp_path, '[run]\nallow_partial = true\n[tasks.x]\nargv = ["false"]\n')
    assert invoke("run", nothing_ok, "--quiet").exit_code == 1


def test_command_output_is_capped_and_timeout_kills(tmp_path: Path) -> None:
    text = """
[tasks.big]
argv = ["sh", "-c", "head -c 100000 /dev/zero | tr '\\\\0' x"]
max_output = 1000

[tasks.hang]
argv = ["sleep", "30"]
timeout = "300ms"
"""
    started = time.monotonic()
    r = invoke("run", spec(tmp_path, text), "--quiet")
    assert time.monotonic() - started < 10
    results = r.json()["results"]
    assert results["big"]["value"]["stdout"] == "x" * 1000
    assert results["big"]["value"]["truncated"] is True
    assert results["hang"]["status"] == "timed_out"
    assert r.exit_code == 1


def test_defaults_retry_and_run_options(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    text = f"""
[run]
limit = 1
on_error = "collect"

[defaults]
retry = {{attempts = 3, backoff = "10ms"}}

[tasks.flaky]
argv = ["sh", "-c", "echo x >> {counter}; [ $(wc -l < {counter}) -ge 2 ]"]
"""
    r = invoke("run", spec(tmp_path, text), "--quiet")
    assert r.exit_code == 0, r.stdout
    assert r.json()["results"]["flaky"]["attempts"] == 2


# -- http ----------------------------------------------------------------------------------


def test_http_task_value_and_templates(tmp_path: Path, server: str) -> None:
    text = f"""
[vars]
base = "{server}"
product = "noise cancelling"

[tasks.get]
url = "{{base}}/echo/search"
query = {{q = "{{product}}", page = 2}}
headers = {{x-client = "forkjoin {{product}}"}}

[tasks.post]
method = "POST"
url = "{{base}}/echo/items"
json = {{name = "{{product}}", tags = ["a", "{{product}}"]}}

[tasks.teapot]
url = "{{base}}/status/418"
expect = [418]
"""
    r = invoke("run", spec(tmp_path, text), "--quiet")
    assert r.exit_code == 0, r.stderr
    results = r.json()["results"]
    got = results["get"]["value"]
    assert got["status"] == 200
    assert got["json"]["query"] == {"q": "noise cancelling", "page": "2"}
    assert got["json"]["headers"]["x-client"] == "forkjoin noise cancelling"
    posted = json.loads(results["post"]["value"]["json"]["body"])
    assert posted == {"name": "noise cancelling", "tags": ["a", "noise cancelling"]}
    assert results["teapot"]["value"]["status"] == 418


def test_http_errors_and_cap(tmp_path: Path, server: str) -> None:
    text = f"""
[tasks.unavailable]
url = "{server}/status/503"
retry = {{attempts = 2, backoff = "1ms"}}

[tasks.big]
url = "{server}/big?n=50000"
max_body = 100

[tasks.slow]
url = "{server}/slow?s=5"
timeout = "200ms"
"""
    r = invoke("run", spec(tmp_path, text), "--quiet")
    results = r.json()["results"]
    assert results["unavailable"]["status"] == "failed"
    assert results["unavailable"]["attempts"] == 2
    assert results["unavailable"]["error"].startswith("HTTPStatusError: 503")
    assert results["big"]["value"]["text"] == "x" * 100
    assert results["big"]["value"]["truncated"] is True
    assert results["slow"]["status"] == "timed_out"
    assert r.exit_code == 1


def test_env_secrets_are_redacted_everywhere(tmp_path: Path, server: str) -> None:
    secret = "s3cr3t-token-value"
    text = f"""
[vars]
token = "${{env:FJ_TEST_TOKEN}}"

[tasks.echo]
url = "{server}/echo/x"
headers = {{authorization = "Bearer {{token}}"}}

[tasks.fails]
url = "{server}/status/500?key={{token}}"
"""
    report = tmp_path / "report.json"
    out = tmp_path / "out.json"
    r = invoke(
        "run", spec(tmp_path, text), "--json", out, "--report-json", report,
        env={"FJ_TEST_TOKEN": secret},
    )  # fmt: skip
    written = out.read_text()
    assert secret not in written + r.stdout + r.stderr + report.read_text()
    doc = json.loads(written)
    assert doc["results"]["echo"]["value"]["json"]["headers"]["authorization"] == "Bearer ***"
    assert "key=***" in doc["results"]["fails"]["error"]
    assert "***" in r.stderr  # the report's error column, redacted
    assert r.stdout == ""


# -- sql -----------------------------------------------------------------------------------


def test_sqlite_parameterised(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("create table stock (sku text, qty int)")
        conn.executemany("insert into stock values (?, ?)", [("a", 1), ("b", 5), ("c", 9)])
    text = f"""
[vars]
min = 3
evil = "x' OR '1'='1"

[tasks.above]
dsn = "sqlite:///{db}"
query = "select sku, qty from stock where qty >= ? order by sku"
params = ["{{min}}"]

[tasks.named]
dsn = "sqlite:///{db}"
query = "select count(*) as n from stock where sku = :sku"
params = {{sku = "{{evil}}"}}

[tasks.missing_db]
dsn = "sqlite:///{tmp_path}/nope.db"
query = "select 1"
"""
    r = invoke("run", spec(tmp_path, text), "--quiet")
    results = r.json()["results"]
    assert results["above"]["value"] == [{"sku": "b", "qty": 5}, {"sku": "c", "qty": 9}]
    assert results["named"]["value"] == [{"n": 0}]  # a value, never SQL
    assert results["missing_db"]["status"] == "failed"
    assert not (tmp_path / "nope.db").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def postgres_dsn() -> Iterator[str]:
    """A throw-away PostgreSQL server (initdb + pg_ctl as the postgres user), if possible."""
    pytest.importorskip("asyncpg", reason="the postgres extra is not installed")
    initdb = shutil.which("initdb") or "/usr/local/bin/initdb"
    pg_ctl = str(Path(initdb).with_name("pg_ctl"))
    if not Path(initdb).exists() or os.geteuid() != 0 or not shutil.which("su"):
        pytest.skip("no PostgreSQL server can be started here (needs initdb, su and root)")
    base = Path(tempfile.mkdtemp(prefix="fj-pg-"))  # outside pytest's 0700 tmp folders
    data = base / "data"
    port = _free_port()

    def as_postgres(cmd: str) -> int:
        return subprocess.run(
            ["su", "postgres", "-c", cmd], capture_output=True, timeout=60
        ).returncode

    try:
        shutil.chown(base, "postgres")
        opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1"
        if as_postgres(f"{initdb} -A trust -U postgres -D {data}") or as_postgres(
            f"{pg_ctl} -D {data} -o '{opts}' -l {base}/log -w -t 30 start"
        ):
            pytest.skip("PostgreSQL did not start")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            as_postgres(f"{pg_ctl} -D {data} -m immediate -w stop")
        shutil.rmtree(base, ignore_errors=True)


def test_postgres_via_asyncpg(tmp_path: Path, postgres_dsn: str) -> None:
    text = f"""
[tasks.pg]
dsn = "{postgres_dsn}"
query = "select x, x * $1::int as y from generate_series(1, 3) as x"
params = [10]

[tasks.named_params]
dsn = "{postgres_dsn}"
query = "select 1"
params = {{a = 1}}
"""
    r = invoke("run", spec(tmp_path, text), "--quiet")
    assert r.exit_code == 2
    assert "tasks.named_params.params: PostgreSQL takes positional" in (r.stderr)
    r = invoke("run", spec(tmp_path, text.split("[tasks.named_params]")[0]), "--quiet")
    assert r.exit_code == 0, r.stdout
    rows = r.json()["results"]["pg"]["value"]
    assert rows == [{"x": 1, "y": 10}, {"x": 2, "y": 20}, {"x": 3, "y": 30}]


# -- python, setup, aggregate ----------------------------------------------------------------


MODULE = """
import asyncio
from contextlib import contextmanager

async def add(a, b, *, scale=1):
    await asyncio.sleep(0)
    return (a + b) * scale

def shout(text):
    return text.upper()

@contextmanager
def serve(greeting):
    yield {"greeting": greeting + "!"}

def total(results):
    return sum(v for v in results.ok_values().values() if isinstance(v, int))
"""


def test_python_tasks_setup_and_aggregate(tmp_path: Path) -> None:
    (tmp_path / "helpers_fj_test.py").write_text(MODULE)
    text = """
[vars]
n = 2

[setup]
call = "helpers_fj_test:serve"
kwargs = {greeting = "hi"}
provides = ["greeting"]

[aggregate]
call = "helpers_fj_test:total"

[tasks.sum]
call = "helpers_fj_test:add"
args = ["{n}", 3]
kwargs = {scale = 10}

[tasks.shout]
call = "helpers_fj_test:shout"
args = ["{greeting}"]
"""
    r = invoke("run", spec(tmp_path, text), "--quiet")
    assert r.exit_code == 0, r.stdout
    doc = r.json()
    assert doc["results"]["sum"]["value"] == 50  # "{n}" keeps the variable's type
    assert doc["results"]["shout"]["value"] == "HI!"
    assert doc["aggregate"] == 50


def test_report_json_and_report_command(tmp_path: Path) -> None:
    saved = tmp_path / "run.json"
    r = invoke("run", spec(tmp_path, '[tasks.a]\nargv = ["true"]\n'), "--report-json", saved)
    assert r.exit_code == 0
    assert "speedup" in r.stderr
    assert "tasks" in r.stderr
    data = json.loads(saved.read_text())
    assert data["version"] >= 1
    assert data["tasks"] == 1
    shown = invoke("report", saved)
    assert shown.exit_code == 0
    assert "speedup" in shown.stdout
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert invoke("report", bad).exit_code == 2
    assert invoke("report", tmp_path / "missing.json").exit_code == 2


def test_every_policy_of_a_spec_runs(tmp_path: Path) -> None:
    checks = [
        ("hedge", '[tasks.a]\nargv = ["true"]\nidempotent = true\nhedge = "1s"\n'),
        ("rate", '[groups.g]\nrate = "5/s"\n[tasks.a]\nargv = ["true"]\n'),
        ("adaptive", '[groups.g]\nadaptive = true\n[tasks.a]\nargv = ["true"]\n'),
        ("budget", '[run]\nbudget = 1.0\n[tasks.a]\nargv = ["true"]\n'),
    ]
    for key, text in checks:
        r = invoke("run", spec(tmp_path, text), "--quiet")
        assert r.exit_code == 0, (key, r.stderr)
        assert r.json()["results"]["a"]["status"] == "ok", key


def test_python_dash_m_and_help() -> None:
    r = subprocess.run([*FORKJOIN, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert "run" in r.stdout
    assert "map" in r.stdout
    assert "report" in r.stdout


def test_interrupt_prints_partial_results(tmp_path: Path) -> None:
    started = tmp_path / "started"
    text = f"""
[tasks.quick]
argv = ["true"]

[tasks.long]
argv = ["sh", "-c", "touch {started}; sleep 30"]
"""
    proc = subprocess.Popen(
        [*FORKJOIN, "run", str(spec(tmp_path, text))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        for _ in range(300):  # bounded: 30 s at most
            if started.exists():
                break
            time.sleep(0.1)
        assert started.exists()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    results = json.loads(out)["results"]
    assert results["quick"]["status"] == "ok"
    assert results["long"]["status"] == "cancelled"
    assert "tasks" in err


HEDGED = '''
import time
from pathlib import Path

def first_call_slow(marker):
    """The first call hangs; a duplicate answers at once (the slow-tail shape)."""
    path = Path(marker)
    if not path.exists():
        path.write_text("1")
        time.sleep(5)
        return "slow"
    return "fast"
'''


def test_hedge_wins_with_a_duplicate(tmp_path: Path) -> None:
    (tmp_path / "hedged_fj_test.py").write_text(HEDGED)
    text = f"""
[tasks.search]
call = "hedged_fj_test:first_call_slow"
args = ["{tmp_path / "marker"}"]
idempotent = true
hedge = "100ms"
timeout = "10s"
"""
    started = time.monotonic()
    r = invoke("run", spec(tmp_path, text), "--quiet")
    assert r.exit_code == 0, r.stdout
    assert r.json()["results"]["search"]["value"] == "fast"
    assert time.monotonic() - started < 4  # the 5 s first call was not waited for


def test_budget_skips_what_it_cannot_pay_for(tmp_path: Path) -> None:
    text = """
[run]
budget = 1.0
limit = 1

[tasks.first]
argv = ["true"]
cost = 0.6
priority = 2

[tasks.second]
argv = ["true"]
cost = 0.6
priority = 1
"""
    r = invoke("run", spec(tmp_path, text), "--report-json", tmp_path / "r.json")
    results = r.json()["results"]
    assert results["first"]["status"] == "ok"
    assert results["second"]["status"] == "skipped"
    assert results["second"]["reason"] == "budget"
    assert r.exit_code == 1
    assert "budget" in r.stderr


def test_html_timeline_from_run_and_report(tmp_path: Path) -> None:
    page = tmp_path / "run.html"
    saved = tmp_path / "run.json"
    text = '[vars]\nk = "${env:FJ_HTML_SECRET}"\n[tasks.a]\nargv = ["echo", "{k}"]\n'
    r = invoke(
        "run", spec(tmp_path, text), "--html", page, "--report-json", saved, "--quiet",
        env={"FJ_HTML_SECRET": "hunter2-secret"},
    )  # fmt: skip
    assert r.exit_code == 0
    html = page.read_text()
    assert html.lstrip().lower().startswith("<!doctype html")
    assert "hunter2-secret" not in html + saved.read_text() + r.stdout
    again = tmp_path / "again.html"
    shown = invoke("report", saved, "--html", again)
    assert shown.exit_code == 0
    assert again.read_text().lstrip().lower().startswith("<!doctype html")


def test_terminal_report_is_a_rich_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from forkjoin.cli import _app

    monkeypatch.setattr(_app, "_stderr_is_terminal", lambda: True)
    r = invoke("run", spec(tmp_path, '[tasks.a]\nargv = ["true"]\n'))
    assert r.exit_code == 0
    assert "\x1b[" in r.stderr  # styled for a terminal
    assert "\x1b[" not in r.stdout  # the JSON stays plain
    assert json.loads(r.stdout)["results"]["a"]["status"] == "ok"


def test_a_failing_setup_or_module_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken_setup_fj_test.py").write_text(
        "def serve():\n    raise OSError('port 80 is taken')\n"
    )
    (tmp_path / "broken_import_fj_test.py").write_text("raise RuntimeError('bad module')\n")
    marker = tmp_path / "ran"
    text = f"""
[setup]
call = "broken_setup_fj_test:serve"

[tasks.touch]
argv = ["touch", "{marker}"]
"""
    r = invoke("run", spec(tmp_path, text))
    assert r.exception is None
    assert r.exit_code == 1
    assert r.stderr == (
        "forkjoin: setup broken_setup_fj_test:serve failed: OSError: port 80 is taken\n"
    )
    assert not marker.exists()
    r = invoke("run", spec(tmp_path, '[tasks.a]\ncall = "broken_import_fj_test:f"\n'))
    assert r.exit_code == 2
    assert r.stderr.endswith(
        "spec.toml:2: tasks.a.call: importing 'broken_import_fj_test' failed: "
        "RuntimeError: bad module\n"
    )


def test_fail_fast_and_deadline_keep_every_outcome(tmp_path: Path) -> None:
    text = """
[run]
on_error = "fail_fast"

[tasks.broken]
argv = ["false"]

[tasks.slow]
argv = ["sleep", "30"]
"""
    started = time.monotonic()
    r = invoke("run", spec(tmp_path, text), "--quiet")
    results = r.json()["results"]
    assert r.exit_code == 1
    assert results["broken"]["status"] == "failed"
    assert results["slow"]["status"] == "cancelled"
    assert results["slow"]["reason"] == "fail_fast"
    text = (
        '[run]\ndeadline = "300ms"\n'
        '[tasks.quick]\nargv = ["true"]\n[tasks.slow]\nargv = ["sleep", "30"]\n'
    )
    r = invoke("run", spec(tmp_path, text), "--quiet", "--allow-partial")
    results = r.json()["results"]
    assert r.exit_code == 0  # partial success allowed
    assert results["quick"]["status"] == "ok"
    assert results["slow"]["reason"] == "deadline"
    assert time.monotonic() - started < 10


def test_http_429_retry_after_reaches_the_retry_policy(tmp_path: Path, server: str) -> None:
    key = tmp_path.name  # a fresh key: its first call gets 429 with Retry-After: 1
    text = f"""
[tasks.api]
url = "{server}/limited/{key}"
retry = {{ attempts = 3, backoff = "1ms" }}
"""
    r = invoke("run", spec(tmp_path, text), "--quiet")
    assert r.exit_code == 0, r.stdout
    api = r.json()["results"]["api"]
    assert api["value"]["json"] == {"call": 2}
    assert api["attempts"] == 2
    # the server's Retry-After (1 s), not the policy's 1 ms backoff, set the pause
    assert api["duration"] >= 0.9
