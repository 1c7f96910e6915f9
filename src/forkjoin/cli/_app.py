"""The typer app: ``forkjoin run`` and ``forkjoin report`` (``forkjoin map`` is argparse,
in ``_mapcmd``, so that it starts without typer; it is reachable from this app too).

Each command is a thin layer: parse, call the library, render. Exit codes: 0 all ok,
1 some tasks not ok, 2 a bad spec, usage or journal, 130 interrupted, 143 terminated, 129
hung up (the partial results and the report are printed all the same). Help is
plain text (no markup), options that take no value are shown without one, and a usage
error is one line.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

import forkjoin as fj

from .._version import __version__
from ._kinds import build_plan, resolve_call, warm_http
from ._process import guard_children
from ._render import dumps, render_report, results_doc
from ._signals import Signals
from ._spec import BACKENDS, DaskSpec, HttpTask, KeyLines, SetupSpec, Spec, SpecError, load_spec
from ._template import Redactor, Vars, expand
from ._usage import (
    EXIT_INTERRUPTED,
    EXIT_NOT_OK,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    UsageError,
    journal_warnings,
    looks_like_address,
    say,
)
from ._usage import check_journal as _check_journal

__all__ = ["EXIT_INTERRUPTED", "EXIT_NOT_OK", "EXIT_OK", "EXIT_TERMINATED", "EXIT_USAGE", "app"]


class _Commands(TyperGroup):
    """The app's commands, with a usage error as one line (``forkjoin: run: no such
    option: --halt``) rather than click's block of usage text."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except typer.TyperException as e:  # click's UsageError, BadParameter ...
            ctx = getattr(e, "ctx", None)
            where = ctx.command_path if ctx is not None else (prog_name or "forkjoin")
            where = where.removeprefix("forkjoin").strip()
            text = e.format_message() if hasattr(e, "format_message") else str(e)
            text = text[:1].lower() + text[1:]
            hint = f" (see forkjoin {where + ' ' if where else ''}--help)"
            say(f"{where + ': ' if where else ''}{text}{hint}")
            code = getattr(e, "exit_code", EXIT_USAGE)
        except typer.Abort:  # end of input at a prompt
            say("aborted")
            code = EXIT_NOT_OK
        code = code if isinstance(code, int) else EXIT_OK
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    name="forkjoin",
    cls=_Commands,
    help="Run many independent tasks at once under policies; get keyed results and a report.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"forkjoin {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_version, help="show the version"),
    ] = False,
) -> None:
    """Run many independent tasks at once under policies; get keyed results and a report."""


def fail(message: str) -> typer.Exit:
    """Print one line to stderr; the caller raises the returned Exit (code 2)."""
    say(message)
    return typer.Exit(EXIT_USAGE)


