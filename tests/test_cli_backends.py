"""The CLI's backends: ``--backend``, ``--dask [ADDRESS]``, ``[run] backend``,
``[run.dask]``, per task and per group; Ctrl-C (a real SIGINT to the process group, as a
terminal sends it) leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from forkjoin.cli import bare_dask

from .conftest import Children

WORK = """
import os, time
from pathlib import Path

def crunch(n):
    return sum(i * i for i in range(n)), os.getpid()

def hang(marker_dir):
    Path(marker_dir, str(os.getpid())).write_text("")
    time.sleep(60)

def upper(line):
    return line.upper(), os.getpid()
"""


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    (tmp_path / "work.py").write_text(textwrap.dedent(WORK))
    return tmp_path


# this checkout's forkjoin, whatever the working directory of the command
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(
        str(Path(p).resolve()) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p
    ),
}


def forkjoin(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forkjoin", *args],
        capture_output=True, text=True, timeout=120, cwd=cwd, env=ENV,
    )  # fmt: skip


def write(spec_dir: Path, text: str) -> str:
    path = spec_dir / "spec.toml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_backend_flag_moves_python_tasks_only(spec_dir: Path, children: Children) -> None:
    spec = write(
        spec_dir,
        """
        [tasks.a]
        call = "work:crunch"
        args = [1000]
        [tasks.b]
        call = "work:crunch"
        args = [2000]
        [tasks.echo]
        argv = ["echo", "hi"]
        """,
    )
    r = forkjoin("run", spec, "--backend", "process")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)["results"]
    assert res["a"]["value"][0] == sum(i * i for i in range(1000))
    assert res["a"]["where"] == f"pid {res['a']['value'][1]}"
    assert res["b"]["where"].startswith("pid ")
    assert "where" not in res["echo"]  # a command runs where the run is
    assert "process 2 calls" in r.stderr  # the report says where calls ran


def test_spec_backends_the_most_specific_winning(spec_dir: Path, children: Children) -> None:
    spec = write(
        spec_dir,
        """
        [run]
        backend = "process"
        [groups.g]
        backend = "thread"
        [tasks.run_level]
        call = "work:crunch"
        args = [10]
        [tasks.in_group]
        call = "work:crunch"
        args = [10]
        group = "g"
        [tasks.own]
        call = "work:crunch"
        args = [10]
        group = "g"
        backend = "process"
        """,
    )
    r = forkjoin("run", spec)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)["results"]
    assert res["run_level"]["where"].startswith("pid ")
    assert res["in_group"]["where"] == "thread"
    assert res["own"]["where"].startswith("pid ")


@pytest.mark.parametrize(
    ("text", "args", "message"),
    [
        (
            '[tasks.c]\nargv = ["echo"]\nbackend = "process"\n',
            (),
            "spec.toml:3: tasks.c.backend: backend applies to python tasks",
        ),
        ('[run]\nbackend = "gpu"\n[tasks.a]\ncall = "work:crunch"\n', (), "run.backend: expected"),
        ('[tasks.a]\ncall = "work:crunch"\n', ("--backend", "gpu"), "--backend: expected one of"),
        (
            '[tasks.a]\ncall = "work:crunch"\n',
            ("--backend", "process", "--dask"),
            "--dask: give --backend or --dask, not both",
        ),
        (
            '[tasks.a]\ncall = "work:crunch"\n',
            ("--dask=cluster", "--quiet"),
            "--dask: expected a scheduler address",
        ),
        (
            '[run.dask]\naddress = "tcp://h:1"\nworkers = 2\n[tasks.a]\ncall = "work:crunch"\n',
            ("--backend", "dask"),
            "run.dask: DaskBackend: workers= and threads= size the cluster",
        ),
    ],
)
def test_bad_backends_are_one_line_and_exit_2(
    spec_dir: Path, text: str, args: tuple[str, ...], message: str
) -> None:
    r = forkjoin("run", write(spec_dir, text), *args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert r.stdout == ""


def test_an_unreachable_scheduler_is_one_line_and_exit_2(
    spec_dir: Path, children: Children
) -> None:
    spec = write(spec_dir, '[tasks.a]\ncall = "work:crunch"\nargs = [1]\n')
    r = forkjoin("run", spec, "--dask", "tcp://127.0.0.1:9")
    assert r.returncode == 2
    assert r.stderr.startswith("forkjoin: --dask: cannot reach the scheduler at tcp://127.0.0.1:9")
    assert len(r.stderr.strip().splitlines()) == 1


def test_bare_dask_means_a_local_cluster() -> None:
    assert bare_dask(["run", "s.toml", "--dask"]) == ["run", "s.toml", "--dask=local"]
    assert bare_dask(["run", "--dask", "s.toml"]) == ["run", "--dask=local", "s.toml"]
    assert bare_dask(["run", "--dask", "tcp://h:8786"]) == ["run", "--dask", "tcp://h:8786"]
    assert bare_dask(["run", "--dask", "h:8786", "s"]) == ["run", "--dask", "h:8786", "s"]
    assert bare_dask(["map", "--", "echo", "--dask"]) == ["map", "--", "echo", "--dask"]


def test_dask_flag_runs_python_tasks_on_a_local_cluster(spec_dir: Path, children: Children) -> None:
    spec = write(spec_dir, '[tasks.a]\ncall = "work:crunch"\nargs = [100]\n')
    r = forkjoin("run", spec, "--dask")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)["results"]["a"]
    assert res["value"][0] == sum(i * i for i in range(100))
    assert res["where"].startswith("tcp://127.0.0.1:")
    assert "LocalCluster started in" in r.stderr


def test_a_running_scheduler_from_the_flag_and_from_the_spec(
    spec_dir: Path, dask_cluster: Any, children: Children
) -> None:
    # the cluster's workers import what is installed, not the spec's directory: a stdlib call
    address = dask_cluster.scheduler_address
    info = dask_cluster.scheduler_info["workers"]  # address -> worker
    spec = write(spec_dir, '[tasks.a]\ncall = "os:getpid"\n')
    r = forkjoin("run", spec, "--dask", address)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)["results"]["a"]
    assert res["where"] in info
    assert isinstance(res["value"], int)
    assert "LocalCluster" not in r.stderr  # connected to it: nothing started
    spec = write(
        spec_dir,
        f'[run]\nbackend = "dask"\n[run.dask]\naddress = "{address}"\n'
        '[tasks.a]\ncall = "os:getpid"\n',
    )
    r = forkjoin("run", spec)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["results"]["a"]["where"] in info
    lines = spec_dir / "in.txt"
    lines.write_text("ab cd\nef\n")
    r = forkjoin("map", "--call", "string:capwords", "--dask", address, "--input", str(lines))
    assert r.returncode == 0, r.stderr
    assert sorted(json.loads(x)["value"] for x in r.stdout.splitlines()) == ["Ab Cd", "Ef"]


def test_map_call_on_the_process_backend(spec_dir: Path, children: Children) -> None:
    lines = spec_dir / "in.txt"
    lines.write_text("a\nb\nc\n")
    r = forkjoin("map", "--call", "work:upper", "--backend", "process", "--input", str(lines),
                 cwd=spec_dir)  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = [json.loads(x) for x in r.stdout.splitlines()]
    assert sorted(o["value"][0] for o in out) == ["A", "B", "C"]
    assert os.getpid() not in {o["value"][1] for o in out}
    bad = forkjoin("map", "--backend", "process", "--input", str(lines), "--", "echo", "{}")
    assert bad.returncode == 2
    assert "--backend: applies to --call" in bad.stderr


@pytest.mark.parametrize("flags", [("--backend", "process"), ("--dask",)])
def test_ctrl_c_leaves_no_process_behind(
    spec_dir: Path, children: Children, flags: tuple[str, ...]
) -> None:
    markers = spec_dir / "markers"
    markers.mkdir()
    spec = write(
        spec_dir,
        """
        [tasks.h1]
        call = "work:hang"
        args = ["{dir}"]
        [tasks.h2]
        call = "work:hang"
        args = ["{dir}"]
        """,
    )
    cli = subprocess.Popen(
        [sys.executable, "-m", "forkjoin", "run", spec, "--var", f"dir={markers}", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env=ENV,
    )  # fmt: skip
    try:
        # both calls are running in their workers (a bound on start-up, not a sleep)
        deadline = time.monotonic() + 90
        while len(os.listdir(markers)) < 2 and time.monotonic() < deadline:
            assert cli.poll() is None, cli.communicate()
            time.sleep(0.05)
        workers = {int(p) for p in os.listdir(markers)}
        assert len(workers) == 2
        started = psutil.Process(cli.pid).children(recursive=True)
        assert workers <= {p.pid for p in started}
        os.killpg(cli.pid, signal.SIGINT)  # Ctrl-C at a terminal: the whole group
        out, err = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)
            cli.wait()
    assert cli.returncode == 130, err
    res = json.loads(out)["results"]
    assert {o["status"] for o in res.values()} == {"cancelled"}
    # the processes end with the CLI or just after it (a worker notices its parent is gone):
    # a bound for the kernel to finish them, not a wait for luck
    _, alive = psutil.wait_procs(started, timeout=10)
    assert [(p.pid, p.cmdline()) for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
