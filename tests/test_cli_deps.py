"""`forkjoin run` with dependencies: `after`, result templates, `for_each`, their errors."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from .test_cli_helpers import http_server, invoke

LOCATED = re.compile(r"^forkjoin: \S*spec\.toml:(?P<line>\d+): (?P<rest>[^\n]+)\n$")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with http_server() as url:
        yield url


def write(tmp_path: Path, text: str, module: str = "", name: str = "") -> Path:
    if module:
        (tmp_path / f"{name}.py").write_text(module)
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def test_results_flow_into_later_tasks_and_for_each_fans_out(tmp_path: Path, server: str) -> None:
    module = """
def search(query):
    return {"query": query, "links": [{"id": "a1"}, {"id": "b 2/../x?y=1"}, {"id": "c3"}]}

def total(pages, query):
    return {"query": query, "ids": [p["json"]["path"] for p in pages]}
"""
    text = f"""
[vars]
base = "{server}"

[run]
limit = 2

[tasks.search]
call = "twophase_a:search"
args = ["headphones"]

[tasks.deep]
for_each = "{{tasks.search.value.links}}"
url = "{{base}}/echo/{{item.id}}"
query = {{q = "{{tasks.search.value.query}}"}}

[tasks.summary]
call = "twophase_a:total"
args = ["{{tasks.deep.value}}", "{{tasks.search.value.query}}"]

[tasks.announce]
argv = ["echo", "summary of {{tasks.summary.value.query}} done"]
after = ["deep/*"]
"""
    r = invoke("run", write(tmp_path, text, module, "twophase_a"), "--quiet")
    assert r.exit_code == 0, r.stderr
    res = r.json()["results"]
    assert list(res) == ["search", "deep", "summary", "announce", "deep/0", "deep/1", "deep/2"]
    # each element's id went into the URL as one path segment, percent-encoded
    paths = [res[f"deep/{i}"]["value"]["json"]["path"] for i in range(3)]
    assert paths == ["/echo/a1", "/echo/b%202%2F..%2Fx%3Fy%3D1", "/echo/c3"]
    assert res["deep/1"]["value"]["json"]["query"] == {"q": "headphones"}
    assert res["summary"]["value"] == {"query": "headphones", "ids": paths}
    assert res["announce"]["value"]["stdout"] == "summary of headphones done\n"
    assert res["deep"]["attempts"] == 0


def test_a_result_never_reaches_a_shell_or_a_url_as_structure(tmp_path: Path, server: str) -> None:
    pwned = tmp_path / "pwned"
    module = f"""
def hostile():
    return {{"cmd": "x; touch {pwned}", "link": "file:///etc/passwd",
             "next": "{server}/echo/fine"}}
"""
    text = """
[tasks.src]
call = "twophase_b:hostile"

[tasks.shell]
argv = "echo {tasks.src.value.cmd}"
shell = true

[tasks.argv]
argv = ["echo", "{tasks.src.value.cmd}"]

[tasks.file]
url = "{tasks.src.value.link}"

[tasks.follow]
url = "{tasks.src.value.next}"
"""
    r = invoke("run", write(tmp_path, text, module, "twophase_b"), "--quiet")
    res = r.json()["results"]
    assert res["shell"]["value"]["stdout"] == f"x; touch {pwned}\n"
    assert res["argv"]["value"]["stdout"] == f"x; touch {pwned}\n"
    assert not pwned.exists()
    assert res["file"]["status"] == "failed"
    assert "expected an http:// or https:// URL, got 'file:///etc/passwd'" in res["file"]["error"]
    assert res["follow"]["value"]["json"]["path"] == "/echo/fine"
    assert r.exit_code == 1


def test_a_failed_task_skips_what_reads_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = f"""
[tasks.broken]
argv = ["sh", "-c", "exit 3"]

[tasks.reads]
argv = ["touch", "{marker}", "{{tasks.broken.value.stdout}}"]

[tasks.after_reads]
argv = ["true"]
after = ["reads"]
"""
    r = invoke("run", write(tmp_path, text), "--quiet")
    assert r.exit_code == 1
    res = r.json()["results"]
    assert res["reads"]["status"] == "skipped"
    assert res["reads"]["reason"] == "dependency"
    assert "dependency 'broken' failed: CommandFailed: exit code 3" in res["reads"]["error"]
    assert res["after_reads"]["reason"] == "dependency"
    assert not marker.exists()


def test_a_path_missing_from_a_result_fails_that_task_naming_it(tmp_path: Path) -> None:
    text = """