def parse_vars(pairs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip().isidentifier():
            raise fail(f"--var: expected key=value, got {pair!r}")
        out[key.strip()] = value
    return out


def _stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


class SetupFailed(Exception):
    """The spec's setup raised: nothing was run."""


@contextlib.contextmanager
def _setup(
    setup: SetupSpec | None, kwargs: dict[str, Any], spec_dir: Path, given: dict[str, str]
) -> Iterator[Any]:
    """Enter the spec's setup (a context manager or a function returning vars); its
    kwargs have their templates filled."""
    if setup is None or (setup.skip_if_var and setup.skip_if_var in given):
        yield {}
        return
    fn = resolve_call(setup.call, spec_dir)
    try:
        made = fn(**kwargs)
        manager = made if hasattr(made, "__enter__") else contextlib.nullcontext(made)
        provided = manager.__enter__()
        values = dict(provided or {})
    except Exception as e:
        raise SetupFailed(f"setup {setup.call} failed: {type(e).__name__}: {e}") from e
    try:
        yield values
    except BaseException:
        if not manager.__exit__(*sys.exc_info()):
            raise
    else:
        manager.__exit__(None, None, None)


@app.command()
def run(
    spec_file: Annotated[Path, typer.Argument(metavar="SPEC.toml", help="the spec to run")],
    var: Annotated[
        list[str] | None,
        typer.Option("--var", metavar="KEY=VALUE", help="set a template variable (repeatable)"),
    ] = None,
    json_file: Annotated[
        Path | None,
        typer.Option("--json", metavar="FILE", help="write the JSON results here, not stdout"),
    ] = None,
    html: Annotated[
        Path | None, typer.Option(metavar="FILE", help="write the HTML timeline here")
    ] = None,
    report_json: Annotated[
        Path | None, typer.Option("--report-json", metavar="FILE", help="save the report as JSON")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no report on stderr")] = False,
    allow_partial: Annotated[
        bool,
        typer.Option(
            "--allow-partial", help="exit 0 when some tasks are ok (or [run] allow_partial)"
        ),
    ] = False,
    progress: Annotated[
        bool,
        typer.Option(
            "--progress", "--bar", help="draw progress on stderr, even when it is not a terminal"
        ),
    ] = False,
    journal: Annotated[
        Path | None,
        typer.Option(
            "--journal", metavar="FILE", help="resume from / record to this SQLite journal"
        ),
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="with a journal: discard its records, start over")
    ] = False,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend", metavar="NAME", help="where python tasks run: loop, thread, process, dask"
        ),
    ] = None,
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask",
            metavar="[ADDRESS]",
            help="python tasks on Dask: a local cluster, or the scheduler at ADDRESS",
        ),
    ] = None,
) -> None:
    """Run the named tasks of a TOML spec; print keyed JSON results and the report.

    With a journal (--journal run.db, or journal in [run]) tasks that ended ok in an
    earlier run of the same spec are not run again: their recorded results are used.
    """
    with Signals() as signals:
        try:
            code = _run(
                signals, spec_file, var, json_file, html, report_json, quiet, allow_partial,
                progress, journal, fresh, backend, dask,
            )  # fmt: skip
        except KeyboardInterrupt:  # a signal before the run started: nothing ran
            code = signals.exit_code or EXIT_INTERRUPTED
    raise typer.Exit(signals.exit_code or code)


