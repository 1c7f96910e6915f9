"""Commands as forkjoin calls: one child process per call; its exit code and output.

A command is never given to a shell unless asked (``shell=True``); it runs in a session of
its own, so a timeout, the run's deadline or Ctrl-C stops it and everything it started
(``killpg``): SIGTERM first, then SIGKILL once it has exited or after :data:`GRACE` seconds,
whichever comes first. It is always reaped before its call returns.

No command outlives the process that started it, even one killed by ``kill -9`` (which
runs no handler of its own): once :func:`guard_children` is called, a small watchdog in a
session of its own is told each command's process group as it starts and ends, and when
its pipe from this process closes (the process exited, however it died) it kills every
group still running. A command's children, a shell's included, are in its group.

Where it can (Linux: ``posix_spawn`` and ``pidfd_open``), a child is started with
``os.posix_spawnp`` and watched with plain non-blocking pipes on the event loop, with no
asyncio transport, protocol, stream reader or watcher thread: starting and collecting a
child then costs the parent about as much as it costs ``xargs`` (bench workload 10). A
``cwd`` (which ``posix_spawn`` cannot set) or another platform takes asyncio's subprocess
support instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import sys
import weakref
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["GRACE", "CommandFailed", "guard_children", "hurry", "run_command"]

# seconds a stopped command has between SIGTERM and SIGKILL: less than the engine's grace
# before it abandons a call, so a command that traps SIGTERM is killed, not abandoned
GRACE = 0.5
_CHUNK = 65536
# a child starts with the default action for these, as subprocess.Popen(restore_signals=True)
# does: Python ignores SIGPIPE, and an ignored signal stays ignored across exec
_RESTORED = tuple(s for s in (signal.SIGPIPE, getattr(signal, "SIGXFSZ", None)) if s is not None)
FAST = (
    sys.platform == "linux"
    and hasattr(os, "posix_spawnp")
    and hasattr(os, "pidfd_open")
    and hasattr(os, "POSIX_SPAWN_DUP2")
)


# commands started and not yet reaped (their pids, which are their process groups)
_RUNNING: set[int] = set()
# the write end of the watchdog's pipe; -2: wanted (guard_children), started before the
# next command is; -1: none
_GUARD = [-1]

# The watchdog: reads "+PGID" / "-PGID" lines until its pipe ends, then kills the groups
# still listed. A group is forgotten when its leader is reaped, never later: the kernel
# does not hand out a number that is still a live process group's, and a forgotten one
# may be handed out again. It naps between reads, so that telling it is a plain copy into
# the pipe: a write that wakes a waiting reader cost the parent about 28 us, twice per
# command (bench workload 10); the nap delays the kill after this process dies by 10 ms.
_WATCHDOG = """
import os, signal, time
groups, rest = set(), b""
while True:
    chunk = os.read(0, 65536)
    if not chunk:
        break
    time.sleep(0.01)
    *lines, rest = (rest + chunk).split(b"\\n")
    for line in lines:
        pid = int(line)
        if pid > 0:
            groups.add(pid)
        else:
            groups.discard(-pid)
