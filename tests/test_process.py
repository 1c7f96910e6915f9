"""Commands as calls (cli/_process.py): posix_spawn and the per-loop epoll of children, the
spawner processes that take the spawns over on a busy machine, and asyncio's subprocesses
where those cannot serve (a cwd). Every path, the same contract."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from forkjoin.cli import _guard, _process
from forkjoin.cli._process import CommandFailed, run_command

pytestmark = pytest.mark.skipif(not _process.FAST, reason="posix_spawn + pidfd: Linux only")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def open_fds() -> set[int]:
    # an earlier test's unreachable objects may close their fds at any moment: collect them
    # first, so a number that goes away is not this test's doing
    gc.collect()
    # the listing's own fd is in it: left out, as its number depends on what is free
    listing = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
    try:
        return {int(fd) for fd in os.listdir(listing)} - {listing}
    finally:
        os.close(listing)


def fds_after_a_first_command() -> set[int]:
    """The open fds once a command has run: what lives as long as the process (the
    watchdog's pipe, once an earlier test asked for it) is then open already."""
    run(run_command(["true"]))
    return open_fds()


def assert_no_new_fds(before: set[int]) -> None:
    # threads of this process that other tests started (the session's Dask cluster, whose
    # monitor reads /proc/net/dev) open and close fds of their own at any moment: a new fd
    # that stays open for seconds is a leak, one that closes again is theirs
    deadline = time.monotonic() + 5
    seen: dict[int, str] = {}  # what each fd was when first seen (it may close meanwhile)
    while new := open_fds() - before:
        for fd in new:
            seen.setdefault(fd, _target(fd))
        if time.monotonic() > deadline:
            raise AssertionError(f"fds left open: { {fd: seen[fd] for fd in new} }")
        time.sleep(0.005)


def _target(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


@pytest.fixture
def spawners(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every command goes through spawner processes; they are ended (by pid) afterwards."""
    monkeypatch.setattr(_process, "_MODE", "always")
    yield
    _process.close_spawners()


@pytest.fixture(params=["spawn", "spawner", "asyncio"])
def path(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Run each test on every path: a spawner's, and a cwd sends a command to asyncio's
    subprocesses."""
    if request.param == "spawner":
        request.getfixturevalue("spawners")
    return {"cwd": str(tmp_path)} if request.param == "asyncio" else {}


def test_output_exit_code_stdin_and_the_cap(path: dict[str, Any]) -> None:
    async def main() -> list[Any]:
        return [
            await run_command(["sh", "-c", "echo out; echo err >&2"], **path),
            await run_command(["cat"], stdin="fed\n", **path),
            await run_command(["cat"], stdin="y" * 300_000, max_output=100, **path),
            await run_command("echo $0", shell=True, **path),
        ]

    plain, fed, capped, shell = run(main())
    assert plain == {"exit_code": 0, "stdout": "out\n", "stderr": "err\n"}
    assert fed["stdout"] == "fed\n"
    # the rest was read and dropped: a big writer never blocks on a full pipe
    assert capped == {"exit_code": 0, "stdout": "y" * 100, "stderr": "", "truncated": True}
    assert shell["stdout"] == "/bin/sh\n"


def test_a_failed_command_keeps_its_code_and_output(path: dict[str, Any]) -> None:
    with pytest.raises(CommandFailed) as info:
        run(run_command(["sh", "-c", "echo partial; echo broken >&2; exit 3"], **path))
    assert str(info.value) == "exit code 3: broken"
    assert info.value.fields() == {"exit_code": 3, "stdout": "partial\n", "stderr": "broken\n"}


def test_a_missing_program_raises_and_leaks_nothing() -> None:
    before = fds_after_a_first_command()
    with pytest.raises(FileNotFoundError):
        run(run_command(["no-such-program-here"]))
    assert_no_new_fds(before)


def test_a_timeout_kills_the_whole_group_and_reaps(path: dict[str, Any], tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"

    async def main() -> None:
        cmd = f"sleep 30 & echo $! > {pidfile}; wait"
        await asyncio.wait_for(run_command(["sh", "-c", cmd], **path), 0.5)

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        run(main())
    assert time.monotonic() - started < 5
    assert not _guard.running()  # reaped before its call returned
    grandchild = int(pidfile.read_text())
    _gone(grandchild)


def test_a_cancelled_call_returns_once_its_command_is_reaped(path: dict[str, Any]) -> None:
    async def main() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(run_command(["sleep", "30"], **path), 0.2)
        # at once, with no loop pass in between: the call waited for the reap itself
        assert not _guard.running()

    run(main())


def _gone(pid: int) -> None:
    for _ in range(200):  # SIGKILL is delivered at once; its reaping by init may lag
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split()[2] == "Z":
                    return
        except FileNotFoundError:
            return
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    pytest.fail(f"process {pid} outlived its command's timeout")


def test_cancelling_never_waits_for_a_process_that_left_the_group() -> None:
    # the command exits at once, but a process it started in a session of its own keeps the
    # pipes open: a cancelled call must not wait for it
    async def main() -> None:
        await asyncio.wait_for(run_command(["sh", "-c", "setsid sleep 5 & exit 0"]), 0.3)

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        run(main())
    assert time.monotonic() - started < 3


def test_a_child_that_outlives_its_pipes_is_still_reaped(monkeypatch: pytest.MonkeyPatch) -> None:
    closes_early = ["sh", "-c", "exec >&- 2>&-; sleep 0.2; exit 4"]
    assert run(run_command(closes_early, ok_codes=(4,)))["exit_code"] == 4

    # without pidfd_open (a sandbox, valgrind) it is asked for on a timer instead
    def no_pidfd(pid: int) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(_process.os, "pidfd_open", no_pidfd)
    assert run(run_command(closes_early, ok_codes=(4,)))["exit_code"] == 4


def test_many_children_at_once_share_one_epoll_which_closes_when_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_process, "_MODE", "never")  # started here, each at once
    before = fds_after_a_first_command()

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        calls = [asyncio.ensure_future(run_command(["echo", str(i)])) for i in range(200)]
        await asyncio.sleep(0)
        assert len(_process._WATCHERS[loop].handlers) == 400  # two pipes each, one epoll
        out = await asyncio.gather(*calls)
        await asyncio.sleep(0)  # the idle watcher closes on the next loop pass
        assert loop not in _process._WATCHERS
        return out

    results = run(main())
    assert [r["stdout"] for r in results] == [f"{i}\n" for i in range(200)]
    assert_no_new_fds(before)


def test_a_child_sees_its_env_and_default_signals(tmp_path: Path) -> None:
    tool = tmp_path / "bin" / "mytool"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\necho mine $FOO\n")
    tool.chmod(0o755)

    async def main() -> list[Any]:
        return [
            # a PATH of the command's own decides where its program is found
            await run_command(["mytool"], env={"PATH": f"{tool.parent}:/usr/bin:/bin", "FOO": "x"}),
            # the base environment can be given as bytes, once for many commands
            await run_command(["sh", "-c", "echo $BAR"], environ={b"BAR": b"b", b"PATH": b"/bin"}),
            await run_command(
                ["sh", "-c", "echo $BAR $FOO"],
                environ={b"BAR": b"b", b"PATH": b"/bin"},
                env={"FOO": "f"},
            ),
            # SIGPIPE is the default again in the child (Python ignores it): `yes` ends
            await run_command(["sh", "-c", "yes | head -2"]),
        ]

    mine, bytes_env, merged, piped = run(main())
    assert mine["stdout"] == "mine x\n"
    assert bytes_env["stdout"] == "b\n"
    assert merged["stdout"] == "b f\n"
    assert piped == {"exit_code": 0, "stdout": "y\ny\n", "stderr": ""}


def _owed() -> bool:
    """Whether a spawner of the running loop still owes a reply (a pid, an error)."""
    group = _process._LOOP_SPAWNERS.get(asyncio.get_running_loop())
    return group is not None and any(s.waiting for s in group.all)


def _spawner_pids() -> set[int]:
    """The spawners of the running loop."""
    group = _process._LOOP_SPAWNERS.get(asyncio.get_running_loop())
    return {s.pid for s in group.all} if group is not None else set()


def test_a_busy_machine_hands_the_spawns_to_spawners(monkeypatch: pytest.MonkeyPatch) -> None:
    # the first spawn ends a window it held most of, in a process that guards its commands
    # (as the CLI does)
    monkeypatch.setattr(_process, "_MODE", "auto")
    monkeypatch.setattr(_process, "_WINDOW", 0.0)
    monkeypatch.setattr(_process, "_HELD_SHARE", -1.0)
    monkeypatch.setattr(_process, "_window_began", -1.0)
    monkeypatch.setattr(_process, "_window_held", 0.0)
    _process.guard_children()

    async def main() -> tuple[list[int], list[int], set[int]]:
        async def parent() -> int:  # a command that says who started it
            return int((await run_command(["sh", "-c", "echo $PPID"]))["stdout"])

        first = await parent()  # asks for spawners
        # started in one loop pass, before a spawner can say it is up: none is held for it
        together = await asyncio.gather(*(parent() for _ in range(3)))
        later: list[int] = []
        deadline = time.monotonic() + 30  # a bounded poll for the spawner, not a timing claim
        while len(later) < 3 or later[-1] == os.getpid():
            assert time.monotonic() < deadline, "no spawner took a command"
            later.append(await parent())
        return [first, *together], later, _spawner_pids()

    try:
        here, later, spawner_pids = run(main())
    finally:
        _process.close_spawners()
    assert here == [os.getpid()] * 4
    assert len(spawner_pids) == 1  # one at a time: each command ended before the next
    cut = later.index(next(p for p in later if p != os.getpid()))
    assert set(later[:cut]) <= {os.getpid()}  # here until it was up, then through it
    assert set(later[cut:]) == spawner_pids
    assert not [pid for pid in spawner_pids if _running(pid)]  # closed: ended and reaped


@pytest.mark.parametrize(
    ("spawns", "wanted"),
    [
        # (began, held) in seconds, from the window's start (0.1 s, more than 75 % held)
        ([(0.0, 0.06), (0.06, 0.06)], True),  # held all of 120 ms: a busy machine
        ([(0.0, 0.04), (0.05, 0.04), (0.1, 0.01)], True),  # 90 of 110 ms
        ([(i * 0.0025, 0.0015) for i in range(41)], False),  # 61 % of 101 ms: waves of spawns
        ([(i * 0.002, 0.0019) for i in range(40)], False),  # 80 ms: not a window yet
        ([(0.0, 0.04), (0.05, 0.04), (0.2, 0.0001)], False),  # 80 of 200 ms
        ([(0.0, 0.001), (0.3, 0.001), (0.3, 0.06), (0.36, 0.06)], True),  # a new window
        ([(0.0, 0.005), (0.01, 0.005), (0.02, 0.005)], True),  # three slow ones in a row
        ([(0.0, 0.005), (0.01, 0.005), (0.02, 0.001), (0.03, 0.005)], False),  # not in a row
    ],
)
def test_spawners_start_once_spawns_hold_this_process_most_of_a_window(
    monkeypatch: pytest.MonkeyPatch, spawns: list[tuple[float, float]], wanted: bool
) -> None:
    monkeypatch.setattr(_process, "_MODE", "auto")
    monkeypatch.setattr(_process, "_window_began", -1.0)
    monkeypatch.setattr(_process, "_window_held", 0.0)
    monkeypatch.setattr(_process, "_slow", 0)
    monkeypatch.setattr(_guard, "guarding", lambda: True)  # as the CLI (no watchdog here)
    loop = asyncio.new_event_loop()
    try:
        for began, held in spawns:
            _process._count_spawn(loop, 1000.0 + began, held)
        assert (loop in _process._LOOP_SPAWNERS) is wanted
    finally:
        _process._LOOP_SPAWNERS.pop(loop, None)
        loop.close()


def _running(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_an_idle_machine_never_starts_a_spawner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_process, "_MODE", "auto")
    monkeypatch.setattr(_process, "_HELD_SHARE", 1.0)  # spawns never hold it all the time
    monkeypatch.setattr(_process, "_SLOW_SPAWN", 3600.0)
    _process.guard_children()

    async def main() -> set[int]:
        await asyncio.gather(*(run_command(["true"]) for _ in range(20)))
        return _spawner_pids()

    assert run(main()) == set()


def test_the_spawners_of_an_ended_loop_end_when_another_loop_wants_some(
    spawners: None,
) -> None:
    async def main() -> set[int]:
        await run_command(["true"])
        return _spawner_pids()

    first = run(main())  # its loop is closed now, its spawners still up
    assert first
    assert all(_running(pid) for pid in first)
    second = run(main())
    assert not first & second
    assert not [pid for pid in first if _running(pid)]  # ended and reaped
    assert len(_process._LOOP_SPAWNERS) == 1


def test_a_spawner_reports_a_missing_program_and_leaks_nothing(spawners: None) -> None:
    before = fds_after_a_first_command()
    with pytest.raises(FileNotFoundError) as info:
        run(run_command(["/no/such/program-here"]))
    assert info.value.filename == "/no/such/program-here"
    _process.close_spawners()  # they live as long as their loop, which the error keeps
    assert_no_new_fds(before)


def test_a_spawner_with_no_room_gets_its_commands_once_there_is(
    spawners: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the first send finds the socket full: the batch waits for room (a writer on the
    # loop), goes then, and the writer is removed, so the loop does not spin on it
    sends = []
    real = _process.socket.send_fds

    def send_fds(sock: Any, *args: Any) -> int:
        sends.append(len(sends))
        if len(sends) == 1:
            raise BlockingIOError
        return real(sock, *args)

    monkeypatch.setattr(_process.socket, "send_fds", send_fds)

    async def main() -> tuple[list[Any], list[bool]]:
        got = await asyncio.gather(*(run_command(["echo", str(i)]) for i in range(3)))
        loop = asyncio.get_running_loop()
        spawners = _process._LOOP_SPAWNERS[loop].all
        return got, [loop.remove_writer(s.sock.fileno()) for s in spawners]

    got, writers = run(main())
    assert [g["stdout"] for g in got] == ["0\n", "1\n", "2\n"]
    assert len(sends) >= 2
    assert writers
    assert not any(writers)  # none left: remove_writer found nothing to remove


def test_a_call_stopped_while_a_spawner_starts_it_leaves_nothing(
    spawners: None, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"

    async def main() -> None:
        call = asyncio.ensure_future(run_command(["sh", "-c", f"echo $$ > {pidfile}; sleep 30"]))
        await asyncio.sleep(0)  # the request is on its way; its pid is not known yet
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        deadline = time.monotonic() + 30
        while _guard.running() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # the spawner's "+pid", then its "=pid"
        assert not _guard.running(), _guard.running()

    run(main())
    if pidfile.exists() and pidfile.read_text().strip():
        _gone(int(pidfile.read_text()))


def test_a_spawner_kills_what_it_started_once_its_socket_closes() -> None:
    # as when this process dies before it has heard a command's pid (kill -9)
    async def main() -> int:
        spawner = _process._Spawner(asyncio.get_running_loop())
        r, w = os.pipe()
        try:
            # the spawner takes the fds over (and closes them once sent)
            started = spawner.spawn(("/bin/sleep", ["sleep", "30"], {}, False), [w, os.dup(w)])
            assert started is not None
            pid = await started
        finally:
            os.close(r)
        _guard.ended(pid)  # not this process's to stop: the spawner's
        spawner.close()  # its socket closes: it kills the group it holds, and ends
        return pid

    _gone(run(main()))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a failing example is slow
)
@given(
    calls=st.lists(
        st.tuples(st.text("abc\n", max_size=5), st.integers(0, 3), st.none() | st.integers(0, 4)),
        min_size=1,
        max_size=6,
    )
)
def test_through_spawners_each_call_ends_once_and_nothing_is_left(
    spawners: None, calls: list[tuple[str, int, int | None]]
) -> None:
    """Each call either returns its own output and code or, stopped after some loop passes
    (before its pid is known, while it runs, after it ended), raises; none is left."""

    async def one(text: str, code: int) -> Any:
        return await run_command(["sh", "-c", 'printf %s "$1"; exit $2', "sh", text, str(code)],
                                 ok_codes=(0, 1, 2, 3))  # fmt: skip

    async def main() -> list[Any]:
        tasks = [asyncio.ensure_future(one(text, code)) for text, code, _ in calls]
        for passes in range(5):
            for task, (_, _, stop_after) in zip(tasks, calls, strict=True):
                if stop_after == passes:
                    task.cancel()
            await asyncio.sleep(0)
        out = await asyncio.gather(*tasks, return_exceptions=True)
        deadline = time.monotonic() + 10
        while (_guard.running() or _owed()) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # a call stopped before its pid came: being ended
        return out

    results = run(main())
    _process.close_spawners()  # this example's, by pid
    for (text, code, _), got in zip(calls, results, strict=True):
        if isinstance(got, BaseException):
            assert isinstance(got, asyncio.CancelledError)
        else:
            assert got == {"exit_code": code, "stdout": text, "stderr": ""}
    assert not _guard.running()


def test_a_spawner_that_dies_fails_its_calls_and_the_next_start_here(
    spawners: None, tmp_path: Path
) -> None:
    import psutil

    pidfile = tmp_path / "pid"

    async def main() -> tuple[BaseException | None, dict[str, Any]]:
        call = asyncio.ensure_future(run_command(["sh", "-c", f"echo $$ > {pidfile}; sleep 30"]))
        deadline = time.monotonic() + 30
        while not (pidfile.exists() and pidfile.read_text().strip()):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        for pid in _spawner_pids():
            os.kill(pid, signal.SIGKILL)  # killed from outside: it cannot clean up
        error = None
        try:
            await asyncio.wait_for(call, 30)
        except OSError as e:
            error = e
        # the next call is not handed to the dead spawner: a new one, or here
        return error, await asyncio.wait_for(run_command(["echo", "after"]), 30)

    error, after = run(main())
    _process.close_spawners()
    assert isinstance(error, OSError)
    assert "spawner process ended" in str(error)
    assert after["stdout"] == "after\n"
    orphan = int(pidfile.read_text())
    if psutil.pid_exists(orphan):
        _gone(orphan)  # its call stopped it (SIGTERM, then SIGKILL): it must be gone
