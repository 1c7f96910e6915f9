"""``forkjoin map``: a command, an HTTP request or a function per line of input.

Built on :func:`forkjoin.imap`: lines are read lazily in chunks and each result is written
as one JSON line as soon as it is ready (or in input order with ``--ordered``), so memory
stays O(limit) however long the input is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import typer
from pydantic_core import PydanticCustomError

import forkjoin as fj

from ._app import EXIT_INTERRUPTED, EXIT_NOT_OK, EXIT_OK, app, fail
from ._kinds import _ssl_context, http_request, resolve_call, run_command, warm_http
from ._render import dumps, error_text
from ._spec import parse_duration, parse_rate

if TYPE_CHECKING:
    import httpx

__all__ = ["map_command"]

_READ = 1 << 16
_FLUSH_EVERY = 0.05  # seconds: results reach a pipe promptly without a syscall per line


async def read_lines(fd: int, seen: dict[int, str]) -> AsyncIterator[str]:
    """Lines of a file descriptor, read in chunks in a thread (a slow pipe never blocks
    the loop); each line is remembered in ``seen`` under its index until it is written."""
    loop = asyncio.get_running_loop()
    rest = b""
    index = 0
    while True:
        chunk = await loop.run_in_executor(None, os.read, fd, _READ)
        if not chunk:
            break
        *lines, rest = (rest + chunk).split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace").removesuffix("\r")
            seen[index] = line
            index += 1
            yield line
    if rest:
        seen[index] = rest.decode("utf-8", "replace")
        yield seen[index]


def file_lines(fd: int, seen: dict[int, str]) -> Iterator[str]:
    """Lines of a regular file, read in chunks on the loop's thread (a file never blocks
    for long, and a sync iterator is the engine's cheapest input path)."""
    rest = b""
    index = 0
    while True:
        chunk = os.read(fd, _READ)
        if not chunk:
            break
        *lines, rest = (rest + chunk).split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace").removesuffix("\r")
            seen[index] = line
            index += 1
            yield line
    if rest:
        seen[index] = rest.decode("utf-8", "replace")
        yield seen[index]


def _command(argv: list[str]) -> Callable[[str], Any]:
    has_slot = any("{}" in a for a in argv)

    async def call(line: str) -> Any:
        # the line fills each argv element in place: never a shell, never a second command
        args = [a.replace("{}", line) for a in argv] if has_slot else [*argv, line]
        return await run_command(args)

    return call


def _request(method: str, url: str, client: httpx.AsyncClient) -> Callable[[str], Any]:
    async def call(line: str) -> Any:
        return await http_request(method, url.replace("{}", quote(line, safe="")), client=client)

    return call


@app.command(
    "map",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def map_command(
    argv: Annotated[
        list[str] | None, typer.Argument(metavar="-- ARGV... {}", help="command per line")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="most running at once")] = 8,
    rate: Annotated[str | None, typer.Option(help='most started per time, e.g. "10/s"')] = None,
    retry: Annotated[int | None, typer.Option(min=1, help="attempts per line")] = None,
    timeout: Annotated[str | None, typer.Option(help='per call, e.g. "5s"')] = None,
    ordered: Annotated[bool, typer.Option("--ordered", help="output in input order")] = False,
    input_file: Annotated[
        Path | None, typer.Option("--input", help="read lines from FILE, not stdin")
    ] = None,
    http: Annotated[
        tuple[str, str] | None,
        typer.Option("--http", metavar="METHOD URL", help="an HTTP request per line ({} in URL)"),
    ] = None,
    call: Annotated[
        str | None, typer.Option("--call", metavar="module:function", help="a function per line")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no summary on stderr")] = False,
    backend: Annotated[
        str | None,
        typer.Option("--backend", metavar="NAME", help="where --call runs: loop, thread, process"),
    ] = None,
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask", metavar="[ADDRESS]", help="--call on Dask: a local cluster, or ADDRESS"
        ),
    ] = None,
) -> None:
    """Run a command, request or function per input line; JSON Lines out, as results arrive.

    Each output line is {"input": ..., "status": ..., "value": ...} (or "error").
    """
    chosen = [x for x in (argv, http, call) if x]
    if len(chosen) != 1:
        raise fail("map: give exactly one of `-- ARGV...`, --http METHOD URL or --call mod:fn")
    options: dict[str, Any] = {"limit": limit, "ordered": ordered}
    if not quiet and sys.stderr.isatty():
        options["progress"] = True  # drawn on stderr only: the JSON lines stay clean
    try:
        if timeout is not None:
            options["timeout"] = parse_duration(timeout)
        if rate is not None:
            per_second = parse_rate(rate)
    except PydanticCustomError as e:
        raise fail(f"map: --{'timeout' if 'duration' in e.type else 'rate'}: {e}") from None
    if backend is not None or dask is not None:
        options["backend"] = _backend(backend, dask, call)
    if retry is not None:
        options["retry"] = fj.Retry(attempts=retry, backoff=0.1) if retry > 1 else False
    if rate is not None:
        options["rate"] = fj.RateLimit(per_second[0], per=per_second[1])
    method_url: tuple[str, str] | None = None
    if http:
        warm_http()
        method_url = (http[0].upper(), http[1])
        if not method_url[1].startswith(("http://", "https://")):
            raise fail(f"map: --http: expected an http(s) URL, got {http[1]!r}")
    fn: Callable[[str], Any] | None = None
    if call:
        try:
            fn = resolve_call(call, Path.cwd())
        except ValueError as e:
            raise fail(f"map: --call: {e}") from None
    elif argv:
        fn = _command(list(argv))
    fd = 0
    if input_file is not None:
        try:
            fd = os.open(input_file, os.O_RDONLY)
        except OSError as e:
            raise fail(f"map: --input: {input_file}: {e.strerror}") from None
    try:
        counts = asyncio.run(_map(fn, method_url, fd, options))
        code = EXIT_OK if counts["not_ok"] == 0 else EXIT_NOT_OK
    except KeyboardInterrupt:
        counts = None
        code = EXIT_INTERRUPTED
    except ConnectionError as e:  # the cluster could not be reached: nothing ran
        raise fail(f"map: --dask: {str(e).removeprefix('DaskBackend: ')}") from None
    finally:
        if input_file is not None:
            os.close(fd)
    if counts is not None and not quiet:
        wall = counts["wall"]
        n = counts["ok"] + counts["not_ok"]
        rate_text = f", {n / wall:,.0f} lines/s" if wall > 0 else ""
        sys.stderr.write(
            f"map: {n} lines, {counts['ok']} ok, {counts['not_ok']} not ok "
            f"in {wall:.2f}s{rate_text}\n"
        )
    raise typer.Exit(code)


