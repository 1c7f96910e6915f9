"""Task kinds of a spec (command, http, sql, python) and the policies, as forkjoin calls.

Each kind is a plain function the engine runs like any other task; the CLI only turns a
validated spec into ``fj.task(...)`` values and run options.
"""

from __future__ import annotations

import contextlib
import functools
import graphlib
import importlib
import inspect
import json as json_module
import re
import sqlite3
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import forkjoin as fj

from ._process import CommandFailed, run_command
from ._template import Results, Vars, expand, result_source
from ._usage import SpecError, resolve_call

if TYPE_CHECKING:
    import httpx

    # the spec model is pydantic: imported where a spec is turned into a plan, so that
    # `forkjoin map --http/--call` never loads it
    from ._spec import BudgetSpec, KeyLines, RetrySpec, Spec

__all__ = [
    "CommandFailed",
    "Plan",
    "TaskExit",
    "build_plan",
    "contained",
    "contained_async",
    "http_request",
    "postgres_query",
    "resolve_call",
    "run_command",
    "sqlite_query",
    "warm_http",
]


async def http_request(
    method: str,
    url: str,
    *,
    client: httpx.AsyncClient | None = None,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, Any] | None = None,
    json: Any = None,
    body: str | None = None,
    expect: tuple[int, ...] | None = None,
    max_body: int = 1_000_000,
    timeout: float | None = None,
    follow_redirects: bool = False,
    idempotency_header: str | None = None,
) -> dict[str, Any]:
    """One HTTP request; the value is status, headers and the JSON or text body (capped).

    ``idempotency_header`` names a header sent with the task's ``fj.idempotency_key()``
    (the same on every attempt, hedge and resumed run of the task).

    An unexpected status raises ``httpx.HTTPStatusError`` (so 429/503 with Retry-After
    reach the resilience policies as the server meant them).
    """
    import httpx  # imported when first needed: it is a third of the CLI's start-up time

    headers = dict(headers or {})
    if idempotency_header is not None:
        headers[idempotency_header] = fj.idempotency_key()
    own = client is None
    if client is None:
        # forkjoin's own timeout governs; httpx's is a backstop just past it
        client = httpx.AsyncClient(
            timeout=(timeout + 1.0) if timeout else 30.0, verify=ssl_context()
        )
    try:
        request = client.build_request(
            method,
            url,
            headers=dict(headers or {}),
            params={k: _param(v) for k, v in (query or {}).items()} or None,
            json=json,
            content=body.encode() if body is not None else None,
        )
        response = await client.send(request, stream=True, follow_redirects=follow_redirects)
        try:
            data = bytearray()
            truncated = False
            async for chunk in response.aiter_bytes():
                room = max_body - len(data)
                if room > 0:
                    data += chunk[:room]
                if len(chunk) > room:
                    truncated = True
                    break
        finally:
            await response.aclose()
    finally:
        if own:
            await client.aclose()
    ok = response.status_code in expect if expect else 200 <= response.status_code < 300
    if not ok:
        raise httpx.HTTPStatusError(
            f"{response.status_code} {response.reason_phrase} for {method} {url}",
            request=request,
            response=response,
        )
    value: dict[str, Any] = {"status": response.status_code, "headers": dict(response.headers)}
    text = bytes(data).decode(response.encoding or "utf-8", "replace")
    if not truncated and "json" in response.headers.get("content-type", ""):
        try:
            value["json"] = json_module.loads(bytes(data)) if data else None
        except ValueError:
            value["text"] = text
    else:
        value["text"] = text
    if truncated:
        value["truncated"] = True
    return value


def warm_http() -> None:
    """Do httpx's one-time work (imports of its transport stack, the CA bundle: ~1 s on a
    busy machine) before a run starts, so it never counts against the first task's timeout
    or stalls the event loop."""
    import httpx

    httpx.AsyncClient(verify=ssl_context())  # builds (and imports) the transport


@functools.cache
def ssl_context() -> ssl.SSLContext:
    # loading the CA bundle takes ~90 ms: once per process, not once per task
    import httpx

    return httpx.create_ssl_context()