def _run(
    signals: Signals,
    spec_file: Path,
    var: list[str] | None,
    json_file: Path | None,
    html: Path | None,
    report_json: Path | None,
    quiet: bool,
    allow_partial: bool,
    progress: bool,
    journal: Path | None,
    fresh: bool,
    backend: str | None,
    dask: str | None,
) -> int:
    guard_children()
    display = str(spec_file)
    redact = Redactor()
    given = parse_vars(var)
    spec_dir = spec_file.resolve().parent
    try:
        spec, keylines = load_spec(spec_file, display)
        spec = with_backend(spec, backend, dask)
        variables = Vars(redact)
        variables.values["spec_dir"] = str(spec_dir)
        variables.update(spec.vars, lambda k: (f"vars.{k}", keylines.find(("vars", k))))
        # names a setup provides are placeholders until it has run (so templates check now)
        provides = {
            k: "" for k in (spec.setup.provides if spec.setup else []) if k not in variables.values
        }
        variables.update(provides, lambda k: ("setup.provides", keylines.find(("setup",))))
        variables.update(given, lambda k: (f"--var {k}", 0))
        if spec.aggregate is not None:
            _resolve(spec.aggregate.call, spec_dir, keylines, "aggregate")
        setup_kwargs: dict[str, Any] = {}
        if spec.setup is not None:
            _resolve(spec.setup.call, spec_dir, keylines, "setup")
            setup_kwargs = expand(spec.setup.kwargs, variables, ("setup", "kwargs"), keylines.find)
        # build once before any side effect: a bad spec runs nothing
        build_plan(spec, keylines, variables, spec_dir)
    except SpecError as e:
        raise fail(redact(str(e.in_file(display)))) from None
    if fresh and journal is None and spec.run.journal is None:
        raise fail("--fresh: give --journal PATH (or [run] journal in the spec)")
    run_journal: fj.Journal | None = None
    if journal is not None or spec.run.journal is not None:
        path = journal if journal is not None else spec_dir / str(spec.run.journal)
        name = spec_file.stem
        check_journal(path, name)  # before the setup: a bad journal has no side effect
        run_journal = fj.Journal(path, run=name, fresh=fresh).with_redaction(redact)

    try:
        results, code, aggregate, agg_error = _run_with_setup(
            spec, keylines, variables, given, setup_kwargs, spec_dir, display, redact, quiet,
            run_journal, progress, "--dask" if dask is not None else None, signals,
        )  # fmt: skip
    except SetupFailed as e:
        typer.echo(redact(f"forkjoin: {e}"), err=True)
        raise typer.Exit(EXIT_NOT_OK) from None
    except fj.JournalError as e:
        raise fail(redact(str(e))) from None

    doc: dict[str, Any] = {"results": results_doc(results)}
    if spec.aggregate is not None:
        doc["aggregate"] = aggregate if agg_error is None else {"error": agg_error}
    text = redact(dumps(redact.value(doc), indent=2))
    if json_file is not None:
        json_file.write_text(text + "\n")
    else:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    report = results.report
    if report_json is not None:
        report_json.write_text(redact(report.to_json(indent=2)) + "\n")
    if html is not None:
        report.to_html(html)
        html.write_text(redact(html.read_text()))
    if not quiet:
        sys.stderr.write(render_report(report, results, redact, terminal=_stderr_is_terminal()))
        if agg_error:
            sys.stderr.write(redact(f"aggregate failed: {agg_error}\n"))
        sys.stderr.flush()
    if code == EXIT_INTERRUPTED and run_journal is not None and signals.first is not None:
        say(f"{_SIGNAL_WORDS.get(signals.first, 'stopped')}: the journal holds what finished")
    if code == EXIT_OK:
        ok = sum(1 for o in results.values() if o.ok)
        partial = allow_partial or spec.run.allow_partial
        if agg_error or (ok < len(results) and not (partial and ok > 0)):
            code = EXIT_NOT_OK
    return code


# what a stopped journaled run says, by the signal that stopped it
_SIGNAL_WORDS = {2: "interrupted", 15: "terminated", 1: "hung up"}


def _run_with_setup(
    spec: Spec,
    keylines: KeyLines,
    variables: Vars,
    given: dict[str, str],
    setup_kwargs: dict[str, Any],
    spec_dir: Path,
    display: str,
    redact: Redactor,
    quiet: bool,
    journal: fj.Journal | None = None,
    progress: bool = False,
    cluster_from: str | None = None,
    signals: Signals | None = None,
) -> tuple[fj.Results, int, Any, str | None]:
    code = EXIT_OK
    aggregate: Any = None
    agg_error: str | None = None
    with _setup(spec.setup, setup_kwargs, spec_dir, given) as provided:
        try:
            variables.update(provided, lambda k: ("setup", keylines.find(("setup",))))
            variables.update(given, lambda k: (f"--var {k}", 0))
            plan = build_plan(spec, keylines, variables, spec_dir)
        except SpecError as e:
            raise fail(redact(str(e.in_file(display)))) from None
        if any(isinstance(t, HttpTask) for t in spec.tasks.values()):
            warm_http()
        options = dict(plan.options)
        if journal is not None:
            options["journal"] = journal
        if progress:  # asked for: drawn even when stderr is no terminal (a CI log)
            options["progress"] = fj.ProgressObserver(force=True, total=len(plan.tasks))
        elif _stderr_is_terminal() and not quiet:
            options["progress"] = True
        if signals is not None:  # it takes SIGINT over from asyncio once the run is going
            options["observers"] = [*options.get("observers", ()), signals]
            signals.starting()
        try:
            with journal_warnings(redact):
                results = fj.run(plan.tasks, **options)
        except fj.Interrupted as e:
            results = e.results
            code = EXIT_INTERRUPTED
        except ConnectionError as e:  # a backend's cluster could not be reached: nothing ran
            where = cluster_from or f"{display}:{keylines.find(('run', 'dask'))}: run.dask"
            raise fail(redact(f"{where}: {str(e).removeprefix('DaskBackend: ')}")) from None
        except fj.FanError as e:  # fail_fast: the results are still keyed and complete
            results = e.results
        finally:
            if signals is not None:
                signals.ended()
        if spec.aggregate is not None and code != EXIT_INTERRUPTED:
            try:
                aggregate_fn = resolve_call(spec.aggregate.call, spec_dir)
                aggregate = aggregate_fn(results, **spec.aggregate.kwargs)
            except Exception as e:
                agg_error = f"{type(e).__name__}: {e}"
    return results, code, aggregate, agg_error


