"""No command outlives the process that started it, even one killed by ``kill -9``.

``kill -9`` runs no handler of this process's, so the guarantee is kept by another one:
once :func:`guard_children` is called, a small watchdog in a session of its own is told
each command's process group as it starts and ends, and when its pipe from this process
closes (the process exited, however it died) it kills every group still running. A
command's children, a shell's included, are in its group.

A module of its own, without asyncio: the ``forkjoin map`` of commands starts the
watchdog before it imports anything else (:func:`start`), so that the watchdog's own
start-up runs beside this process's rather than in the way of its first commands (a spawn
right after the watchdog's waited 2-7 ms for a core in two runs of three, on two cores:
bench workload 13).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

__all__ = [
    "ended",
    "guard_children",
    "guarding",
    "hurry",
    "running",
    "start",
    "start_now",
    "started",
]

# commands started and not yet reaped (their pids, which are their process groups)
_RUNNING: set[int] = set()
# the write end of the watchdog's pipe; _WANTED: guard_children was called, and the
# watchdog is started before the next command is; _NONE: not guarding
_NONE, _WANTED = -1, -2
_GUARD = [_NONE]

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
    started just before the first command is (a run of no command starts none), or now by
    :func:`start`."""
    if _GUARD[0] == _NONE:
        _GUARD[0] = _WANTED


def guarding() -> bool:
    """Whether this process guards its commands (:func:`guard_children` was called)."""
    return _GUARD[0] != _NONE


def start() -> None:
    """Start the watchdog now if it is wanted and not yet running (the command about to
    start fails with the ``OSError`` if it cannot be; later ones run unguarded)."""
    if _GUARD[0] != _WANTED:
        return
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
        _GUARD[0] = _NONE
        raise
    finally:
        os.close(r)
    _GUARD[0] = w
    if _RUNNING:
        with contextlib.suppress(OSError):  # the watchdog is gone: nothing more to tell
            os.write(w, b"".join(b"+%d\n" % pid for pid in _RUNNING))


# started and ended run once per command each: a plain try, not contextlib.suppress
def started(pid: int) -> None:
    """A command (the leader of process group ``pid``) has started."""
    _RUNNING.add(pid)
    fd = _GUARD[0]
    if fd >= 0:
        try:  # noqa: SIM105
            os.write(fd, b"+%d\n" % pid)
        except OSError:  # the watchdog is gone: nothing more to tell
            pass


def ended(pid: int) -> None:
    """A command has been reaped (its number may be handed out again)."""
    _RUNNING.discard(pid)
    fd = _GUARD[0]
    if fd >= 0:
        try:  # noqa: SIM105
            os.write(fd, b"-%d\n" % pid)
        except OSError:
            pass


def running() -> frozenset[int]:
    """The commands started and not yet reaped (their pids, which are their groups)."""
    return frozenset(_RUNNING)


def hurry() -> None:
    """SIGKILL every command still running, with its group, now (a second Ctrl-C)."""
    for pid in list(_RUNNING):
        # not reaped yet, so the number is still its process group's
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def start_now() -> None:
    """:func:`guard_children`, with the watchdog started at once, for a program about to
    start commands. If it cannot be, nothing is guarding until the program's own
    :func:`guard_children`: its first command then tries again, and fails saying why."""
    guard_children()
    with contextlib.suppress(OSError):
        start()
