"""``forkjoin map``: a command, an HTTP request or a function per line of input.

Built on :func:`forkjoin.imap`: lines are read lazily in chunks and each result is written
as one JSON line as soon as it is ready (or in input order with ``--keep-order``), so
memory stays O(limit) however long the input is.

Parsed with argparse, not typer: a shell user judges a tool by how fast one line of it
runs, and this command imports nothing it does not need (no typer, rich, pydantic; httpx
only for ``--http``). An option is one ``add_argument`` in :func:`parser` and its use in
:func:`options_of` (or :func:`main`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import os
import re
import stat
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import IO, TYPE_CHECKING, Any

import forkjoin as fj

from ._process import guard_children, run_command
from ._render import command_line, dumps, error_text, failure_fields
from ._signals import Signals
from ._usage import (
    EXIT_INTERRUPTED,
    EXIT_NOT_OK,
    EXIT_OK,
    EXIT_USAGE,
    BadValue,
    UsageError,
    check_journal,
    journal_warnings,
    looks_like_address,
    parse_duration,
    parse_rate,
    quote_segment,
    resolve_call,
    say,
)

if TYPE_CHECKING:
    import httpx

__all__ = ["main", "parser"]

_OK = fj.Status.OK
_NOT_FAILED = "not_failed_before"  # the reason of a line --retry-failed-only does not run
_READ = 1 << 16
_FLUSH_EVERY = 0.05  # seconds: results reach a pipe promptly without a syscall per line

DESCRIPTION = """\
Run a command, an HTTP request or a function per input line (stdin, or --input FILE);
write one JSON line per input line as results arrive:
  {"input": ..., "status": "ok", "value": ...}   or   {"input": ..., "status": ..., "error": ...}
A command is never run by a shell: {} is replaced by the line inside each argument, and
without {} the line is the last argument (as xargs does). A failed command's line also
has its exit_code, stdout and stderr.

examples:
  seq 1 100 | forkjoin map -j 20 --retry 3 --timeout 5 -- curl -sf https://example.com/{}
  forkjoin map --input ids.txt --rate 10/s --http GET "https://api.example.com/items/{}"
  forkjoin map --input words.txt --keep-order --call mypkg.text:normalize
"""

EPILOG = """\
durations: 5 (seconds), 250ms, 5s, 2m, 1h.  rates: 10 (per second), 10/s, 60/min, 10/5s.
exit codes: 0 every line ok, 1 some lines not ok, 2 usage or journal, 130 interrupted
(Ctrl-C), 143 terminated (SIGTERM), 129 hung up (SIGHUP): the lines that ended are written
and, with --journal, committed; the commands still running are stopped.
"""


# -- the command line -------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        # "argument -j/--jobs/--limit: ..." -> "--limit: ..." (one line, never usage text)
        raise UsageError(re.sub(r"^argument ([^:]+): ", _last_name, message))


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse's, sized to the terminal as it is, without importing shutil for it (bz2,
    lzma, fnmatch: 2 ms of a one-line map's 80 ms start-up, paid by every add_argument)."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        if width is None:
            width = _columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


def _columns() -> int:
    """``shutil.get_terminal_size().columns``: $COLUMNS, else stdout's terminal, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


def _last_name(m: re.Match[str]) -> str:
    return m.group(1).split("/")[-1] + ": "


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except BadValue as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _rate(text: str) -> tuple[float, float]:
    try:
        return parse_rate(text)
    except BadValue as e:
        raise argparse.ArgumentTypeError(str(e)) from None


class Halt:
    """``--halt``: stop after ``count`` lines ended ``on`` ("fail" or "success"); ``now``
    stops the lines in flight too, ``soon`` lets them finish (GNU parallel's words)."""

    # a plain class: a dataclass costs this command's start-up most of a millisecond
    __slots__ = ("count", "now", "on")

    def __init__(self, now: bool, on: str, count: int) -> None:
        self.now = now
        self.on = on
        self.count = count

    def __repr__(self) -> str:
        return f"Halt(now={self.now}, on={self.on!r}, count={self.count})"


