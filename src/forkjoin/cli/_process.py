"""Commands as forkjoin calls: one child process per call; its exit code and output.

A command is never given to a shell unless asked (``shell=True``); it runs in a session of
its own, so a timeout, the run's deadline or Ctrl-C stops it and everything it started
(``killpg``): SIGTERM first, then SIGKILL once it has exited or after :data:`GRACE` seconds,
whichever comes first. It is always reaped before its call returns.

No command outlives the process that started it, even one killed by ``kill -9``, once
:func:`guard_children` is called: see :mod:`forkjoin.cli._guard`.

Where it can (Linux: ``posix_spawn`` and ``pidfd_open``), a child is started with
``os.posix_spawnp`` and watched with plain non-blocking pipes on the event loop, with no
asyncio transport, protocol, stream reader or watcher thread: starting and collecting a
child then costs the parent about as much as it costs ``xargs`` (bench workload 10). A
``cwd`` (which ``posix_spawn`` cannot set) or another platform takes asyncio's subprocess
support instead.

``posix_spawn`` is a vfork: it holds this process until the child has been scheduled and
has exec'd. On an idle machine that is about 70 us; behind busy processes the new child
waits for a core, and this process with it (about 5 ms per command with two spinning
processes on two cores, bench workload 17), so commands start one at a time; a map's own
commands, on a small machine, do the same. Once spawns hold it most of the time
(:data:`_HELD_SHARE`), the CLI hands them to spawners: small processes of
its own that each receive a command's pipes over a Unix socket, ``posix_spawn`` it (held in
their place, several at once) and say when it exits. Its children are theirs, so a spawner
keeps an exited one unreaped (its pid, and its process group, stay its own) until this
process has collected it, and kills every group it still holds when this process goes
away, however it ends: the watchdog's guarantee, for the commands it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import marshal
import os
import select
import signal
import socket
import sys
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from . import _guard
from ._guard import ended as _ended
from ._guard import guard_children, hurry
from ._guard import started as _started

__all__ = ["GRACE", "CommandFailed", "close_spawners", "guard_children", "hurry", "run_command"]

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


# -- spawners: posix_spawn in processes of their own, once this one is held by it --------

# Spawns go to spawners once they held this process more than _HELD_SHARE of the last
# _WINDOW seconds (or longer): its loop then does little but wait for children to exec. A
# busy machine does that (5 ms a spawn behind two spinning processes); so do a map's own
# commands on a small machine, with no other load: idle, 2,000 x `true` or `echo` on two
# cores held it 85-89 % of every 0.1 s (650 us a spawn) and ran 5-15 % faster through
# spawners, while 500 x `sleep 0.05` at -j 50 held it 24-60 % (its waves of 50 spawns) and
# is better off without their start (bench workloads 10 and 11); a run of a few commands,
# or one at a time, never pays it.
_WINDOW = 0.1
_HELD_SHARE = 0.75
# ... and at once after this many spawns in a row held it longer than _SLOW_SPAWN each: a
# busy machine's, that need not wait for a window
_SLOW_SPAWN = 0.002
_SLOW_IN_A_ROW = 3
_SPAWNERS = 4  # at most this many vforks wait for a core at once
_REQUEST_MAX = 65536  # bytes; a bigger command (a huge environment) is spawned here
# "auto": spawners once spawns are slow, in a process that guards its children (the CLI);
# "always" and "never" are for tests
_MODE = os.environ.get("_FORKJOIN_SPAWNERS", "auto")

# One spawner. Requests come on fd 0, a SOCK_SEQPACKET socket, a batch per message: items
# of 4 bytes of length (little-endian) then a marshal of ("s", program, argv, environment,
# cwd, has stdin, number of fds) or ("-", pid): collected, reap it. A batch's fds (each
# command's stdin if any, stdout, stderr) come as SCM_RIGHTS, in order; the environment and
# the cwd are None when they are the last ones sent. Replies, a marshal of a list per
# message: ("r",) once, when it is up; ("+", pid), ("!", error type, errno, message,
# filename), ("=", pid, code) once it has exited (kept unreaped until "-").
_SPAWNER = """
import marshal, os, select, signal, socket
sock = socket.socket(fileno=0)
poll = select.poll()
poll.register(0, select.POLLIN)
reset = [s for s in (signal.SIGPIPE, getattr(signal, "SIGXFSZ", None)) if s is not None]
watched, held, env = {}, set(), {}
try:
    os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
except (AttributeError, OSError):
    pass