for pid in groups:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
"""


def guard_children() -> None:
    """From now on, every command this process starts is killed with its group when this
    process ends, however it ends (``kill -9`` included): a watchdog process does it,
    started just before the first command is (a run of no command starts none)."""
    if _GUARD[0] == -1:
        _GUARD[0] = -2


def _watchdog() -> None:
    r, w = os.pipe2(os.O_CLOEXEC)  # close-on-exec: no command holds the pipe open
    try:
        os.posix_spawn(
            sys.executable,
            [sys.executable, "-I", "-S", "-c", _WATCHDOG],
            {},
            file_actions=[
                (os.POSIX_SPAWN_DUP2, r, 0),
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
            ],
            # its own session: a signal to this process's group (Ctrl-C) does not reach it
            setsid=True,
        )
    except OSError:
        os.close(w)
        _GUARD[0] = -1  # the command that wanted it fails with why; later ones run unguarded
        raise
    finally:
        os.close(r)
    _GUARD[0] = w
    if _RUNNING:
        _tell(b"".join(b"+%d\n" % pid for pid in _RUNNING))


def _tell(message: bytes) -> None:
    with contextlib.suppress(OSError):  # the watchdog is gone: nothing more to tell
        os.write(_GUARD[0], message)


# _started and _ended run once per command each: a plain try, not contextlib.suppress
def _started(pid: int) -> None:
    _RUNNING.add(pid)
    fd = _GUARD[0]
    if fd >= 0:
        try:  # noqa: SIM105
            os.write(fd, b"+%d\n" % pid)
        except OSError:  # the watchdog is gone: nothing more to tell
            pass


def _ended(pid: int) -> None:
    _RUNNING.discard(pid)
    fd = _GUARD[0]
    if fd >= 0:
        try:  # noqa: SIM105
            os.write(fd, b"-%d\n" % pid)
        except OSError:
            pass


def hurry() -> None:
    """SIGKILL every command still running, with its group, now (a second Ctrl-C)."""
    for pid in list(_RUNNING):
        # not reaped yet, so the number is still its process group's
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


class CommandFailed(Exception):
    """A command exited with a code not in its ``ok_codes``; it keeps what it printed."""

    def __init__(
        self, exit_code: int, stderr: str, stdout: str = "", *, truncated: bool = False
    ) -> None:
        tail = stderr.strip().splitlines()[-1:] if stderr.strip() else []
        super().__init__(f"exit code {exit_code}" + (f": {tail[0][:200]}" if tail else ""))
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        self.truncated = truncated

    def fields(self) -> dict[str, Any]:
        """The command's exit code, stdout and stderr (capped), as a result shows them."""
        out: dict[str, Any] = {
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
        }
        if self.truncated:
            out["truncated"] = True
        return out


async def run_command(
    argv: list[str] | str,
    *,
    shell: bool = False,
    ok_codes: tuple[int, ...] = (0,),
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    max_output: int = 1_000_000,
    environ: Mapping[str, str] | Mapping[bytes, bytes] | None = None,
) -> dict[str, Any]:
    """Run a command (no shell unless ``shell``); exit code and capped stdout/stderr.

    ``env`` is added to ``environ`` (default: ``os.environ`` as it is now; a caller that
    starts many commands passes a plain dict of ``os.environb``, which is far cheaper to
    hand to a child than ``os.environ`` itself). A code outside ``ok_codes`` raises
    :class:`CommandFailed`, which keeps the same fields.
    """
    if shell:
        args = ["/bin/sh", "-c", argv if isinstance(argv, str) else " ".join(argv)]
    else:
        args = [argv] if isinstance(argv, str) else list(argv)
    full_env: Any = environ
    if env:
        if environ is not None and isinstance(next(iter(environ), ""), bytes):
            full_env = {**environ, **{os.fsencode(k): os.fsencode(v) for k, v in env.items()}}
        else:
            full_env = {**(os.environ if environ is None else environ), **env}
    data = stdin.encode() if stdin is not None else None
    if FAST and cwd is None:
        path = env.get("PATH") if env else None
        code, out, err, truncated = await _spawned(args, full_env, path, data, max_output)
    else:
        code, out, err, truncated = await _asyncio_subprocess(args, cwd, full_env, data, max_output)
    stdout = out.decode("utf-8", "replace")
    stderr = err.decode("utf-8", "replace")
    if code not in ok_codes:
        raise CommandFailed(code, stderr, stdout, truncated=truncated)
    value: dict[str, Any] = {"exit_code": code, "stdout": stdout, "stderr": stderr}
    if truncated:
        value["truncated"] = True
    return value


# -- posix_spawn and pipes on the loop --------------------------------------------------