_HALT_RE = r"^(now|soon)(?:,(fail|success)=(\d+))?$"


def _halt(text: str) -> Halt | None:
    value = text.strip().lower()
    if value in ("never", "0"):
        return None
    legacy = {"1": "soon,fail=1", "2": "now,fail=1"}  # GNU parallel's older numbers
    m = re.match(_HALT_RE, legacy.get(value, value))
    if m is None or (m.group(3) is not None and int(m.group(3)) < 1):
        raise argparse.ArgumentTypeError(
            f"expected now|soon[,fail=N|success=N] or never, got {text!r}"
        )
    return Halt(m.group(1) == "now", m.group(2) or "fail", int(m.group(3) or 1))


def parser() -> argparse.ArgumentParser:
    """The options of ``forkjoin map``."""
    p = _Parser(
        prog="forkjoin map",
        usage="forkjoin map [OPTIONS] [--] COMMAND [ARG...]\n"
        "       forkjoin map [OPTIONS] --http METHOD URL\n"
        "       forkjoin map [OPTIONS] --call MODULE:FUNCTION",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=_Formatter,
        allow_abbrev=False,
    )
    add = p.add_argument
    add("-j", "--jobs", "--limit", dest="limit", type=_positive, default=8, metavar="N",
        help="most lines running at once (default 8)")  # fmt: skip
    add("--rate", type=_rate, metavar="RATE", help="most lines started per second, or per time")
    add("--retry", type=_positive, metavar="N", help="attempts per line (default 1: no retry)")
    add("--timeout", type=_duration, metavar="DURATION", help="per call")
    add("--halt", type=_halt, metavar="WHEN",
        help="stop after failures: now,fail=N cancels the lines in flight, soon,fail=N lets "
        "them finish (success=N: after N ok lines); now = now,fail=1")  # fmt: skip
    add("-k", "--keep-order", "--ordered", dest="ordered", action="store_true",
        help="write results in input order")  # fmt: skip
    add("--input", metavar="FILE", help="read lines from FILE, not stdin")
    add("--http", nargs=2, metavar=("METHOD", "URL"),
        help="an HTTP request per line ({} in URL: the line, URL-quoted)")  # fmt: skip
    add("--call", metavar="MODULE:FUNCTION", help="a Python function (sync or async) per line")
    add("--results", metavar="DIR",
        help="also write one JSON file per line into DIR (000001.json ...): its input, "
        "outcome, stdout and stderr")  # fmt: skip
    add("--joblog", metavar="FILE",
        help="also write a tab-separated log: one row per line, as it ends")  # fmt: skip
    add("--bar", "--progress", dest="progress", action="store_true",
        help="draw progress on stderr, even when it is not a terminal")  # fmt: skip
    add("--backend", metavar="NAME",
        help="where --call runs: loop, thread (the defaults), process or dask")  # fmt: skip
    add("--dask", metavar="ADDRESS",
        help="--call on Dask: alone, a local cluster forkjoin starts; or a scheduler's "
        "ADDRESS (tcp://host:8786)")  # fmt: skip
    add("--journal", metavar="PATH",
        help="resume from / record to this SQLite journal: lines that ended ok before "
        "(same line, same command) are not run again (\"resumed\": true)")  # fmt: skip
    add("--fresh", action="store_true", help="with --journal: discard its records, start over")
    add("--retry-failed-only", action="store_true",
        help="with --journal: run only the lines that failed before")  # fmt: skip
    add("-q", "--quiet", action="store_true", help="no summary on stderr")
    add("command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return p


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse ``forkjoin map``'s arguments; :class:`UsageError` names what is wrong."""
    from . import bare_dask

    args, extra = parser().parse_known_args(bare_dask(argv))
    if extra:
        raise UsageError(
            f"unknown option {extra[0]} (options go before the command; forkjoin map -h lists them)"
        )
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    args.command = command
    if sum(1 for x in (command, args.http, args.call) if x) != 1:
        raise UsageError("give exactly one of `-- COMMAND...`, --http METHOD URL or --call mod:fn")
    return args


def options_of(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of ``fj.imap`` that the options ask for."""
    options: dict[str, Any] = {"limit": args.limit, "ordered": args.ordered}
    if args.timeout is not None:
        options["timeout"] = args.timeout
    if args.retry is not None:
        options["retry"] = fj.Retry(attempts=args.retry, backoff=0.1) if args.retry > 1 else False
    if args.rate is not None:
        options["rate"] = fj.RateLimit(args.rate[0], per=args.rate[1])
    if (args.fresh or args.retry_failed_only) and args.journal is None:
        flag = "--fresh" if args.fresh else "--retry-failed-only"
        raise UsageError(f"{flag}: give --journal PATH")
    if args.fresh and args.retry_failed_only:
        raise UsageError("give --fresh or --retry-failed-only, not both")
    if args.journal is not None:
        check_journal(args.journal, "map")
        journal = fj.Journal(args.journal, run="map", fresh=args.fresh)
        options["journal"] = journal.only_failed() if args.retry_failed_only else journal
    if args.backend is not None or args.dask is not None:
        options["backend"] = _backend(args.backend, args.dask, args.call)
    halt: Halt | None = args.halt
    if halt is not None and halt.now:
        options["max_failures" if halt.on == "fail" else "quorum"] = halt.count
    if args.progress:
        options["progress"] = fj.ProgressObserver(force=True, description="map")
    elif not args.quiet and sys.stderr.isatty():
        options["progress"] = True  # drawn on stderr only: the JSON lines stay clean
    return options


def main(argv: list[str], *, program: bool = False) -> int:
    """Run ``forkjoin map`` with ``argv``; the exit code. ``program``: this process is the
    ``forkjoin`` command itself (not a caller of this function), and ends after it."""
    with Signals() as signals:
        try:
            code = _main(argv, signals, program)
        except KeyboardInterrupt:  # a signal before the run started: nothing ran
            code = EXIT_INTERRUPTED
    return signals.exit_code or code


def _main(argv: list[str], signals: Signals, program: bool) -> int:
    guard_children()
    fd = -1
    try:
        args = parse(argv)
        options = options_of(args)
        if program:
            _settle()
        fn, http = _call_of(args)
        fd = _open_input(args.input)
        # written last: a usage error leaves no results directory or log behind
        sinks = _Sinks.open(args.results, args.joblog)
    except UsageError as e:
        if fd > 0:
            os.close(fd)
        say(f"map: {e}")
        return EXIT_USAGE
    except SystemExit as e:  # -h: argparse printed the help
        return EXIT_OK if e.code in (0, None) else EXIT_USAGE
    counts = _Counts()
    interrupted = False
    options["observers"] = [*options.get("observers", ()), signals]
    signals.starting()
    try:
        with journal_warnings():
            asyncio.run(_map(fn, http, fd, options, args.halt, sinks, counts))
    except KeyboardInterrupt:  # the lines that ended are written; the summary says so
        interrupted = True
    except fj.JournalError as e:
        say(f"map: {e}")
        return EXIT_USAGE
    except ConnectionError as e:  # the cluster could not be reached: nothing ran
        say(f"map: --dask: {str(e).removeprefix('DaskBackend: ')}")
        return EXIT_USAGE
    finally:
        signals.ended()
        sinks.close()
        if fd > 0:
            os.close(fd)
    if not args.quiet:
        wall = counts.wall
        n = counts.ok + counts.not_ok + counts.not_run
        extra = f", {counts.resumed} resumed" if counts.resumed else ""
        extra += f", {counts.not_run} not run" if counts.not_run else ""
        rate_text = f", {per_second(n, wall)}" if wall > 0 else ""
        halted = f"; halted ({counts.halted})" if counts.halted else ""
        if interrupted:
            why = _STOPPED_BY.get(signals.first or 2, "stopped")
            kept = ", the journal holds what finished" if args.journal is not None else ""
            halted += f"; {why}: lines still running were stopped{kept}"
        sys.stderr.write(
            f"map: {n} {'line' if n == 1 else 'lines'}, {counts.ok} ok, "
            f"{counts.not_ok} not ok{extra} in {wall:.2f}s{rate_text}{halted}\n"
        )
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if counts.not_ok == 0 else EXIT_NOT_OK


def _settle() -> None:
    """Start-up is over: what it made (modules, classes, functions) lives until the process
    ends, so the garbage collector need not walk it again, during the run or when the
    interpreter ends (20-30 ms of a one-line run, bench workload 13). Done before a module
    of the user's is imported (``--call``), whose objects are collected as usual."""
    fj.imap  # noqa: B018 - the engine, imported now rather than for the first line
    gc.freeze()
    gc.enable()  # off while the command's modules loaded (forkjoin.cli.main)


def per_second(n: int, wall: float) -> str:
    """``n`` lines in ``wall`` seconds as the summary says it: "1 line/s", "2,500 lines/s"."""
    rate = round(n / wall)
    return f"{rate:,} {'line' if rate == 1 else 'lines'}/s"


# what the summary of a stopped run says, by the signal that stopped it
_STOPPED_BY = {2: "interrupted", 15: "terminated", 1: "hung up"}


def _backend(backend: str | None, dask: str | None, call: str | None) -> Any:
    """``--backend`` / ``--dask`` as a backend value: for ``--call`` only (a command or a
    request is I/O the run waits on where it is)."""
    flag = "--dask" if dask is not None else "--backend"
    if call is None:
        raise UsageError(
            f"{flag}: applies to --call (a command or a request runs where the run is)"
        )
    if dask is not None:
        if backend not in (None, "dask"):
            raise UsageError("give --backend or --dask, not both")
        if dask != "local" and not looks_like_address(dask):
            raise UsageError(
                f"--dask: expected a scheduler address such as tcp://host:8786, got {dask!r}"
            )
        try:
            return fj.DaskBackend(address=None if dask == "local" else dask)
        except fj.InvalidPolicy as e:
            raise UsageError(f"--dask: {e}") from None
    if backend not in ("loop", "thread", "process", "dask"):
        raise UsageError(f"--backend: expected one of loop, thread, process, dask, got {backend!r}")
    return backend


def _open_input(path: str | None) -> int:
    """The file descriptor lines are read from: ``--input FILE``, or stdin (0)."""
    if path is None:
        return 0
    try:
        return os.open(path, os.O_RDONLY)
    except OSError as e:
        raise UsageError(f"--input: {path}: {e.strerror}") from None


def _call_of(args: argparse.Namespace) -> tuple[Callable[[str], Any] | None, Any]:
    """The function each line is given to, or the (method, URL) of ``--http``."""
    if args.http:
        method, url = args.http[0].upper(), args.http[1]
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"--http: expected an http(s) URL, got {url!r}")
        from ._kinds import warm_http

        warm_http()
        return None, (method, url)
    if args.call:
        try:
            fn = resolve_call(args.call, os.getcwd())
        except ValueError as e:
            raise UsageError(f"--call: {e}") from None
        import inspect

        from ._kinds import contained, contained_async

        # a function calling sys.exit fails its line, not the command
        wrapper = contained_async if inspect.iscoroutinefunction(fn) else contained
        return functools.partial(wrapper, fn), None
    return _command(list(args.command)), None


def _command(argv: list[str]) -> Callable[[str], Any]:
    has_slot = any("{}" in a for a in argv)
    # read once, as bytes (posix_spawn then has nothing to encode): every command of the
    # run starts from it
    environ = dict(os.environb)

    # a partial, so that a journal's fingerprint of each line covers the command too
    return functools.partial(_run_line, tuple(argv), has_slot, _Environ(environ))


class _Environ:
    """The environment commands start from, with a repr that is the same in every run (a
    journal fingerprints the call's arguments; the environment is not one of them)."""

    __slots__ = ("env",)

    def __init__(self, env: dict[bytes, bytes]) -> None:
        self.env = env

    def __repr__(self) -> str:
        return "<environ>"


async def _run_line(argv: tuple[str, ...], has_slot: bool, environ: _Environ, line: str) -> Any:
    # the line fills each argv element in place: never a shell, never a second command
    args = [a.replace("{}", line) for a in argv] if has_slot else [*argv, line]
    return await run_command(args, environ=environ.env)


class _Client:
    """The shared HTTP client, with a repr that is the same in every run (fingerprints)."""

    __slots__ = ("client",)

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    def __repr__(self) -> str:
        return "<client>"


async def _request_line(method: str, url: str, client: _Client, line: str) -> Any:
    from ._kinds import http_request

    target = url.replace("{}", quote_segment(line))
    return await http_request(method, target, client=client.client)


def _request(method: str, url: str, client: httpx.AsyncClient) -> Callable[[str], Any]:
    return functools.partial(_request_line, method, url, _Client(client))


# -- input ------------------------------------------------------------------------------


class _Reader:
    """Reads a file descriptor in a daemon thread of its own, a chunk per :meth:`read`.
    Not the loop's default executor: asyncio joins its threads when the loop closes, so
    a Ctrl-C while stdin (a pipe nobody closes) had nothing to read kept the command
    waiting for ever."""

    def __init__(self, fd: int) -> None:
        import queue
        import threading

        self.fd = fd
        self.asks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="forkjoin-map-input", daemon=True).start()

    def _serve(self) -> None:
        while True:
            ask = self.asks.get()
            if ask is None:
                return
            loop, fut = ask
            try:
                chunk, error = os.read(self.fd, _READ), None
            except OSError as e:
                chunk, error = b"", e
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_hand, fut, chunk, error)

    async def read(self) -> bytes:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bytes] = loop.create_future()
        self.asks.put((loop, fut))
        return await fut

    def close(self) -> None:
        self.asks.put(None)