other = (os.SCHED_OTHER, os.sched_param(0))
def start(item, fds):
    global env
    _, program, argv, given, cwd, fed, _ = item
    if given is not None:
        env = given
    if cwd is not None:
        os.chdir(cwd)
    first = ((os.POSIX_SPAWN_DUP2, fds[0], 0) if fed else
             (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0))
    pid = os.posix_spawn(program, argv, env, setsid=True, setsigdef=reset, scheduler=other,
                         file_actions=[first, (os.POSIX_SPAWN_DUP2, fds[-2], 1),
                                       (os.POSIX_SPAWN_DUP2, fds[-1], 2)])
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    watched[pidfd] = pid
    poll.register(pidfd, select.POLLIN)
    return ("+", pid)
sock.send(marshal.dumps([("r",)]))  # up: commands can be sent to it from now on
try:
    while True:
        replies = []
        for fd, _ in poll.poll():
            if fd != 0:
                pid = watched[fd]
                info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                if info is None:
                    continue
                del watched[fd]
                poll.unregister(fd)
                os.close(fd)
                code = info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
                held.add(pid)
                replies.append(("=", pid, code))
                continue
            # close-on-exec: a command inherits its own pipes as 0, 1 and 2 only
            data, fds, _, _ = socket.recv_fds(sock, 1 << 18, 253, socket.MSG_CMSG_CLOEXEC)
            if not data:
                raise SystemExit
            at = used = 0
            while at < len(data):
                size = int.from_bytes(data[at:at + 4], "little")
                item = marshal.loads(data[at + 4:at + 4 + size])
                at += 4 + size
                if item[0] == "-":
                    if item[1] in held:
                        held.discard(item[1])
                        os.waitpid(item[1], 0)
                    continue
                mine = fds[used:used + item[-1]]
                used += item[-1]
                try:
                    replies.append(start(item, mine))
                except OSError as e:
                    replies.append(("!", "OSError", e.errno, e.strerror, e.filename))
                except Exception as e:  # what posix_spawn refuses (a NUL in an argument)
                    kind = "ValueError" if isinstance(e, ValueError) else "TypeError"
                    replies.append(("!", kind, 0, str(e), None))
                finally:
                    for fd in mine:
                        os.close(fd)
        for i in range(0, len(replies), 256):
            try:
                sock.send(marshal.dumps(replies[i:i + 256]))
            except OSError:
                pass
finally:
    for pid in (*watched.values(), *held):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