def check_journal(path: Path, run: str) -> None:
    """Exit 2 with one line if ``path`` is not a usable journal, or ``run`` is locked."""
    try:
        _check_journal(path, run)
    except UsageError as e:
        raise fail(str(e)) from None


def with_backend(spec: Spec, backend: str | None, dask: str | None) -> Spec:
    """The spec with ``--backend`` / ``--dask`` as its ``[run] backend`` (a task's or a
    group's own still wins)."""
    if backend is None and dask is None:
        return spec
    if backend is not None and backend not in BACKENDS:
        raise SpecError(
            f"expected one of {', '.join(BACKENDS)}, got {backend!r}", path="--backend", line=0
        )
    run = spec.run
    if dask is not None:
        if backend not in (None, "dask"):
            raise SpecError("give --backend or --dask, not both", path="--dask", line=0)
        if dask != "local" and not looks_like_address(dask):
            raise SpecError(
                f"expected a scheduler address such as tcp://host:8786, got {dask!r}",
                path="--dask",
                line=0,
            )
        address = None if dask == "local" else dask
        run = run.model_copy(update={"backend": "dask", "dask": DaskSpec(address=address)})
    else:
        run = run.model_copy(update={"backend": backend})
    return spec.model_copy(update={"run": run})


def _resolve(ref: str, spec_dir: Path, keylines: Any, key: str) -> Any:
    try:
        return resolve_call(ref, spec_dir)
    except ValueError as e:
        raise SpecError(str(e), line=keylines.find((key, "call")), path=f"{key}.call") from None


@app.command()
def report(
    run_json: Annotated[Path, typer.Argument(metavar="RUN.json", help="a saved report")],
    html: Annotated[
        Path | None, typer.Option(metavar="FILE", help="write the HTML timeline here")
    ] = None,
) -> None:
    """Re-render a report saved with `forkjoin run --report-json`."""
    try:
        data = json.loads(run_json.read_text())
    except OSError as e:
        raise fail(f"{run_json}: cannot read: {e.strerror or e}") from None
    except ValueError as e:
        raise fail(f"{run_json}: not a JSON report: {e}") from None
    if not isinstance(data, dict) or "version" not in data:
        raise fail(f"{run_json}: not a forkjoin report (no version field)")
    try:
        loaded = fj.RunReport.from_dict(data)
    except Exception as e:
        raise fail(f"{run_json}: not a readable report: {e}") from None
    if html is not None:
        loaded.to_html(html)
    sys.stdout.write(render_report(loaded, None, Redactor(), terminal=sys.stdout.isatty()))
    raise typer.Exit(EXIT_OK)


class _Untouched(TyperCommand):
    """A command whose arguments are handed on as given (``--`` included): ``map``
    parses its own."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.args = list(args)
        return []


@app.command("map", cls=_Untouched, add_help_option=False)
def map_command(ctx: typer.Context) -> None:
    """Run a command, request or function per input line; JSON Lines out."""
    from ._mapcmd import main as map_main

    raise typer.Exit(map_main(list(ctx.args)))