def _backend(backend: str | None, dask: str | None, call: str | None) -> Any:
    """``--backend`` / ``--dask`` as a backend value: for ``--call`` only (a command or a
    request is I/O the run waits on where it is)."""
    from ._app import looks_like_address

    flag = "--dask" if dask is not None else "--backend"
    if call is None:
        raise fail(f"map: {flag}: applies to --call (a command or a request runs where the run is)")
    if dask is not None:
        if backend not in (None, "dask"):
            raise fail("map: give --backend or --dask, not both")
        if dask != "local" and not looks_like_address(dask):
            raise fail(
                f"map: --dask: expected a scheduler address such as tcp://host:8786, got {dask!r}"
            )
        try:
            return fj.DaskBackend(address=None if dask == "local" else dask)
        except fj.InvalidPolicy as e:
            raise fail(f"map: --dask: {e}") from None
    if backend not in ("loop", "thread", "process", "dask"):
        raise fail(f"map: --backend: expected one of loop, thread, process, dask, got {backend!r}")
    return backend


async def _map(
    fn: Callable[[str], Any] | None,
    http: tuple[str, str] | None,
    fd: int,
    options: dict[str, Any],
) -> dict[str, Any]:
    seen: dict[int, str] = {}
    counts: dict[str, Any] = {"ok": 0, "not_ok": 0}
    out = sys.stdout
    loop = asyncio.get_running_loop()
    flush_pending = False

    def flush() -> None:
        nonlocal flush_pending
        flush_pending = False
        with contextlib.suppress(BrokenPipeError):  # the reader went away between lines
            out.flush()

    started = time.perf_counter()
    client: httpx.AsyncClient | None = None
    if http is not None:
        import httpx

        client = httpx.AsyncClient(
            timeout=(options.get("timeout") or 30.0) + 1.0,
            limits=httpx.Limits(max_connections=options["limit"]),
            verify=_ssl_context(),
        )
        fn = _request(http[0], http[1], client)
    assert fn is not None
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
        lines = file_lines(fd, seen) if regular else read_lines(fd, seen)
        async for o in fj.imap(fn, lines, **options):
            doc: dict[str, Any] = {"input": seen.pop(o.index, None), "status": o.status.value}
            if o.ok:
                counts["ok"] += 1
                doc["value"] = o.value
            else:
                counts["not_ok"] += 1
                doc["error"] = error_text(o.error)
                if o.reason:
                    doc["reason"] = o.reason
            try:
                out.write(dumps(doc) + "\n")
            except BrokenPipeError:
                break
            if not flush_pending:
                flush_pending = True
                loop.call_later(_FLUSH_EVERY, flush)
    finally:
        if client is not None:
            await client.aclose()
        try:
            out.flush()
        except BrokenPipeError:
            # the reader is gone (e.g. `| head`): silence the interpreter's final flush
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, out.fileno())
    counts["wall"] = time.perf_counter() - started
    return counts