def _hand(fut: asyncio.Future[bytes], chunk: bytes, error: OSError | None) -> None:
    if not fut.done():
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(chunk)


async def read_lines(fd: int, seen: dict[int, str], halted: list[str]) -> AsyncIterator[str]:
    """Lines of a file descriptor, read in chunks in a thread (a slow pipe never blocks
    the loop); each line is remembered in ``seen`` under its index until it is written.
    Ends early once ``halted`` says why (``--halt soon``)."""
    reader = _Reader(fd)
    try:
        async for line in _lines_of(reader, seen, halted):
            yield line
    finally:
        reader.close()


async def _lines_of(reader: _Reader, seen: dict[int, str], halted: list[str]) -> AsyncIterator[str]:
    rest = b""
    index = 0
    while not halted:
        chunk = await reader.read()
        if not chunk:
            break
        *lines, rest = (rest + chunk).split(b"\n")
        for raw in lines:
            if halted:
                return
            line = raw.decode("utf-8", "replace").removesuffix("\r")
            seen[index] = line
            index += 1
            yield line
    if rest and not halted:
        seen[index] = rest.decode("utf-8", "replace")
        yield seen[index]


def file_lines(fd: int, seen: dict[int, str], halted: list[str]) -> Iterator[str]:
    """Lines of a regular file, read in chunks on the loop's thread (a file never blocks
    for long, and a sync iterator is the engine's cheapest input path)."""
    rest = b""
    index = 0
    while not halted:
        chunk = os.read(fd, _READ)
        if not chunk:
            break
        *lines, rest = (rest + chunk).split(b"\n")
        for raw in lines:
            if halted:
                return
            line = raw.decode("utf-8", "replace").removesuffix("\r")
            seen[index] = line
            index += 1
            yield line
    if rest and not halted:
        seen[index] = rest.decode("utf-8", "replace")
        yield seen[index]