class _Watcher:
    """The children of one event loop: one epoll of their pipes (and, rarely, pidfds),
    itself watched by the loop. Registering a pipe here is one C call, where the loop's
    own ``add_reader`` costs a Python handle and selector bookkeeping per pipe (most of
    what starting a child cost the parent with asyncio's transports). Handlers must
    tolerate a spurious wake-up (a closed fd number may be reused within one batch)."""

    __slots__ = ("__weakref__", "epoll", "handlers", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.epoll = select.epoll()
        self.handlers: dict[int, Callable[[], None]] = {}
        loop.add_reader(self.epoll.fileno(), self._ready)

    def _ready(self) -> None:
        get = self.handlers.get
        for fd, _ in self.epoll.poll(0):
            handler = get(fd)
            if handler is not None:
                try:
                    handler()
                except Exception as e:  # never a child left waiting for ever
                    owner = getattr(handler, "__self__", None)
                    if not isinstance(owner, _Child):
                        raise
                    owner.fail(e)

    def watch(self, fd: int, handler: Callable[[], None]) -> None:
        self.handlers[fd] = handler
        self.epoll.register(fd, _READABLE)

    def unwatch(self, fd: int) -> None:
        del self.handlers[fd]
        self.epoll.unregister(fd)
        if not self.handlers:
            # idle: closed unless a new child comes in this loop pass (a worker starting
            # its next command right away keeps the same epoll)
            self.loop.call_soon(self._close_if_idle)

    def _close_if_idle(self) -> None:
        if not self.handlers and _WATCHERS.get(self.loop) is self:
            del _WATCHERS[self.loop]
            self.loop.remove_reader(self.epoll.fileno())
            self.epoll.close()


_READABLE = select.EPOLLIN if FAST else 0
_WATCHERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watcher] = (
    weakref.WeakKeyDictionary()
)


def _watcher(loop: asyncio.AbstractEventLoop) -> _Watcher:
    w = _WATCHERS.get(loop)
    if w is None:
        w = _WATCHERS[loop] = _Watcher(loop)
    return w