[tasks.src]
argv = ["echo", "hi"]

[tasks.bad]
argv = ["echo", "{tasks.src.value.nothing.here}"]
"""
    r = invoke("run", write(tmp_path, text), "--quiet")
    res = r.json()["results"]
    assert res["bad"]["status"] == "failed"
    assert (
        "tasks.bad.argv.1: {tasks.src.value.nothing.here}: no key 'nothing'"
        in (res["bad"]["error"])
    )
    assert "keys: exit_code, stdout, stderr" in res["bad"]["error"]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            '[tasks.a]\nargv = ["true"]\nafter = ["b"]\n',
            3,
            "tasks.a.after.0: unknown task 'b' (tasks: a)",
        ),
        (
            '[tasks.a]\nargv = ["true"]\n\n[tasks.b]\nargv = ["echo", "{tasks.c.value}"]\n',
            5,
            "tasks.b.argv.1: {tasks.c.value} reads task 'c', which is not a task of this spec",
        ),
        (
            '[tasks.a]\nargv = ["echo", "{item}"]\n',
            2,
            "tasks.a.argv.1: {item} is the element of a task with for_each",
        ),
        (
            '[tasks.a]\nargv = ["echo", "{tasks.a}"]\n',
            2,
            "tasks.a.argv.1: expected {tasks.NAME.value}",
        ),
        (
            '[tasks.a]\nargv = ["true"]\n\n[tasks.b]\nfor_each = "{tasks.a.value} and more"\n'
            'argv = ["echo", "{item}"]\n',
            5,
            'tasks.b.for_each: expected one result to iterate over, like "{tasks.NAME.value.KEY}"',
        ),
        (
            '[tasks.a]\nargv = ["true"]\n\n[tasks.b]\nargv = ["true"]\nafter = ["a/*"]\n',
            6,
            "tasks.b.after.0: 'a/*' stands for the tasks of a for_each, and task 'a' has none",
        ),
        (
            '[tasks.a]\nargv = ["true"]\nafter = ["c"]\n\n[tasks.b]\nargv = ["true"]\n'
            'after = ["a"]\n\n[tasks.c]\nargv = ["echo", "{tasks.b.value.stdout}"]\n',
            3,
            "tasks.a.after: dependency cycle: 'a' waits for 'c', which waits for 'b', which "
            "waits for 'a'",
        ),
        (
            '[tasks.a]\nargv = ["true"]\nafter = 3\n',
            3,
            "tasks.a.after: expected a list, got 3",
        ),
        (
            '[vars]\nx = "{tasks.a.value}"\n\n[tasks.a]\nargv = ["true"]\n\n[setup]\n'
            'call = "os:getcwd"\nkwargs = {v = "{tasks.a.value}"}\n',
            9,
            "setup.kwargs.v: {tasks.a.value}: the results of tasks are read only in the fields",
        ),
    ],
)
def test_dependency_errors_name_the_file_line_and_key(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    marker = tmp_path / "ran"
    r = invoke("run", write(tmp_path, text.replace('"true"', f'"touch", "{marker}"')))
    assert r.exit_code == 2, r.stderr
    m = LOCATED.match(r.stderr)
    assert m, r.stderr
    assert int(m.group("line")) == line, r.stderr
    assert m.group("rest").startswith(message), r.stderr
    assert r.stdout == ""
    assert not marker.exists()  # nothing ran


def test_report_json_of_a_spec_has_its_critical_path(tmp_path: Path) -> None:
    text = """
[tasks.a]
argv = ["sleep", "0.2"]

[tasks.b]
argv = ["sleep", "0.2"]
after = ["a"]

[tasks.c]
argv = ["true"]
"""
    out = tmp_path / "report.json"
    r = invoke("run", write(tmp_path, text), "--quiet", "--report-json", out)
    assert r.exit_code == 0, r.stderr
    report = json.loads(out.read_text())
    assert report["critical_path"]["tasks"] == ["a", "b"]
    assert report["critical_path"]["duration"] >= 0.4
    again = invoke("report", out)
    assert "critical path" in again.stdout