"""

_BATCH_BYTES = 65536  # a batch is sent at once when it holds this much, or this many fds
_BATCH_FDS = 240  # (SCM_RIGHTS takes up to 253)


class _Spawner:
    """One spawner process, seen from here: its socket on the loop, the replies it owes.
    What is sent to it in one loop pass goes in one message at the next pass: a message
    wakes it, and the wake-up took the core from this process (about 0.2 ms a command)."""

    __slots__ = ("children", "cwd", "env", "exits", "loop", "out", "out_fds", "pid", "ready",
                 "sent", "sock", "waiting", "writing")  # fmt: skip

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.pid = os.posix_spawn(
                sys.executable,
                [sys.executable, "-I", "-S", "-c", _SPAWNER, "forkjoin-spawner"],
                {},
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, theirs.fileno(), 0),
                    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
                ],
                setsid=True,  # Ctrl-C does not reach it: this process stops its commands
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self.sock = ours
        self.loop = loop
        self.waiting: deque[asyncio.Future[int]] = deque()  # replies owed, oldest first
        self.children: dict[int, _Child | _Unwanted] = {}
        self.exits: dict[int, int] = {}  # exits heard before their _Child was made
        # what it has: sent again only when a command's differ (a copy: the caller's
        # mapping may change in place)
        self.env: dict[Any, Any] | None = None
        self.cwd = os.getcwd()
        # the batch of this loop pass: its items, and the fds it carries (this process's
        # until sent, then closed); sent: a send is scheduled (or waits for room)
        self.out: list[bytes] = []
        self.out_fds: list[int] = []
        self.sent = True
        self.writing = False  # waits for room to send (add_writer)
        self.ready = False  # it has said it is up
        loop.add_reader(ours.fileno(), self._ready)

    def spawn(
        self, command: tuple[str, list[str], Mapping[Any, Any], bool], fds: list[int]
    ) -> asyncio.Future[int] | None:
        """Queue a command, taking over ``fds``: the future of its pid, or None (and
        ``fds`` are still the caller's) if it cannot take it (not plain data, too big)."""
        if self.sock.fileno() < 0:  # it ended unexpectedly
            return None
        exe, args, env, fed = command
        cwd = os.getcwd()
        new_env = None if env == self.env else env
        new_cwd = None if cwd == self.cwd else cwd
        payload: Any = ("s", exe, args, new_env, new_cwd, fed, len(fds))
        try:
            item = marshal.dumps(payload)
        except ValueError:  # a mapping or string of a type of its own
            return None
        if len(item) > _REQUEST_MAX:
            return None
        if new_env is not None:
            self.env = dict(new_env)
        self.cwd = cwd
        self._queue(item, fds)
        waiter = self.loop.create_future()
        self.waiting.append(waiter)
        return waiter

    def collected(self, pid: int) -> None:
        self.children.pop(pid, None)
        self._queue(marshal.dumps(("-", pid)), ())

    def _queue(self, item: bytes, fds: Any) -> None:
        self.out.append(len(item).to_bytes(4, "little") + item)
        self.out_fds.extend(fds)
        if len(self.out_fds) >= _BATCH_FDS or sum(map(len, self.out)) >= _BATCH_BYTES:
            self._send()
        elif self.sent:
            self.sent = False
            self.loop.call_soon(self._send)

    def _send(self) -> None:
        if not self.out or self.sock.fileno() < 0:
            self.sent = True
            return
        data, fds = b"".join(self.out), self.out_fds
        try:
            socket.send_fds(self.sock, [data], fds)
        except (BlockingIOError, InterruptedError):  # far behind: sent once there is room
            self.out, self.out_fds = [data], fds
            self.sent = False
            self.writing = True
            self.loop.add_writer(self.sock.fileno(), self._send)
            return
        except OSError:
            self.loop.call_soon(self._lost)
        if self.writing:  # (a remove_writer of no writer still costs a selector lookup)
            self.writing = False
            self.loop.remove_writer(self.sock.fileno())
        self.out, self.out_fds = [], []
        self.sent = True
        for fd in fds:
            os.close(fd)

    def _ready(self) -> None:
        while True:
            try:
                message = self.sock.recv(1 << 18)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                message = b""
            if not message:
                self._lost()
                return
            for reply in marshal.loads(message):
                kind = reply[0]
                if kind == "r":
                    self.ready = True
                    continue
                if kind == "=":
                    _, pid, code = reply
                    child = self.children.get(pid)
                    if child is None:
                        self.exits[pid] = code
                    else:
                        child.exited(code)
                    continue
                waiter = self.waiting.popleft()
                if kind == "+":
                    pid = reply[1]
                    _started(pid)
                    if waiter.cancelled():  # its call was stopped meanwhile: end it
                        self.children[pid] = _Unwanted(self, pid)
                    else:
                        waiter.set_result(pid)
                elif not waiter.cancelled():
                    _, error, errno, text, filename = reply
                    if error == "OSError":
                        waiter.set_exception(OSError(errno, text, filename))
                    else:  # as posix_spawn here would have raised it
                        kind_of = ValueError if error == "ValueError" else TypeError
                        waiter.set_exception(kind_of(text))

    def _lost(self) -> None:
        """The spawner is gone (killed): its calls fail; its children were killed."""
        self.close()
        error = OSError("forkjoin's spawner process ended unexpectedly")
        for waiter in self.waiting:
            if not waiter.done():
                waiter.set_exception(error)
        self.waiting.clear()
        for child in list(self.children.values()):
            child.fail(error)  # stopped by its group, as any command whose call failed
        self.children.clear()

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
            self.loop.remove_writer(self.sock.fileno())
            self.sock.close()  # it ends at once, killing any group it still holds
        for pid in self.children:  # killed by it: no longer this process's to stop
            _ended(pid)
        for fd in self.out_fds:
            os.close(fd)
        self.out, self.out_fds = [], []
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


class _Unwanted:
    """A command whose call was stopped while a spawner was starting it: killed, and
    collected once the spawner says it has exited."""

    def __init__(self, spawner: _Spawner, pid: int) -> None:
        self.spawner = spawner
        self.pid = pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        if pid in spawner.exits:
            self.exited(spawner.exits.pop(pid))

    def exited(self, code: int) -> None:
        _ended(self.pid)
        self.spawner.collected(self.pid)

    def fail(self, error: BaseException) -> None:
        _ended(self.pid)


class _Spawners:
    """The spawners of one loop, made once its spawns are slow (or when forced)."""

    __slots__ = ("all",)

    def __init__(self) -> None:
        self.all: list[_Spawner] = []

    def pick(self, loop: asyncio.AbstractEventLoop, *, wait: bool) -> _Spawner | None:
        """The spawner that is up with the fewest starts owed, and a new one started while
        each owes some (one that ended unexpectedly is left out); None while none is up,
        unless ``wait``: a command is not held for the tens of ms a spawner takes to start,
        it is started here."""
        self.all = [s for s in self.all if s.sock.fileno() >= 0]
        up = [s for s in self.all if s.ready or wait]
        best = min(up, key=lambda s: len(s.waiting), default=None)
        starting = len(up) < len(self.all)
        if (best is None or best.waiting) and len(self.all) < _SPAWNERS and not starting:
            self.all.append(_Spawner(loop))
            if best is None and wait:
                best = self.all[-1]
        return best

    def close(self) -> None:
        for spawner in self.all:
            spawner.close()
        self.all.clear()


# a plain dict: each spawner refers to its loop, so a weak key would never go either
_LOOP_SPAWNERS: dict[asyncio.AbstractEventLoop, _Spawners] = {}


def _spawners_of(loop: asyncio.AbstractEventLoop) -> _Spawners:
    found = _LOOP_SPAWNERS.get(loop)
    if found is None:
        for other in [other for other in _LOOP_SPAWNERS if other.is_closed()]:
            _LOOP_SPAWNERS.pop(other).close()  # its loop ended: nothing of it runs any more
        found = _LOOP_SPAWNERS[loop] = _Spawners()
    return found


def close_spawners() -> None:
    """End every spawner of this process (they also end with it)."""
    for spawners in list(_LOOP_SPAWNERS.values()):
        spawners.close()
    _LOOP_SPAWNERS.clear()


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

    __slots__ = ("cap", "code", "done", "err", "exit", "kept", "open", "out", "pid", "pidfd",
                 "retry", "stopping", "timer", "truncated", "via", "watcher")  # fmt: skip

    def __init__(
        self,
        watcher: _Watcher,
        pid: int,
        out: int,
        err: int,
        cap: int,
        via: _Spawner | None = None,
    ) -> None:
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
        # a spawner's child: its exit code, once the spawner has said it exited
        self.via = via
        self.exit: int | None = None
        watcher.watch(out, self.read_out)
        watcher.watch(err, self.read_err)
        if via is not None:
            via.children[pid] = self
            if pid in via.exits:
                self.exit = via.exits.pop(pid)

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

    def exited(self, code: int) -> None:
        """A spawner's child has exited (it is kept unreaped until it is collected)."""
        self.exit = code
        if self.open == 0 or self.stopping:
            self._reap()

    def _reap(self) -> None:
        if self.code is not None:
            return
        if self.via is not None:
            if self.exit is None:
                return  # the spawner says when it exits
            if self.stopping:  # exited, unreaped: its number is still its group's
                self._signal(signal.SIGKILL)
            status = self.exit
        else:
            got = self._waited()
            if got is None:
                return
            status = os.waitstatus_to_exitcode(got)
        if self.pidfd >= 0:
            self.watcher.unwatch(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = -1
        if self.stopping:  # what is left in its pipes is not wanted
            for which, fd in ((0, self.out), (1, self.err)):
                if fd >= 0:
                    self._close(which)
        self.code = status
        _ended(self.pid)
        if self.via is not None:
            self.via.collected(self.pid)
        if self.timer is not None:
            self.timer.cancel()
        if not self.done.done():
            self.done.set_result(None)

    def _waited(self) -> int | None:
        """Its wait status once it has exited and been reaped here, else None (and its
        exit is waited for)."""
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
                return None
            if not self.retry:
                try:
                    self.pidfd = os.pidfd_open(self.pid)
                except OSError:  # no pidfd here (a sandbox, valgrind): ask again soon
                    self.retry = 0.001
                else:
                    self.watcher.watch(self.pidfd, self._reap)
                    return None
            self.watcher.loop.call_later(self.retry, self._reap)
            self.retry = min(0.05, self.retry * 2)
            return None
        return status

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


def _ask(
    spawners: _Spawners,
    loop: asyncio.AbstractEventLoop,
    command: tuple[str, list[str], Mapping[Any, Any] | None, bool],
    fds: list[int],
) -> tuple[_Spawner, asyncio.Future[int]] | None:
    """Hand a command to a spawner: the spawner and the future of its pid, or None when it
    is to be started here."""
    exe, args, env, fed = command
    try:
        spawner = spawners.pick(loop, wait=_MODE == "always")
    except OSError:  # no spawner could be started
        return None
    if spawner is None:
        return None
    environ = dict(os.environb) if env is None else env
    started = spawner.spawn((exe, args, environ, fed), fds)
    return None if started is None else (spawner, started)


def _count_spawn(loop: asyncio.AbstractEventLoop, began: float, held: float) -> None:
    """Spawns that hold this process most of the time (it waits for its children to exec)
    hand the next ones to spawners, in a process that guards its children (the CLI)."""
    global _window_began, _window_held, _slow
    if _MODE != "auto" or not _guard.guarding():
        return
    _slow = _slow + 1 if held > _SLOW_SPAWN else 0
    if _slow >= _SLOW_IN_A_ROW:
        _spawners_of(loop)
        return
    if _window_began < 0:
        _window_began = began
    _window_held += held
    span = began + held - _window_began
    if span >= _WINDOW:
        if _window_held > _HELD_SHARE * span:
            _spawners_of(loop)
        _window_began, _window_held = -1.0, 0.0


# the window of spawns being measured: when its first began (-1: none yet), how long they
# held this process
_window_began = -1.0
_window_held = 0.0
_slow = 0  # spawns in a row that held it longer than _SLOW_SPAWN


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
        found = _which(exe, path or "")
        if found is None:
            return exe
        _RESOLVED[key] = found
    return found


def _which(exe: str, path: str) -> str | None:
    """``shutil.which`` on POSIX for a name without a slash, as ``execvp`` searches (an
    empty entry is the cwd); here because importing shutil (bz2, lzma, fnmatch) was 2 ms of
    a one-line map's 80 ms start-up."""
    for folder in path.split(os.pathsep):
        candidate = os.path.join(folder, exe)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


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
    _guard.start()  # the watchdog, if wanted and not yet running
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    in_r = in_w = -1
    ends = [out_w, err_w]
    asked: tuple[_Spawner, asyncio.Future[int]] | None = None
    try:
        if stdin is not None:
            in_r, in_w = os.pipe2(os.O_CLOEXEC)
            ends.append(in_r)
            first: tuple[Any, ...] = (os.POSIX_SPAWN_DUP2, in_r, 0)
        else:
            first = (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)
        spawners = _LOOP_SPAWNERS.get(loop)
        if spawners is None and _MODE == "always":
            spawners = _spawners_of(loop)
        if spawners is not None and "/" in exe:
            fds = [in_r, out_w, err_w] if in_r >= 0 else [out_w, err_w]
            asked = _ask(spawners, loop, (exe, args, env, in_r >= 0), fds)
        if asked is None:
            began = time.perf_counter()
            # returns once the child has exec'd (a vfork): no wait for it to end
            pid = os.posix_spawnp(  # noqa: ASYNC221
                exe,
                args,
                os.environ if env is None else env,
                file_actions=[
                    first,
                    (os.POSIX_SPAWN_DUP2, out_w, 1),
                    (os.POSIX_SPAWN_DUP2, err_w, 2),
                ],
                setsid=True,  # a session (and process group) of its own, for killpg
                setsigdef=_RESTORED,
            )
            _started(pid)
            if spawners is None:
                _count_spawn(loop, began, time.perf_counter() - began)
    except BaseException:
        for fd in (out_r, err_r, in_w):
            if fd >= 0:
                os.close(fd)
        raise
    finally:
        if asked is None:  # else the spawner has them, and closes them once sent
            for fd in ends:
                os.close(fd)
    via = None
    if asked is not None:
        via, started = asked
        try:
            pid = await started
        except BaseException:
            for fd in (out_r, err_r, in_w):
                if fd >= 0:
                    os.close(fd)
            if started.done() and not started.cancelled() and started.exception() is None:
                # its pid came just as the call was stopped: ended as one not wanted
                pid = started.result()
                via.children[pid] = _Unwanted(via, pid)
            raise
    os.set_blocking(out_r, False)
    os.set_blocking(err_r, False)
    child = _Child(_watcher(loop), pid, out_r, err_r, cap, via)
    feeder = _Feeder(loop, in_w, stdin) if stdin is not None else None
    try:
        # awaited as it is (a shield costs a future and a loop pass per command): a cancel
        # of this call cancels ``done``, which is then replaced by one to wait for its reap
        await child.done
    except BaseException:
        # cancelled (a timeout, the deadline, Ctrl-C): never leave it running, and reap
        # it (the pipes end when its process group is gone)
        if child.done.cancelled():
            child.done = loop.create_future()
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
    _guard.start()  # the watchdog, if wanted and not yet running
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