class _Child:
    """One spawned child: its two output pipes, then its exit, watched by a _Watcher."""

    __slots__ = ("cap", "code", "done", "err", "kept", "open", "out", "pid", "pidfd", "retry",
                 "stopping", "timer", "truncated", "watcher")  # fmt: skip

    def __init__(self, watcher: _Watcher, pid: int, out: int, err: int, cap: int) -> None:
        self.watcher = watcher
        self.pid = pid
        self.out = out
        self.err = err
        self.cap = cap
        self.kept = (bytearray(), bytearray())
        self.truncated = False
        self.open = 2  # output pipes not yet at their end
        self.code: int | None = None
        self.pidfd = -1
        self.retry = 0.0  # without a pidfd: the next wait before asking waitpid again
        self.stopping = False  # sent SIGTERM: its group is killed once it has exited
        self.timer: asyncio.TimerHandle | None = None  # SIGKILL after the grace
        self.done: asyncio.Future[None] = watcher.loop.create_future()
        watcher.watch(out, self.read_out)
        watcher.watch(err, self.read_err)

    def read_out(self) -> None:
        if self.out >= 0:
            self._read(self.out, 0)

    def read_err(self) -> None:
        if self.err >= 0:
            self._read(self.err, 1)

    def _read(self, fd: int, which: int) -> None:
        try:
            chunk = os.read(fd, _CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if chunk:
            kept = self.kept[which]
            room = self.cap - len(kept)
            if room > 0:
                kept += chunk[:room]
            if len(chunk) > room:
                self.truncated = True  # the rest is read and dropped: the child never blocks
            return
        self._close(which)
        if self.open == 0:
            # both pipes closed: the child has nearly always exited by now, so it is
            # reaped at once, with no pidfd; otherwise its exit is waited for
            self._reap()

    def _close(self, which: int) -> None:
        fd = self.out if which == 0 else self.err
        if which == 0:
            self.out = -1
        else:
            self.err = -1
        self.watcher.unwatch(fd)
        os.close(fd)
        self.open -= 1

    def _reap(self) -> None:
        if self.code is not None:
            return
        if self.stopping:
            # exited but not reaped, so its number is still its group's: what it started
            # and left behind (a shell's children) is killed before the number is let go
            with contextlib.suppress(ChildProcessError):
                if os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                    self._signal(signal.SIGKILL)
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by someone else (a process-wide reaper)
            pid, status = self.pid, 255 << 8
        if pid == 0:  # still running (or not yet a zombie): wait for its pidfd
            if self.pidfd >= 0:
                return
            if not self.retry:
                try:
                    self.pidfd = os.pidfd_open(self.pid)
                except OSError:  # no pidfd here (a sandbox, valgrind): ask again soon
                    self.retry = 0.001
                else:
                    self.watcher.watch(self.pidfd, self._reap)
                    return
            self.watcher.loop.call_later(self.retry, self._reap)
            self.retry = min(0.05, self.retry * 2)
            return
        if self.pidfd >= 0:
            self.watcher.unwatch(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = -1
        if self.stopping:  # what is left in its pipes is not wanted
            for which, fd in ((0, self.out), (1, self.err)):
                if fd >= 0:
                    self._close(which)
        self.code = os.waitstatus_to_exitcode(status)
        _ended(self.pid)
        if self.timer is not None:
            self.timer.cancel()
        if not self.done.done():
            self.done.set_result(None)

    def fail(self, error: BaseException) -> None:
        """Something went wrong watching it: stop it, and let its call raise ``error``."""
        if not self.done.done():
            self.done.set_exception(error)
        with contextlib.suppress(Exception):
            self.stop()

    def stop(self) -> None:
        """Stop it and all it started: SIGTERM, then SIGKILL once it has exited or after
        :data:`GRACE`. Its pipes are still read meanwhile (a command that writes as it
        stops must not die of SIGPIPE instead), and closed once it is reaped: its exit is
        watched by pid (``done``), so a process that escaped its group and keeps the
        pipes open cannot hold the call up."""
        if self.code is not None or self.stopping:
            return
        self.stopping = True
        self._signal(signal.SIGTERM)
        self.timer = self.watcher.loop.call_later(GRACE, self._signal, signal.SIGKILL)
        self._reap()

    def _signal(self, sig: int) -> None:
        if self.code is None:  # not reaped yet, so its pid (and group) are still its own
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)


class _Feeder:
    """Writes a command's stdin without blocking the loop, then closes it."""

    __slots__ = ("data", "fd", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, data: bytes) -> None:
        self.loop = loop
        self.fd = fd
        self.data = memoryview(data)
        os.set_blocking(fd, False)
        self.write()

    def write(self) -> None:
        if self.fd < 0:
            return
        try:
            while self.data:
                self.data = self.data[os.write(self.fd, self.data[:_CHUNK]) :]
        except (BlockingIOError, InterruptedError):
            self.loop.add_writer(self.fd, self.write)
            return
        except OSError:  # the command exited, or closed its stdin, without reading it all
            pass
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            self.loop.remove_writer(self.fd)
            os.close(self.fd)
            self.fd = -1


# (program, PATH) -> the file it names: a search for each child would be done by the
# child itself before its exec, while posix_spawn holds the parent (the failed execs of a
# long PATH cost about 50 us per command, bench workload 10)
_RESOLVED: dict[tuple[str, str | None], str] = {}


def _resolve(exe: str, path: str | None) -> str:
    """The file ``exe`` names on ``path`` (a PATH of the command's own) or this process's
    PATH; ``exe`` itself when none is found, so that the spawn fails saying so."""
    if path is None:
        path = os.environ.get("PATH")
    key = (exe, path)
    found = _RESOLVED.get(key)
    if found is None:
        import shutil

        found = shutil.which(exe, path=path)
        if found is None:
            return exe
        _RESOLVED[key] = found
    return found


async def _spawned(
    args: list[str],
    env: Mapping[Any, Any] | None,
    path: str | None,
    stdin: bytes | None,
    cap: int,
) -> tuple[int, bytes, bytes, bool]:
    loop = asyncio.get_running_loop()
    exe = args[0]
    if "/" not in exe:
        exe = _resolve(exe, path)
    if _GUARD[0] == -2:
        _watchdog()
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    in_r = in_w = -1
    ends = [out_w, err_w]
    try:
        if stdin is not None:
            in_r, in_w = os.pipe2(os.O_CLOEXEC)
            ends.append(in_r)
            first: tuple[Any, ...] = (os.POSIX_SPAWN_DUP2, in_r, 0)
        else:
            first = (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)
        # returns as soon as the child has exec'd (a vfork): no blocking wait for it here
        pid = os.posix_spawnp(  # noqa: ASYNC221
            exe,
            args,
            os.environ if env is None else env,
            file_actions=[first, (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)],
            setsid=True,  # a session (and process group) of its own, for killpg
            setsigdef=_RESTORED,
        )
    except BaseException:
        for fd in (out_r, err_r, in_w):
            if fd >= 0:
                os.close(fd)
        raise
    finally:
        for fd in ends:
            os.close(fd)
    _started(pid)
    os.set_blocking(out_r, False)
    os.set_blocking(err_r, False)
    child = _Child(_watcher(loop), pid, out_r, err_r, cap)
    feeder = _Feeder(loop, in_w, stdin) if stdin is not None else None
    try:
        # shielded: a cancel of this call must not cancel ``done``, which is awaited next
        await asyncio.shield(child.done)
    except BaseException:
        # cancelled (a timeout, the deadline, Ctrl-C): never leave it running, and reap
        # it (the pipes end when its process group is gone)
        child.stop()
        with contextlib.suppress(BaseException):
            await asyncio.shield(child.done)
        raise
    finally:
        if feeder is not None:
            feeder.close()
    assert child.code is not None
    return child.code, bytes(child.kept[0]), bytes(child.kept[1]), child.truncated


# -- asyncio's subprocesses (a cwd, or a platform without pidfd) --------------------------


async def _read_capped(stream: asyncio.StreamReader | None, cap: int) -> tuple[bytes, bool]:
    """Read a stream to its end, keeping at most ``cap`` bytes (the rest is drained)."""
    if stream is None:
        return b"", False
    kept = bytearray()
    truncated = False
    while True:
        chunk = await stream.read(_CHUNK)
        if not chunk:
            return bytes(kept), truncated
        room = cap - len(kept)
        if room > 0:
            kept += chunk[:room]
        if len(chunk) > room:
            truncated = True


async def _asyncio_subprocess(
    args: list[str],
    cwd: str | None,
    env: Mapping[Any, Any] | None,
    stdin: bytes | None,
    cap: int,
) -> tuple[int, bytes, bytes, bool]:
    pipe_in = asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL
    out, err = asyncio.subprocess.PIPE, asyncio.subprocess.PIPE
    if _GUARD[0] == -2:
        _watchdog()
    # its own process group, so a timeout or Ctrl-C stops the command and its children
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=pipe_in, stdout=out, stderr=err, cwd=cwd, env=env, start_new_session=True
    )
    _started(proc.pid)
    try:
        if stdin is not None and proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                proc.stdin.write(stdin)
                await proc.stdin.drain()
            proc.stdin.close()
        (stdout, t1), (stderr, t2) = await asyncio.gather(
            _read_capped(proc.stdout, cap), _read_capped(proc.stderr, cap)
        )
        code = await proc.wait()
    finally:
        if proc.returncode is None:  # cancelled (timeout, deadline): never leave it running
            await asyncio.shield(_stop_group(proc))
        _ended(proc.pid)
    return code, stdout, stderr, t1 or t2


async def _stop_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM to its group, SIGKILL after :data:`GRACE` (or once it has exited, for what
    it left behind); reaped before this returns."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.returncode is not None:
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(proc.wait()), GRACE)