# -- output -----------------------------------------------------------------------------


class _Sinks:
    """Where results go besides stdout: ``--results DIR`` and ``--joblog FILE``."""

    JOBLOG_HEAD = "line\tstarted\truntime\tattempts\tstatus\texit_code\tinput\terror\n"

    def __init__(self, results: str | None, joblog: IO[str] | None) -> None:
        self.results = results
        self.joblog = joblog
        self.active = results is not None or joblog is not None

    @classmethod
    def open(cls, results: str | None, joblog: str | None) -> _Sinks:
        if results is not None:
            try:
                os.makedirs(results, exist_ok=True)
            except OSError as e:
                raise UsageError(f"--results: {results}: {e.strerror or e}") from None
        log = None
        if joblog is not None:
            try:
                log = open(joblog, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()
            except OSError as e:
                raise UsageError(f"--joblog: {joblog}: {e.strerror or e}") from None
            log.write(cls.JOBLOG_HEAD)
        return cls(results, log)

    def write(self, number: int, doc: dict[str, Any], o: fj.Outcome, wall0: float) -> None:
        if self.results is not None:
            full = {"line": number, **doc, "attempts": o.attempts}
            d = o.duration
            full["duration"] = round(d, 6) if d is not None else None
            path = os.path.join(self.results, f"{number:06d}.json")
            with open(path, "w", encoding="utf-8") as f:
                f.write(dumps(full) + "\n")
        if self.joblog is not None:
            value = doc.get("value")
            code = doc.get("exit_code", value.get("exit_code") if isinstance(value, dict) else "")
            # a line from the journal did not start in this run: its runtime is the recorded one
            resumed = bool(doc.get("resumed"))
            started = _when(wall0 + o.started) if o.started is not None and not resumed else ""
            d = o.duration
            row = (number, started, f"{d:.3f}" if d is not None else "", o.attempts,
                   "ok (resumed)" if resumed else doc["status"], "" if code is None else code,
                   _cell(doc["input"]), _cell(doc.get("error") or ""))  # fmt: skip
            self.joblog.write("\t".join(map(str, row)) + "\n")

    def flush(self) -> None:
        if self.joblog is not None:
            self.joblog.flush()

    def close(self) -> None:
        if self.joblog is not None:
            self.joblog.close()


def _cell(text: Any) -> str:
    """A joblog field on one line: tabs, newlines and backslashes escaped."""
    return (
        str(text)
        .replace("\\", "\\\\")
        .replace("\t", "\\t")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )


def _when(epoch: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(epoch).isoformat(sep=" ", timespec="milliseconds")


def line_doc(line: str | None, o: fj.Outcome, timeout: float | None) -> dict[str, Any]:
    """The JSON line of one input line's Outcome."""
    doc: dict[str, Any] = {"input": line, "status": o.status.value}
    if o.ok:
        doc["value"] = o.value
        return doc
    error = o.error
    if isinstance(error, fj.TaskTimeout) and o.reason != "deadline" and timeout is not None:
        # the engine names a map item by its index: a person knows the line
        doc["error"] = f"TaskTimeout: line {line!r} timed out after {timeout:g}s"
    else:
        doc["error"] = error_text(error)
    doc.update(failure_fields(error))
    if o.reason:
        doc["reason"] = o.reason
    return doc


class _HaltSoon:
    """``--halt soon,...``: counts the lines as the run records them (before a worker
    takes its next line), and once enough have ended says so, which ends the input."""

    def __init__(self, halt: Halt, halted: list[str]) -> None:
        self.halt = halt
        self.halted = halted
        self.seen = 0

    def on_task_finished(self, event: fj.TaskFinished) -> None:
        ok = event.outcome.ok
        if (not ok if self.halt.on == "fail" else ok) and not self.halted:
            self.seen += 1
            if self.seen >= self.halt.count:
                self.halted.append(f"soon,{self.halt.on}={self.halt.count}")


class _Counts:
    # a plain class: a dataclass costs this command's start-up most of a millisecond
    __slots__ = ("halted", "not_ok", "not_run", "ok", "resumed", "stopped", "wall")

    def __init__(self) -> None:
        self.ok = 0
        self.not_ok = 0
        self.wall = 0.0
        self.stopped = 0  # lines cancelled once --halt now,success=N was reached
        self.resumed = 0  # ok from the journal, not run again
        self.not_run = 0  # --retry-failed-only: did not fail before
        self.halted = ""


def _stdout() -> IO[str]:
    """Where result lines go: stdout, buffered here whatever buffering the interpreter gave
    it (``PYTHONUNBUFFERED`` makes ``sys.stdout`` a write per line, a system call each);
    :func:`_map` flushes it every :data:`_FLUSH_EVERY` seconds and at the end."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by the caller (a StringIO)
        return sys.stdout
    sys.stdout.flush()
    # flushed by _map; the descriptor stays stdout's
    return open(
        fd, "w", buffering=1 << 16, encoding=sys.stdout.encoding,
        errors=sys.stdout.errors, closefd=False,
    )  # fmt: skip


async def _map(
    fn: Callable[[str], Any] | None,
    http: tuple[str, str] | None,
    fd: int,
    options: dict[str, Any],
    halt: Halt | None,
    sinks: _Sinks,
    counts: _Counts,
) -> None:
    seen: dict[int, str] = {}
    halted: list[str] = []  # why the input stopped being read (--halt soon)
    out = _stdout()
    loop = asyncio.get_running_loop()
    flush_pending = False
    gone = False
    timeout = options.get("timeout")
    if halt is not None and not halt.now:
        options = {**options, "observers": [_HaltSoon(halt, halted)]}

    def flush() -> None:
        nonlocal flush_pending, gone
        flush_pending = False
        sinks.flush()
        try:
            out.flush()
        except BrokenPipeError:  # the reader went away (`| head`): no more lines are run
            gone = True

    started = time.perf_counter()
    wall0 = time.time()
    client: httpx.AsyncClient | None = None
    if http is not None:
        import httpx

        from ._kinds import ssl_context

        client = httpx.AsyncClient(
            timeout=(timeout or 30.0) + 1.0,
            limits=httpx.Limits(max_connections=options["limit"]),
            verify=ssl_context(),
        )
        fn = _request(http[0], http[1], client)
    assert fn is not None
    # a command's ok result is written without the encoder (see command_line)
    commands = isinstance(fn, functools.partial) and fn.func is _run_line
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
        lines = file_lines(fd, seen, halted) if regular else read_lines(fd, seen, halted)
        stream = fj.imap(fn, lines, **options)
        write_sinks = sinks.write if sinks.active else None
        async for o in stream:
            line = seen.pop(o.index, None)
            text = None
            if o.status is _OK:  # the common line, inline (--call runs 10k+ lines/s)
                counts.ok += 1
                doc = {"input": line, "status": "ok", "value": o.value}
                if o.resumed:
                    counts.resumed += 1
                    doc["resumed"] = True
                elif commands:
                    text = command_line(line, o.value)
            elif o.reason == _NOT_FAILED:  # --retry-failed-only: it did not fail before
                counts.not_run += 1
                doc = {"input": line, "status": o.status.value, "reason": o.reason}
            elif o.reason == "quorum":
                counts.stopped += 1  # cut short by --halt now,success=N: not a failure
                continue
            else:
                counts.not_ok += 1
                doc = line_doc(line, o, timeout)
            if write_sinks is not None:
                write_sinks(o.index + 1, doc, o, wall0)
            try:
                out.write((text or dumps(doc)) + "\n")
            except BrokenPipeError:
                break
            if gone:
                break
            if not flush_pending:
                flush_pending = True
                loop.call_later(_FLUSH_EVERY, flush)
        if halt is not None and halt.now:
            done = counts.not_ok if halt.on == "fail" else counts.ok
            halted.extend([f"now,{halt.on}={halt.count}"] if done >= halt.count else [])
    finally:
        if client is not None:
            await client.aclose()
        sinks.flush()
        try:
            out.flush()
        except BrokenPipeError:
            # the reader is gone (e.g. `| head`): silence the interpreter's final flush
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, out.fileno())
        counts.wall = time.perf_counter() - started
        counts.halted = halted[0] if halted else ""