def _param(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def sqlite_query(path: str, query: str, params: Any, max_rows: int) -> list[dict[str, Any]]:
    """Run a parameterised query on an SQLite file (in a worker thread); rows as dicts."""
    uri = f"file:{path}?mode=rw"  # never create an empty database by mistake
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as conn:
        conn.row_factory = sqlite3.Row
        with conn:
            cur = conn.execute(query, params)
            rows = cur.fetchmany(max_rows)
    return [dict(r) for r in rows]


async def postgres_query(dsn: str, query: str, params: Any, max_rows: int) -> list[dict[str, Any]]:
    """Run a parameterised query ($1, $2 ...) on PostgreSQL through asyncpg."""
    try:
        asyncpg: Any = importlib.import_module("asyncpg")
    except ImportError:
        raise RuntimeError("PostgreSQL needs asyncpg: pip install 'forkjoin[postgres]'") from None
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(query, *params)
    finally:
        await conn.close()
    return [dict(r) for r in rows[:max_rows]]


class TaskExit(Exception):
    """A python task raised SystemExit or KeyboardInterrupt: the task's failure, not a
    request to stop the command line (a task calling ``sys.exit(3)`` fails; the other
    tasks keep their results)."""


def _exit_text(e: BaseException) -> str:
    what = f"SystemExit({e.code!r})" if isinstance(e, SystemExit) else type(e).__name__
    return f"the task raised {what}"


def contained(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Call a python task's function; SystemExit and KeyboardInterrupt become TaskExit."""
    try:
        value = fn(*args, **kwargs)
    except (SystemExit, KeyboardInterrupt) as e:
        raise TaskExit(_exit_text(e)) from None
    if inspect.isawaitable(value):  # a sync function handing back a coroutine
        return _awaited(value)
    return value


async def contained_async(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """:func:`contained` for an async function."""
    return await _awaited(fn(*args, **kwargs))


async def _awaited(awaitable: Any) -> Any:
    try:
        return await awaitable
    except (SystemExit, KeyboardInterrupt) as e:
        raise TaskExit(_exit_text(e)) from None


def _sqlite_path(dsn: str) -> str:
    # sqlite:///relative.db, sqlite:////abs/path.db (as SQLAlchemy spells them)
    rest = dsn[len("sqlite://") :]
    if rest.startswith("/"):
        rest = rest[1:]
    return unquote(urlsplit("x:" + rest).path) if "%" in rest else rest


# -- policies ---------------------------------------------------------------------------


def to_retry(spec: RetrySpec | None) -> fj.Retry | bool | None:
    if spec is None:
        return None
    if not spec.enabled:
        return False
    return fj.Retry(
        attempts=spec.attempts, backoff=spec.backoff, max_delay=spec.max_delay, jitter=spec.jitter
    )


@dataclass
class Plan:
    """What ``forkjoin run`` will call: the tasks and the run's options."""

    tasks: dict[str, fj.Task] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


def _where(keylines: KeyLines, *path: str) -> dict[str, Any]:
    return {"line": keylines.find(tuple(path)), "path": ".".join(path)}


def run_options(spec: Spec, keylines: KeyLines) -> dict[str, Any]:
    """The spec's ``[run]``, ``[defaults]`` and ``[groups]`` as keywords of ``fj.run``."""
    r = spec.run
    opts: dict[str, Any] = {
        "limit": r.limit,
        "deadline": r.deadline,
        "on_error": r.on_error,
        "quorum": r.quorum,
        "timeout": spec.defaults.timeout,
    }
    retry = to_retry(spec.defaults.retry)
    if retry is not None:
        opts["retry"] = retry
    if r.quorum is not None and r.quorum > len(spec.tasks):
        raise SpecError(
            f"quorum {r.quorum} is larger than the number of tasks ({len(spec.tasks)})",
            **_where(keylines, "run", "quorum"),
        )
    if r.budget is not None:
        opts["budget"] = _budget(r.budget, keylines)
    if r.rate is not None:
        opts["rate"] = _policy(
            functools.partial(fj.RateLimit, r.rate.rate, per=r.rate.per, burst=r.rate.burst),
            keylines,
            "run",
            "rate",
        )
    limits: dict[str, Any] = {}
    rates: dict[str, Any] = {}
    groups: dict[str, Any] = {}
    for name, g in spec.groups.items():
        if g.adaptive is not None and g.adaptive.enabled:
            if g.limit is not None:
                raise SpecError(
                    "set either limit or adaptive for a group, not both",
                    **_where(keylines, "groups", name, "adaptive"),
                )
            a = g.adaptive
            limits[name] = _policy(
                functools.partial(fj.AdaptiveLimit, initial=a.initial, min=a.min, max=a.max),
                keylines,
                "groups",
                name,
                "adaptive",
            )
        elif g.limit is not None:
            limits[name] = g.limit
        if g.rate is not None:
            rate = g.rate
            rates[name] = _policy(
                functools.partial(fj.RateLimit, rate.rate, per=rate.per, burst=rate.burst),
                keylines,
                "groups",
                name,
                "rate",
            )
        if g.timeout is not None or g.retry is not None:
            groups[name] = _policy(
                functools.partial(fj.Group, timeout=g.timeout, retry=to_retry(g.retry)),
                keylines,
                "groups",
                name,
            )
    if groups:
        opts["groups"] = groups
    if limits:
        opts["limits"] = limits
    if rates:
        opts["rates"] = rates
    return opts


def _policy(build: Callable[[], Any], keylines: KeyLines, *path: str) -> Any:
    try:
        return build()
    except (fj.InvalidPolicy, TypeError, ValueError) as e:
        raise SpecError(str(e), **_where(keylines, *path)) from None


def _budget(b: BudgetSpec, keylines: KeyLines) -> Any:
    return _policy(
        functools.partial(fj.Budget, usd=b.usd, tokens=b.tokens), keylines, "run", "budget"
    )


def _backends(spec: Spec, keylines: KeyLines) -> Callable[[str], Any]:
    """Backend names as the values tasks take; ``"dask"`` is the cluster of ``[run.dask]``
    (one value for every task naming it, so they share it)."""
    made: dict[str, Any] = {}

    def value(name: str) -> Any:
        if name not in made:
            d = spec.run.dask
            if name == "dask" and d is not None:
                made[name] = _policy(
                    functools.partial(
                        fj.DaskBackend, address=d.address, workers=d.workers, threads=d.threads
                    ),
                    keylines,
                    "run",
                    "dask",
                )
            else:
                made[name] = name
        return made[name]

    return value


def build_plan(spec: Spec, keylines: KeyLines, variables: Vars, spec_dir: Path) -> Plan:
    """Turn a validated spec into tasks (templates filled) and run options.

    A task that reads other tasks' results (``{tasks.NAME.value...}``, ``for_each``) waits
    for them and fills those templates when it is admitted; ``after`` orders the rest. A
    ``backend`` (the task's, else its group's, else the run's) applies to python tasks: a
    command, a request or a query is I/O that the run's loop waits on where the run is.
    Raises :class:`SpecError` for anything wrong (an unknown task, a cycle...) — before
    anything runs.
    """
    from ._spec import PythonTask

    plan = Plan(options=run_options(spec, keylines))
    backend_value = _backends(spec, keylines)
    names = set(spec.tasks)
    waits: dict[str, list[str]] = {}
    for name, t in spec.tasks.items():
        base = ("tasks", name)
        if t.group is not None and t.group not in spec.groups:
            known = ", ".join(sorted(spec.groups)) or "none"
            header = (
                t.group if re.fullmatch(r"[A-Za-z0-9_-]+", t.group) else json_module.dumps(t.group)
            )
            raise SpecError(
                f"unknown group {t.group!r} (groups: {known}): declare it with [groups.{header}]",
                **_where(keylines, *base, "group"),
            )
        options: dict[str, Any] = {
            "timeout": t.timeout,
            "group": t.group,
            "priority": t.priority,
            "cost": t.cost,
        }
        retry = to_retry(t.retry)
        if retry is not None:
            options["retry"] = retry
        if t.hedge is not None and t.hedge.enabled:
            if not t.idempotent:
                raise SpecError(
                    "hedging starts a duplicate call: mark the task idempotent = true",
                    **_where(keylines, *base, "hedge"),
                )
            h = t.hedge
            options["hedge"] = _policy(
                functools.partial(fj.Hedge, after=h.after, max_extra=h.max_extra),
                keylines,
                *base,
                "hedge",
            )
        if t.idempotent:
            options["idempotent"] = True
        if t.backend is not None and not isinstance(t, PythonTask):
            raise SpecError(
                "backend applies to python tasks: a command, request or query is I/O the "
                "run waits on where it is",
                **_where(keylines, *base, "backend"),
            )
        group = spec.groups.get(t.group) if t.group is not None else None
        chosen = t.backend or (group.backend if group is not None else None) or spec.run.backend
        if chosen is not None and isinstance(t, PythonTask):
            options["backend"] = backend_value(chosen)
        after = _after(t.after, name, spec, keylines)
        source = None
        if t.for_each is not None:
            source = result_source(t.for_each)
            if source is None or source[0] not in names:
                raise SpecError(
                    'expected one result to iterate over, like "{tasks.NAME.value.KEY}", '
                    f"got {t.for_each!r}"
                    + (f" (no task {source[0]!r})" if source is not None else ""),
                    **_where(keylines, *base, "for_each"),
                )
        results = Results(names, for_each=source is not None)
        fn, args = _call_of(t, base, keylines, variables.scoped(results), spec_dir, spec)
        reads = list(dict.fromkeys(results.used))
        waits[name] = [*after, *reads, *([source[0]] if source else [])]
        if source is not None:
            call = _deferred(t, base, keylines, variables, spec_dir, spec, reads, True, fn)
            plan.tasks[name] = _policy(
                functools.partial(
                    fj.each, fj.ref(source[0], *source[1]), call, fj.item(),
                    *(fj.ref(r) for r in reads), after=after, **options,
                ),
                keylines,
                *base,
            )  # fmt: skip
        elif reads:
            call = _deferred(t, base, keylines, variables, spec_dir, spec, reads, False, fn)
            plan.tasks[name] = _policy(
                functools.partial(
                    fj.task, call, *(fj.ref(r) for r in reads), after=after, **options
                ),
                keylines,
                *base,
            )
        else:
            plan.tasks[name] = _policy(
                functools.partial(fj.task, fn, *args, after=after, **options),
                keylines,
                *base,
            )
    _check_cycles(waits, {n: t.after for n, t in spec.tasks.items()}, keylines)
    return plan


def _after(after: list[str], name: str, spec: Spec, keylines: KeyLines) -> list[str]:
    """A task's ``after``: each a task of the spec (``NAME/*``: one with ``for_each``)."""
    for i, dep in enumerate(after):
        group = dep[:-2] if dep.endswith("/*") else None
        target = spec.tasks.get(group if group is not None else dep)
        if target is None:
            known = ", ".join(sorted(spec.tasks))
            raise SpecError(
                f"unknown task {dep!r} (tasks: {known})",
                **_where(keylines, "tasks", name, "after", str(i)),
            )
        if group is not None and target.for_each is None:
            raise SpecError(
                f"{dep!r} stands for the tasks of a for_each, and task {group!r} has none",
                **_where(keylines, "tasks", name, "after", str(i)),
            )
    return after


def _check_cycles(
    waits: dict[str, list[str]], afters: dict[str, list[str]], keylines: KeyLines
) -> None:
    """SpecError naming a cycle of tasks that wait for each other, at the first one's
    ``after`` (or the task, when it waits through a template)."""
    graph = {n: [d[:-2] if d.endswith("/*") else d for d in deps] for n, deps in waits.items()}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as e:
        # each node of the cycle is a dependency of the next one: read it backwards
        cycle = list(reversed(e.args[1]))
        steps = f"{cycle[0]!r} waits for {cycle[1]!r}" + "".join(
            f", which waits for {n!r}" for n in cycle[2:]
        )
        first = cycle[0]
        named = {d[:-2] if d.endswith("/*") else d for d in afters[first]}
        path = ("tasks", first, "after") if cycle[1] in named else ("tasks", first)
        raise SpecError(f"dependency cycle: {steps}", **_where(keylines, *path)) from None


def _deferred(
    t: Any,
    base: tuple[str, ...],
    keylines: KeyLines,
    variables: Vars,
    spec_dir: Path,
    spec: Spec,
    reads: list[str],
    for_each: bool,
    checked: Callable[..., Any],
) -> Callable[..., Any]:
    """The call of a task whose fields read results: they are filled when it is admitted
    (``fj.ref`` hands it the values, ``fj.item`` its element), then it runs as its kind
    does. A sync kind stays sync (it runs in a worker thread)."""
    names = set(spec.tasks)

    def made(values: tuple[Any, ...]) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        if for_each:
            item, rest = values[0], values[1:]
            results = Results(names, True, dict(zip(reads, rest, strict=True)), item)
        else:
            results = Results(names, False, dict(zip(reads, values, strict=True)))
        return _call_of(t, base, keylines, variables.scoped(results), spec_dir, spec)

    if inspect.iscoroutinefunction(checked):

        async def call_async(*values: Any) -> Any:
            fn, args = made(values)
            return await fn(*args)

        return call_async

    def call(*values: Any) -> Any:
        fn, args = made(values)
        return fn(*args)

    return call


def _call_of(
    t: Any,
    base: tuple[str, ...],
    keylines: KeyLines,
    variables: Vars,
    spec_dir: Path,
    spec: Spec,
) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    from ._spec import CommandTask, HttpTask, PythonTask, SqlTask

    def fill(key: str, value: Any, *, url: bool = False) -> Any:
        return expand(value, variables, (*base, key), keylines.find, url=url)

    timeout = t.timeout if t.timeout is not None else spec.defaults.timeout
    if isinstance(t, CommandTask):
        argv: list[str]
        if t.shell:
            # the values go to sh as positional parameters: the script only names them
            text = t.argv if isinstance(t.argv, str) else " ".join(t.argv)
            where = (".".join((*base, "argv")), keylines.find((*base, "argv")))
            script, values = variables.shell(text, where)
            argv = ["/bin/sh", "-c", script, "forkjoin", *values]
        else:
            filled = fill("argv", t.argv)
            argv = [str(a) for a in filled] if isinstance(filled, list) else [str(filled)]
        cwd = fill("cwd", t.cwd) if t.cwd else None
        return (
            functools.partial(
                run_command,
                argv,
                ok_codes=tuple(t.ok_codes),
                cwd=str(spec_dir / str(cwd)) if cwd else None,
                env={k: str(v) for k, v in fill("env", t.env).items()},
                stdin=str(fill("stdin", t.stdin)) if t.stdin is not None else None,
                max_output=t.max_output,
            ),
            (),
        )
    if isinstance(t, HttpTask):
        url = str(fill("url", t.url, url=True))
        filled = variables.results is not None and variables.results.values is not None
        # a whole URL taken from a result (a link a search returned) must be one
        if filled and not url.lower().startswith(("http://", "https://")):
            raise SpecError(
                f"expected an http:// or https:// URL, got {url[:100]!r}",
                **_where(keylines, *base, "url"),
            )
        return (
            functools.partial(
                http_request,
                t.method,
                url,
                headers={k: str(v) for k, v in fill("headers", t.headers).items()},
                query=fill("query", t.query),
                json=fill("json", t.json_),
                body=str(fill("body", t.body)) if t.body is not None else None,
                expect=tuple(t.expect) if t.expect else None,
                max_body=t.max_body,
                timeout=timeout,
                follow_redirects=t.follow_redirects,
                idempotency_header=t.idempotency_header,
            ),
            (),
        )
    if isinstance(t, SqlTask):
        dsn = str(fill("dsn", t.dsn))
        params = fill("params", t.params)
        if dsn.startswith(("postgres://", "postgresql://")):
            if isinstance(params, dict):
                raise SpecError(
                    "PostgreSQL takes positional params ($1, $2 ...): give a list",
                    **_where(keylines, *base, "params"),
                )
            return functools.partial(postgres_query, dsn, t.query, list(params), t.max_rows), ()
        if not dsn.startswith("sqlite://"):
            raise SpecError(
                f'expected "sqlite:///path.db" or "postgresql://...", got {dsn!r}',
                **_where(keylines, *base, "dsn"),
            )
        path = _sqlite_path(dsn)
        if not Path(path).is_absolute():
            path = str(spec_dir / path) if not Path(path).exists() else path
        return functools.partial(sqlite_query, path, t.query, params, t.max_rows), ()
    assert isinstance(t, PythonTask)
    try:
        fn = resolve_call(t.call, spec_dir)
    except ValueError as e:
        raise SpecError(str(e), **_where(keylines, *base, "call")) from None
    args = tuple(fill("args", t.args))
    kwargs = fill("kwargs", t.kwargs)
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    )
    wrapper = contained_async if is_async else contained
    return functools.partial(wrapper, fn, **kwargs), args
