"""The command line's habits: what xargs and GNU parallel users reach for, and what every
command-line user expects (unknown options, -h, --version, flags, plain numbers)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from forkjoin.cli import COMMANDS, _mapcmd
from forkjoin.cli._usage import UsageError

ROOT = Path(__file__).resolve().parent.parent
FORKJOIN = [sys.executable, "-m", "forkjoin"]


def forkjoin(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FORKJOIN, *args], input=stdin, capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def lines_of(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


# -- options ------------------------------------------------------------------------------


def test_an_unknown_option_is_an_error_naming_it_and_nothing_runs(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    r = forkjoin("map", "--limit", "2", "--no-such", "now", "--", "touch", str(ran), stdin="x\n")
    assert r.returncode == 2
    assert r.stderr.startswith("forkjoin: map: unknown option --no-such")
    assert len(r.stderr.splitlines()) == 1
    assert r.stdout == ""
    assert not ran.exists()
    r = forkjoin("run", "--no-such", "spec.toml")
    assert r.returncode == 2
    assert r.stderr == "forkjoin: run: no such option: --no-such (see forkjoin run --help)\n"
    r = forkjoin("--no-such")
    assert (r.returncode, r.stderr.splitlines()[0][:33]) == (2, "forkjoin: unknown option '--no-su")


def test_options_after_the_command_belong_to_the_command() -> None:
    # as with xargs: the first bare word starts the command, and -- may come before it
    for argv in (["map", "echo", "-n", "--limit"], ["map", "--", "echo", "-n", "--limit"]):
        r = forkjoin(*argv, stdin="x\n")
        assert r.returncode == 0, r.stderr
        assert lines_of(r.stdout)[0]["value"]["stdout"] == "--limit x"  # type: ignore[index]


def test_version_and_h_on_every_command() -> None:
    from forkjoin import __version__

    assert forkjoin("--version").stdout == f"forkjoin {__version__}\n"
    top = forkjoin("-h")
    assert top.returncode == 0
    for name in COMMANDS:
        assert f"  {name}" in top.stdout
    for name in COMMANDS:
        r = forkjoin(name, "-h")
        assert r.returncode == 0, (name, r.stderr)
        assert r.stdout.lower().startswith(("usage: forkjoin " + name, "usage: forkjoin")), name
        assert "forkjoin " + name in r.stdout


def test_help_is_plain_text_with_flags_that_take_no_value() -> None:
    for args in ([], ["run"], ["map"], ["report"]):
        text = forkjoin(*args, "--help").stdout
        # no markup, no rich boxes, no "<bool>" after a flag
        for token in ("``", ":func:", ":class:", ":meth:", "╭", "<bool>"):
            assert token not in text, (args, token)
    assert "-q, --quiet" in forkjoin("run", "--help").stdout
    assert "-q, --quiet" in forkjoin("map", "--help").stdout
    assert "--var KEY=VALUE" in forkjoin("run", "--help").stdout


def test_the_command_list_is_the_typer_apps() -> None:
    # a new command needs its line in COMMANDS (what `forkjoin --help` lists and dispatches)
    from forkjoin.cli import app

    typer_commands = {c.name or c.callback.__name__ for c in app.registered_commands}  # type: ignore[union-attr]
    typer_commands |= {g.typer_instance.info.name for g in app.registered_groups}  # type: ignore[union-attr]
    assert typer_commands == set(COMMANDS)


def test_aliases_and_plain_numbers() -> None:
    parse = _mapcmd.parse
    assert parse(["-j", "3", "true"]).limit == parse(["--jobs", "3", "true"]).limit == 3
    assert parse(["--limit", "3", "true"]).limit == 3
    assert parse(["-k", "true"]).ordered
    assert parse(["--keep-order", "true"]).ordered
    # durations are seconds and rates per second when they are plain numbers
    args = parse(["--timeout", "5", "--rate", "10", "true"])
    options = _mapcmd.options_of(args)
    assert options["timeout"] == 5.0
    assert (options["rate"].rate, options["rate"].per) == (10.0, 1.0)
    units = _mapcmd.options_of(parse(["--timeout", "250ms", "--rate", "60/min", "x"]))
    assert units["timeout"] == 0.25
    for bad, message in (
        (["-j", "0", "true"], "--limit: expected a whole number >= 1, got '0'"),
        (["--timeout", "soon", "true"], '--timeout: expected a duration like "5s", got "soon"'),
        (["--rate", "lots", "true"], '--rate: expected a rate like "5/s" or "60/min", got "lots"'),
        (["--halt", "later", "true"], "--halt: expected now|soon[,fail=N|success=N] or never"),
    ):
        with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("|", r"\|")):
            parse(bad)


def test_keep_order_writes_input_order() -> None:
    stdin = "".join(f"{n}\n" for n in (0.3, 0.2, 0.1, 0.0))
    r = forkjoin("map", "-k", "-j", "4", "--", "sleep", stdin=stdin)
    assert [d["input"] for d in lines_of(r.stdout)] == ["0.3", "0.2", "0.1", "0.0"]


# -- results --------------------------------------------------------------------------------


def test_a_failed_line_keeps_its_exit_code_and_output() -> None:
    r = forkjoin("map", "--", "sh", "-c", "echo out-$0; echo err-$0 >&2; exit 3", stdin="a\n")
    assert r.returncode == 1
    assert lines_of(r.stdout) == [
        {
            "input": "a",
            "status": "failed",
            "error": "CommandFailed: exit code 3: err-a",
            "exit_code": 3,
            "stdout": "out-a\n",
            "stderr": "err-a\n",
        }
    ]


def test_a_timed_out_line_is_named_by_the_line_not_its_index() -> None:
    r = forkjoin("map", "--timeout", "0.3", "--", "sleep", stdin="0\n5\n")
    done = {d["input"]: d for d in lines_of(r.stdout)}
    assert done["5"]["status"] == "timed_out"
    assert done["5"]["error"] == "TaskTimeout: line '5' timed out after 0.3s"
    assert r.returncode == 1


# -- GNU parallel's habits ------------------------------------------------------------------


def test_halt_now_stops_the_lines_in_flight(tmp_path: Path) -> None:
    # one at a time: line 2 fails, so lines 3.. never start
    script = f"touch {tmp_path}/$0; [ $0 != 2 ]"
    r = forkjoin("map", "-j", "1", "--halt", "now,fail=1", "--", "sh", "-c", script,
                 stdin="1\n2\n3\n4\n")  # fmt: skip
    assert r.returncode == 1
    assert [d["input"] for d in lines_of(r.stdout)] == ["1", "2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "2"]
    assert "halted (now,fail=1)" in r.stderr
    # and the lines in flight are stopped: `sleep 30` does not hold the run up
    r = forkjoin("map", "-j", "2", "--halt", "now", "--", "sh", "-c", "sleep $0; exit 1",
                 stdin="0\n30\n")  # fmt: skip
    assert r.returncode == 1
    assert [d["input"] for d in lines_of(r.stdout)] == ["0"]


def test_halt_soon_lets_the_lines_in_flight_finish(tmp_path: Path) -> None:
    # two at a time: line 1 fails at once while line 2 runs on; no line after starts
    script = f"touch {tmp_path}/$0; sleep 0.$0; [ $0 != 1 ]"
    r = forkjoin("map", "-j", "2", "--halt", "soon,fail=1", "--", "sh", "-c", script,
                 stdin="1\n3\n5\n7\n")  # fmt: skip
    assert r.returncode == 1
    assert {d["input"]: d["status"] for d in lines_of(r.stdout)} == {"1": "failed", "3": "ok"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "3"]
    assert "halted (soon,fail=1)" in r.stderr


def test_halt_on_success_is_a_quorum() -> None:
    r = forkjoin("map", "-j", "3", "--halt", "now,success=1", "--", "sleep",
                 stdin="0\n30\n30\n")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert lines_of(r.stdout) == [
        {"input": "0", "status": "ok", "value": {"exit_code": 0, "stdout": "", "stderr": ""}}
    ]


def test_results_dir_has_a_file_per_line_and_no_line_names_a_path(tmp_path: Path) -> None:
    out = tmp_path / "results"
    hostile = f"../../{tmp_path.name}/escaped"  # a line is never a file name
    r = forkjoin("map", "--results", str(out), "--", "sh", "-c", 'echo "o:$0"; echo "e:$0" >&2; '
                 '[ "$0" != bad ]', stdin=f"good\nbad\n{hostile}\n")  # fmt: skip
    assert r.returncode == 1
    assert sorted(p.name for p in out.iterdir()) == ["000001.json", "000002.json", "000003.json"]
    assert not (tmp_path / "escaped").exists()
    docs = [json.loads((out / f"{i:06d}.json").read_text()) for i in (1, 2, 3)]
    assert docs[0]["line"] == 1
    assert docs[0]["input"] == "good"
    assert docs[0]["value"]["stdout"] == "o:good\n"
    assert docs[0]["attempts"] == 1
    assert docs[1] == {**docs[1], "status": "failed", "exit_code": 1, "stdout": "o:bad\n",
                       "stderr": "e:bad\n"}  # fmt: skip
    assert docs[2]["input"] == hostile


def test_joblog_is_one_readable_row_per_line(tmp_path: Path) -> None:
    log = tmp_path / "jobs.tsv"
    r = forkjoin("map", "-k", "--joblog", str(log), "--", "sh", "-c", '[ "$0" != 2 ]',
                 stdin="1\n2\n3\ttab\n")  # fmt: skip
    assert r.returncode == 1
    head, *rows = [line.split("\t") for line in log.read_text().splitlines()]
    assert head == ["line", "started", "runtime", "attempts", "status", "exit_code", "input",
                    "error"]  # fmt: skip
    assert [(row[0], row[4], row[5], row[6]) for row in rows] == [
        ("1", "ok", "0", "1"),
        ("2", "failed", "1", "2"),
        ("3", "ok", "0", "3\\ttab"),  # a tab in the input is escaped: one field
    ]
    assert rows[1][7] == "CommandFailed: exit code 1"
    assert rows[0][1][:2] == "20"
    assert float(rows[0][2]) >= 0


def test_bar_draws_progress_even_when_stderr_is_no_terminal() -> None:
    r = forkjoin("map", "--bar", "--call", "tests.test_map_cli_funcs:shout", stdin="a\nb\n")
    assert r.returncode == 0
    progress = [x for x in r.stderr.splitlines() if x.startswith("map: ") and "done" in x]
    assert progress
    assert progress[-1].startswith("map: 2/2 done")
    # without it, a pipe gets no progress at all
    r = forkjoin("map", "--call", "tests.test_map_cli_funcs:shout", stdin="a\nb\n")
    assert "done" not in r.stderr
    assert r.stderr == "map: 2 lines, 2 ok, 0 not ok in " + r.stderr.split(" in ", 1)[1]


def test_run_progress_is_forced_the_same_way(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text('[tasks.a]\nargv = ["true"]\n[tasks.b]\nargv = ["true"]\n')
    r = forkjoin("run", str(spec), "--progress", "--quiet")
    assert r.returncode == 0
    assert "run: 2/2 done" in r.stderr or "forkjoin: 2/2 done" in r.stderr


# -- start-up -------------------------------------------------------------------------------

_WATCHED = (
    "typer", "rich", "pydantic", "pydantic_core", "httpx", "tenacity", "asyncio", "ssl",
    "forkjoin._engine", "forkjoin._journal", "forkjoin._backends._dask",
    "forkjoin._backends._process", "shutil", "urllib.parse", "json", "random",
)  # fmt: skip
_PROBE = (
    "import atexit, sys\n"
    f"watched = {_WATCHED!r}\n"
    "atexit.register(lambda: sys.stderr.write('LOADED ' + ' '.join(m for m in watched"
    " if m in sys.modules) + '\\n'))\n"
    "from forkjoin.cli import main\n"
    "main()\n"
)


def loaded_by(*args: str, code: int = 0) -> set[str]:
    """Which of the watched modules ``forkjoin ARGS`` (one input line) has imported when
    it exits (with exit code ``code``)."""
    r = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], input="x\n", capture_output=True, text=True,
        timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == code, r.stderr
    last = r.stderr.splitlines()[-1]
    assert last.startswith("LOADED "), r.stderr
    return set(last.split()[1:])


def _asyncio_brings_ssl() -> bool:
    # CPython's asyncio.base_events imports ssl itself: a run cannot avoid it, only forkjoin's
    # own imports can
    probe = "import asyncio, sys; print('ssl' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    return r.stdout.strip() == "True"


@pytest.mark.parametrize("args", [["--version"], ["-V"], ["--help"], []])
def test_the_quick_commands_import_nothing_heavy(args: list[str]) -> None:
    # no engine, no event loop, no backend: the version and the help are constants
    r = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=60,
        cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == (0 if args else 2), r.stderr
    assert r.stderr.splitlines()[-1] == "LOADED ", r.stderr


_MAP_NEVER = {
    "typer", "rich", "pydantic", "pydantic_core", "httpx", "tenacity", "forkjoin._journal",
    "forkjoin._backends._dask", "forkjoin._backends._process",
}  # fmt: skip


@pytest.mark.parametrize(
    "args", [["map", "--", "true"], ["map", "--call", "json:dumps"], ["map", "-h"]]
)
def test_map_imports_only_the_engine(args: list[str]) -> None:
    loaded = loaded_by(*args)
    assert not loaded & _MAP_NEVER, loaded
    if "ssl" in loaded:
        assert "asyncio" in loaded, loaded
        assert _asyncio_brings_ssl(), loaded


def test_a_map_of_commands_loads_no_tls() -> None:
    # asyncio would import ssl (OpenSSL's libraries); a command per line makes no TLS
    # connection, so the program imports asyncio without it
    assert _asyncio_brings_ssl()  # else this test proves nothing
    loaded = loaded_by("map", "--", "true")
    assert "asyncio" in loaded
    assert "ssl" not in loaded


def test_a_map_of_commands_imports_neither_shutil_nor_urllib() -> None:
    # argparse's help formatter and the PATH search would import shutil (bz2, lzma,
    # fnmatch), the URL templates urllib.parse (ipaddress): 4 ms of an 80 ms start-up; json
    # (an ok command's line is written without it) and random (retry jitter) 3 % more
    unwanted = {"shutil", "urllib.parse", "json", "random"}
    assert unwanted.isdisjoint(loaded_by("map", "--", "true"))
    assert unwanted.isdisjoint(loaded_by("map", "--", "echo", "{}"))
    # a line that fails is written by the encoder, loaded then
    assert "json" in loaded_by("map", "--", "false", code=1)


def called_by_map(function: str) -> Any:
    """What ``tests.test_map_cli_funcs:FUNCTION`` returns when the ``forkjoin`` program
    (not a call of its main) runs it with ``map --call`` on one line."""
    r = subprocess.run(
        [sys.executable, "-c", _PROBE, "map", "--call", f"tests.test_map_cli_funcs:{function}"],
        input="x\n", capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["value"]


def test_a_map_that_may_use_tls_keeps_asyncios_tls() -> None:
    # --call runs the user's code, which may open TLS connections through asyncio
    assert called_by_map("tls_ready") is True


def test_the_garbage_collector_is_off_only_while_map_starts() -> None:
    # the program loads its modules with the collector off (they live until it ends) and
    # freezes them; the user's code, and the run, have it on
    assert called_by_map("collector") == [True, True]


def test_map_loads_the_journal_when_asked(tmp_path: Path) -> None:
    loaded = loaded_by("map", "--journal", str(tmp_path / "j.db"), "--", "true")
    assert {"asyncio", "forkjoin._engine", "forkjoin._journal"} <= loaded
    assert not loaded & (_MAP_NEVER - {"forkjoin._journal"}), loaded


def test_run_loads_what_it_needs() -> None:
    r = subprocess.run(
        [sys.executable, "-c", _PROBE, "run", "examples/research/spec.toml", "--quiet"],
        capture_output=True, text=True, timeout=90, cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    loaded = r.stderr.splitlines()[-1].split()[1:]
    assert {"typer", "pydantic", "httpx", "tenacity"} <= set(loaded)


def test_a_usage_error_leaves_no_results_or_log_behind(tmp_path: Path) -> None:
    out, log = tmp_path / "results", tmp_path / "jobs.tsv"
    for bad in (["--input", str(tmp_path / "missing.txt")], ["--call", "no_such_module_q:f"]):
        r = forkjoin("map", "--results", str(out), "--joblog", str(log), *bad, "--", "true")
        assert r.returncode == 2
        assert len(r.stderr.splitlines()) == 1
        assert not out.exists()
        assert not log.exists()


# the forkjoin program, with each posix_spawn noted on stderr: the program it starts, and
# whether asyncio had been imported by then
_SPAWNS = (
    "import os, sys\n"
    "def noted(spawn):\n"
    "    def spawned(path, *args, **kwargs):\n"
    "        sys.stderr.write(f'SPAWN {path} {\"asyncio\" in sys.modules}\\n')\n"
    "        return spawn(path, *args, **kwargs)\n"
    "    return spawned\n"
    "os.posix_spawn, os.posix_spawnp = noted(os.posix_spawn), noted(os.posix_spawnp)\n"
    "sys.argv = ['forkjoin', *sys.argv[1:]]\n"
    "from forkjoin.cli import main\n"
    "main()\n"
)


def spawns_of(*args: str) -> list[tuple[str, bool]]:
    """What ``forkjoin ARGS`` (one input line) spawned, in order, and whether it had
    imported asyncio by then."""
    r = subprocess.run(
        [sys.executable, "-c", _SPAWNS, *args], input="x\n", capture_output=True, text=True,
        timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    found = [line.split()[1:] for line in r.stderr.splitlines() if line.startswith("SPAWN ")]
    return [(path, loaded == "True") for path, loaded in found]


def test_a_map_of_commands_starts_its_watchdog_before_it_imports_asyncio() -> None:
    # the watchdog's own start-up then runs beside the imports, not in the way of the
    # first command (whose spawn waited for a core behind it)
    spawns = spawns_of("map", "--", "true")
    assert spawns[0] == (sys.executable, False)  # the watchdog, first
    assert [path for path, _ in spawns[1:]] == [shutil.which("true")]


def test_a_map_of_no_command_starts_no_watchdog() -> None:
    assert spawns_of("map", "--call", "json:dumps") == []


def test_a_watchdog_that_cannot_start_early_is_started_with_the_first_command() -> None:
    # the early start fails once (as a spawn can): the first command starts it again, and
    # runs guarded
    once = (
        "import os\n"
        "real, failed = os.posix_spawn, []\n"
        "def failing(*args, **kwargs):\n"
        "    if not failed:\n"
        "        failed.append(1)\n"
        "        raise OSError(11, 'try again')\n"
        "    return real(*args, **kwargs)\n"
        "os.posix_spawn = failing\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", once + _SPAWNS, "map", "--", "true"], input="x\n",
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    spawned = [line.split()[1] for line in r.stderr.splitlines() if line.startswith("SPAWN ")]
    assert spawned == [sys.executable, sys.executable, shutil.which("true")]
