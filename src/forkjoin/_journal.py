"""Journal: an SQLite file that makes runs durable.

A journal is one more participant of the recording path (:mod:`._record`): every Outcome
of a journaled run is written to it, and it is the one component that reads back when a
run starts: a task whose recorded Outcome is ok, for the same call, is not called again.

A task is identified by its name (``gather``, ``run``, ``Fan``) or its index in the input
(the map family), plus a *fingerprint* of what would be called: a hash of the callable's
qualified name (``module.qualname``; for a ``functools.partial`` also its arguments) and of
``repr()`` of its arguments. ``repr`` is what makes a fingerprint stable, or not: numbers,
strings, tuples, lists, dicts, dataclasses and other values whose repr shows their content
give the same fingerprint in every process; an object whose repr shows its address
(``<Foo object at 0x7f...>``) gives a new one every time, so such a task always runs again
(with a :class:`JournalWarning`).

File layout: ``PRAGMA application_id`` marks a forkjoin journal and ``PRAGMA user_version``
its schema; table ``runs`` holds one row per named run (its id, the process holding it,
what it spent); table ``segments`` holds the outcomes, one row per commit: a JSON list of
records (``[key, fingerprint, value]`` for a plain ok outcome, ``[key, fingerprint,
status, enc, value, attempts, cost, tokens, reason, error]`` otherwise), the later record
of a key winning. One row per commit rather than per outcome is what makes a batch journal
cheap: binding a dozen columns costs SQLite more than the JSON of a whole record. A map
run's segments carry the range of indexes they hold (``lo``, ``hi``), so its records are
read a window at a time. SQLite runs in WAL mode with ``synchronous=NORMAL``: a commit
survives the death of the process (``kill -9``), not necessarily a power cut; the WAL is
checkpointed into the file every 10,000 pages and when the run ends.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import os
import pickle
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ._errors import InvalidPolicy, JournalError, JournalLocked, JournalWarning
from ._outcome import Outcome, Status
from ._task import coroutine_runner

# sqlite3, hashlib and uuid are imported by a run that opens a journal, not by
# `import forkjoin`: a run without a journal does not carry them (nor does the collector
# traverse them)
if TYPE_CHECKING:
    import sqlite3
    from os import PathLike

__all__ = ["Journal", "JournalSession", "call_text"]

SCHEMA: Final = 1
APP_ID: Final = 0x666A6A31  # "fjj1"
BATCH_ROWS: Final = 1000  # a batch journal commits at most this many outcomes at once
BATCH_SECONDS: Final = 0.05  # ... and at most this long after the first uncommitted one
WINDOW: Final = 4096  # a map run reads its records this many indexes at a time
ERROR_CHARS: Final = 300
NOT_FAILED: Final = "not_failed_before"  # the reason of a line --retry-failed-only skips

_DURABILITY = ("batch", "sync")
_SERIALIZERS = ("json", "pickle")
_OK: Final = Status.OK
_NONE: Final = object()  # no value to resume with

_DDL = """
CREATE TABLE runs (
    run TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    holder_pid INTEGER,
    holder_token TEXT,
    holder_since INTEGER,
    spent_usd REAL NOT NULL DEFAULT 0,
    spent_tokens REAL NOT NULL DEFAULT 0,
    sessions INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE segments (
    seq INTEGER PRIMARY KEY,
    run TEXT NOT NULL,
    lo INTEGER,
    hi INTEGER,
    count INTEGER NOT NULL,
    at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX segments_span ON segments (run, hi) WHERE hi IS NOT NULL
"""

_INSERT = "INSERT INTO segments (run, lo, hi, count, at, body) VALUES (?, ?, ?, ?, ?, ?)"
_dumps = json.JSONEncoder(separators=(",", ":")).encode
_loads = json.loads

# the journal runs open in this process: a run held by this pid with one of these tokens is
# live; with another token its holder ended without releasing it
_ACTIVE: set[str] = set()


class Journal:
    """Where a run keeps its Outcomes so that a crashed, killed or repeated run resumes.

    ``path``: the SQLite file (made with mode 0600 if it does not exist). ``run``: the name
    of this run in the file (several runs may share one file). ``durability``:
    ``"batch"`` commits outcomes in groups (at most every 50 ms or 1,000 outcomes, and on
    every way out of the run), ``"sync"`` commits each one before any code of yours sees it.
    ``serializer``: ``"json"`` (safe to load) or ``"pickle"`` (loading a pickle journal runs
    code: only load your own). ``fresh=True`` discards this run's records first.

    Pass it (or just a path) as ``journal=`` to ``gather``, ``run``, ``Fan``, ``map``,
    ``imap`` or ``map_reduce``.
    """

    __slots__ = ("_only_failed", "_redact", "durability", "fresh", "path", "run", "serializer")

    def __init__(
        self,
        path: str | PathLike[str],
        *,
        run: str = "default",
        durability: str = "batch",
        serializer: str = "json",
        fresh: bool = False,
    ) -> None:
        if not isinstance(path, str | os.PathLike):
            raise InvalidPolicy(f"Journal.path: expected a file path, got {path!r}")
        if not str(os.fspath(path)):
            raise InvalidPolicy("Journal.path: expected a file path, got ''")
        if not isinstance(run, str) or not run:
            raise InvalidPolicy(f"Journal.run: expected a non-empty string, got {run!r}")
        if durability not in _DURABILITY:
            raise InvalidPolicy(
                f"Journal.durability: expected 'batch' or 'sync', got {durability!r}"
            )
        if serializer not in _SERIALIZERS:
            raise InvalidPolicy(
                f"Journal.serializer: expected 'json' or 'pickle', got {serializer!r}"
            )
        if not isinstance(fresh, bool):
            raise InvalidPolicy(f"Journal.fresh: expected True or False, got {fresh!r}")
        self.path = Path(os.fspath(path))
        self.run = run
        self.durability = durability
        self.serializer = serializer
        self.fresh = fresh
        self._redact: Callable[[str], str] | None = None
        self._only_failed = False

    def __repr__(self) -> str:
        return (
            f"Journal({str(self.path)!r}, run={self.run!r}, durability={self.durability!r}, "
            f"serializer={self.serializer!r}, fresh={self.fresh!r})"
        )

    def _copy(self) -> Journal:
        j = Journal(
            self.path,
            run=self.run,
            durability=self.durability,
            serializer=self.serializer,
            fresh=self.fresh,
        )
        j._redact = self._redact
        j._only_failed = self._only_failed
        return j

    def with_redaction(self, redact: Callable[[str], str]) -> Journal:
        """A copy that passes the texts it stores from a task's call through ``redact``:
        error messages, and the text a fingerprint hashes (task values are stored as they
        are; task names are keys, and stay as given, so that they resume)."""
        j = self._copy()
        j._redact = redact
        return j

    def only_failed(self) -> Journal:
        """A copy whose runs call only the tasks recorded as not ok: ok ones are resumed
        and the tasks with no record end ``skipped`` (reason ``"not_failed_before"``),
        unrecorded (the command line's ``--retry-failed-only``)."""
        j = self._copy()
        j._only_failed = True
        return j

    # -- reading, for the command line -----------------------------------------------------

    def runs(self) -> list[dict[str, Any]]:
        """Every run in the file: name, id, counts by status, cost, last errors, holder.
        Reads only (JournalError if the file is not a journal)."""
        with _reader(self.path) as conn:
            out = []
            for run, rid, created, updated, pid, usd, tokens, sessions in conn.execute(
                "SELECT run, id, created, updated, holder_pid, spent_usd, spent_tokens, "
                "sessions FROM runs ORDER BY created"
            ):
                latest = _latest(conn, run)
                counts: dict[str, int] = {}
                cost = 0.0
                for record in latest.values():
                    status = record[2] if len(record) > 3 else "ok"
                    counts[status] = counts.get(status, 0) + 1
                    if len(record) > 3 and record[6] is not None:
                        cost += record[6]
                errors = [
                    (str(r[0]), r[9]) for r in list(latest.values())[::-1] if len(r) > 3 and r[9]
                ][:3]
                out.append(
                    {
                        "run": run,
                        "id": rid,
                        "created": created,
                        "updated": updated,
                        "holder_pid": pid if pid is not None and _alive(pid, None) else None,
                        "counts": counts,
                        "tasks": len(latest),
                        "cost": cost,
                        "spent_usd": usd,
                        "spent_tokens": tokens,
                        "sessions": sessions,
                        "last_errors": errors,
                    }
                )
            return out

    def outcomes(self, run: str | None = None) -> Iterator[dict[str, Any]]:
        """Every recorded Outcome (of ``run``, or of every run: the latest record of each
        task) as a JSON-ready dict, in key order. Values of a pickle journal are not
        loaded (``value`` is None)."""
        with _reader(self.path) as conn:
            if run is None:
                names = [r for (r,) in conn.execute("SELECT run FROM runs ORDER BY created")]
            else:
                names = [run]
            for name in names:
                latest = _latest(conn, name)
                for key in sorted(latest, key=lambda k: (isinstance(k, str), k)):
                    record = latest[key]
                    if len(record) == 3:
                        record = [*record[:2], "ok", "raw", record[2], 1, None, None, None, None]
                    _, fp, status, enc, value, attempts, cost, tokens, reason, error = record
                    shown: Any = None
                    if enc == "raw":
                        shown = value
                    yield {
                        "run": name,
                        "key": key,
                        "status": status,
                        "value": shown,
                        "resumable": status == "ok" and enc is not None,
                        "reason": reason,
                        "error": error,
                        "attempts": attempts,
                        "cost": cost,
                        "tokens": tokens,
                        "fingerprint": fp,
                    }

    # -- a run's session ---------------------------------------------------------------

    def open(self, *, by_index: bool) -> JournalSession:
        """Open the file for one run: check it, take the run's lock, read its records
        (all of them for named tasks; a window at a time for a map run's indexes)."""
        return JournalSession(self, by_index)


# -- the file ---------------------------------------------------------------------------


def _header(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(16)
    except OSError as e:
        raise JournalError(f"{path}: cannot read the journal: {e.strerror or e}") from None


def _check(conn: sqlite3.Connection, path: Path, header: bytes) -> bool:
    """Whether the file is new (empty); JournalError if it is not a usable journal. Reads
    only: nothing is written to a file that fails."""
    import sqlite3

    if header and not header.startswith(b"SQLite format 3\x00"):
        raise JournalError(
            f"{path}: not a forkjoin journal (not an SQLite database): "
            "pass another path, or delete the file"
        )
    try:
        app = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        if app == 0 and not tables:
            return True
        if app != APP_ID:
            raise JournalError(
                f"{path}: not a forkjoin journal (an SQLite database of another "
                "application): pass another path"
            )
        if version > SCHEMA:
            raise JournalError(
                f"{path}: written by a newer forkjoin (journal schema {version}; this one "
                f"reads up to {SCHEMA}): upgrade forkjoin, or pass another path"
            )
        problems = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"] or not {"runs", "segments"} <= tables:
            detail = problems[0] if problems and problems != ["ok"] else "tables missing"
            raise JournalError(
                f"{path}: corrupt journal ({detail}): delete it to start over, or restore a copy"
            )
    except sqlite3.DatabaseError as e:
        raise JournalError(
            f"{path}: corrupt journal ({e}): delete it to start over, or restore a copy"
        ) from None
    return False


def _connect(path: Path, **kwargs: Any) -> sqlite3.Connection:
    import sqlite3

    try:
        conn: sqlite3.Connection = sqlite3.connect(path, isolation_level=None, **kwargs)
        return conn
    except sqlite3.Error as e:
        raise JournalError(f"{path}: cannot open the journal: {e}") from None


@contextlib.contextmanager
def _reader(path: Path) -> Iterator[sqlite3.Connection]:
    import sqlite3

    if not path.exists():
        raise JournalError(f"{path}: no such journal")
    header = _header(path)
    conn = _connect(Path(f"file:{path}?mode=ro"), uri=True)
    try:
        if _check(conn, path, header):
            raise JournalError(f"{path}: not a forkjoin journal (an empty file)")
        yield conn
    except sqlite3.DatabaseError as e:
        raise JournalError(f"{path}: corrupt journal ({e}): delete it to start over") from None
    finally:
        conn.close()


def _records(body: str) -> list[list[Any]]:
    records: list[list[Any]] = _loads(body)
    return records


def _latest(conn: sqlite3.Connection, run: str) -> dict[Any, list[Any]]:
    """The latest record of every task of ``run``."""
    latest: dict[Any, list[Any]] = {}
    for (body,) in conn.execute("SELECT body FROM segments WHERE run = ? ORDER BY seq", (run,)):
        for record in _records(body):
            latest[record[0]] = record
    return latest


def _process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), where /proc tells."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    if fields and fields[0] == b"Z":
        return -1  # a zombie: dead, not yet reaped
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _alive(pid: int, since: int | None) -> bool:
    """Whether process ``pid`` (started at ``since``, when known) still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    start = _process_start(pid)
    if start == -1:
        return False
    return since is None or start is None or start == since


# -- fingerprints -------------------------------------------------------------------------


def _callable_text(fn: Any) -> str:
    if isinstance(fn, functools.partial):
        keywords = sorted(fn.keywords.items())
        return f"{_callable_text(fn.func)}{fn.args!r}{keywords!r}"
    qualname = getattr(fn, "__qualname__", None)
    if isinstance(qualname, str):
        return f"{getattr(fn, '__module__', None)}.{qualname}"
    kind: Any = type(fn)
    own_repr = kind.__repr__ is not object.__repr__
    return f"{kind.__module__}.{kind.__qualname__}" + (repr(fn) if own_repr else "")


def call_text(fn: Any, args: tuple[Any, ...]) -> str:
    """The text a task's fingerprint hashes: the callable's qualified name and the repr
    of its arguments (a coroutine object: its function and the arguments it was given)."""
    if fn is coroutine_runner:
        coro = args[0]
        frame = getattr(coro, "cr_frame", None)
        given = sorted(frame.f_locals.items()) if frame is not None else []
        code = getattr(coro, "cr_code", None)
        name = code.co_qualname if code is not None else type(coro).__qualname__
        return f"coroutine {name}{given!r}"
    try:
        return f"{_callable_text(fn)}{args!r}"
    except Exception:  # a repr that raises: a fingerprint that never matches
        return f"{_callable_text(fn)}<unrepresentable {id(args)}>"


# -- one run's session --------------------------------------------------------------------


class JournalSession:
    """One run's open journal: its lock, its records, the outcomes waiting for a commit."""

    __slots__ = (
        "_blake2b",
        "_conn",
        "_fn_text",
        "_hi",
        "_lo",
        "_pending",
        "_pickle",
        "_spent",
        "_timer",
        "_token",
        "_warned",
        "_window",
        "add",
        "by_index",
        "changed",
        "changes",
        "fps",
        "journal",
        "only_failed",
        "records",
        "redact",
        "run",
        "run_id",
        "spent_tokens",
        "spent_usd",
        "sync",
    )

    def __init__(self, journal: Journal, by_index: bool) -> None:
        self.journal = journal
        self.run = journal.run
        self.by_index = by_index
        self.sync = journal.durability == "sync"
        self.redact = journal._redact
        self.only_failed = journal._only_failed
        self.fps: dict[Any, str] = {}  # key -> fingerprint, until its Outcome is written
        self.records: dict[Any, list[Any]] = {}
        self.changed: list[str] = []  # the first tasks whose fingerprint changed
        self.changes = 0  # how many did (warned together)
        self._fn_text: dict[Any, str] = {}
        self._pending: list[list[Any]] = []
        self._pickle = journal.serializer == "pickle"
        self._spent = [0.0, 0.0]  # cost and tokens of the pending outcomes
        self._timer: asyncio.TimerHandle | None = None
        self._warned: set[type] = set()
        self._lo = self._hi = 0
        self._window: dict[int, list[Any]] = {}
        import hashlib
        import uuid

        self._blake2b = hashlib.blake2b
        self._token = uuid.uuid4().hex
        path = journal.path
        new_file = False
        if not path.exists():
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                pass
            except OSError as e:
                raise JournalError(f"{path}: cannot create the journal: {e.strerror}") from None
            else:
                os.fchmod(fd, 0o600)
                os.close(fd)
                new_file = True
        header = _header(path)
        conn = _connect(path, timeout=10.0)
        try:
            empty = _check(conn, path, header)
            if not empty and new_file:  # pragma: no cover - made above, empty by definition
                raise JournalError(f"{path}: not a new journal")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            # a checkpoint fsyncs twice: one per 10,000 pages (a WAL of up to ~40 MB), not
            # per 1,000, so a sync journal pays them ten times less often
            conn.execute("PRAGMA wal_autocheckpoint=10000")
            if empty:
                conn.execute("BEGIN IMMEDIATE")
                if not conn.execute("SELECT name FROM sqlite_master").fetchall():
                    for statement in _DDL.split(";"):
                        if statement.strip():
                            conn.execute(statement)  # (executescript would commit)
                    conn.execute(f"PRAGMA application_id={APP_ID}")
                    conn.execute(f"PRAGMA user_version={SCHEMA}")
                    conn.execute("COMMIT")
                else:  # another process made it meanwhile
                    conn.execute("ROLLBACK")
            self._lock(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self.add: Callable[[Outcome], None] = self._adder()
        _ACTIVE.add(self._token)
        if not by_index:
            try:
                self.records = _latest(conn, self.run)
            except BaseException:
                self.close()
                raise

    def _lock(self, conn: sqlite3.Connection) -> None:
        """Take the run's lock (one live process per journal run) and read its totals."""
        path = self.journal.path
        pid = os.getpid()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT id, holder_pid, holder_token, holder_since FROM runs WHERE run = ?",
                (self.run,),
            ).fetchone()
            if row is not None and row[1] is not None:
                holder, token, since = row[1], row[2], row[3]
                live = (
                    token in _ACTIVE
                    if holder == pid and since == _process_start(pid)
                    else _alive(holder, since)
                )
                if live:
                    raise JournalLocked(
                        f"{path}: run {self.run!r} is being run by process {holder}: wait for "
                        "it to end, or give another run name",
                        holder,
                    )
            if row is not None and self.journal.fresh:
                conn.execute("DELETE FROM segments WHERE run = ?", (self.run,))
                conn.execute("DELETE FROM runs WHERE run = ?", (self.run,))
                row = None
            now = time.time()
            since_me = _process_start(pid)
            if row is None:
                import uuid

                self.run_id = uuid.uuid4().hex
                conn.execute(
                    "INSERT INTO runs (run, id, created, updated, holder_pid, holder_token, "
                    "holder_since, sessions) VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
                    (self.run, self.run_id, now, now, pid, self._token, since_me),
                )
                self.spent_usd = self.spent_tokens = 0.0
            else:
                self.run_id = row[0]
                conn.execute(
                    "UPDATE runs SET holder_pid = ?, holder_token = ?, holder_since = ?, "
                    "updated = ?, sessions = sessions + 1 WHERE run = ?",
                    (pid, self._token, since_me, now, self.run),
                )
                usd, tokens = conn.execute(
                    "SELECT spent_usd, spent_tokens FROM runs WHERE run = ?", (self.run,)
                ).fetchone()
                self.spent_usd, self.spent_tokens = float(usd), float(tokens)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- identity ------------------------------------------------------------------------

    def fingerprint(self, fn: Any, args: tuple[Any, ...]) -> str:
        """The fingerprint of calling ``fn(*args)`` (hex)."""
        cache = self._fn_text
        if fn is coroutine_runner:
            text = call_text(fn, args)
        else:
            try:
                name = cache.get(fn)
                if name is None:
                    name = cache[fn] = _callable_text(fn)
                text = f"{name}{args!r}"
            except Exception:
                text = call_text(fn, args)
        redact = self.redact
        if redact is not None:
            text = redact(text)
        return self._blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()

    def key_of(self, key: Any, fp: str) -> str:
        """The idempotency key of task ``key`` with fingerprint ``fp``."""
        return f"{self.run_id}:{key}:{fp}"

    def _lookup(self, key: Any) -> list[Any] | None:
        if not self.by_index:
            return self.records.pop(key, None)  # a name is looked up once: free it
        if not (self._lo <= key < self._hi):
            lo, hi = self._lo, self._hi = key, key + WINDOW
            window: dict[int, list[Any]] = {}
            for (body,) in self._conn.execute(
                "SELECT body FROM segments WHERE run = ? AND hi IS NOT NULL AND hi >= ? AND lo < ? "
                "ORDER BY seq",
                (self.run, lo, hi),
            ):
                for record in _records(body):
                    if lo <= record[0] < hi:
                        window[record[0]] = record
            self._window = window
        return self._window.get(key)

    @property
    def empty(self) -> bool:
        """Whether nothing of this run is recorded yet (nothing can resume): its tasks only
        need their fingerprints noted in :attr:`fps`, by key, until they are written."""
        return not self.by_index and not self.records and not self.only_failed

    def resume(self, key: Any, fp: str, group: str | None, seq: int) -> Outcome | None:
        """The Outcome of task ``key`` if it is recorded ok with fingerprint ``fp`` (it is
        then not called), else None (it runs, and its Outcome will be written). In an
        ``only_failed`` session a task with no record ends skipped instead."""
        record = self._lookup(key)
        if record is not None and len(record) == 3:  # a plain ok outcome
            if record[1] == fp:
                return tuple.__new__(Outcome, (
                    str(key), _OK, record[2], None, None, 1, None, None, None, group, seq, (),
                    False, None, None, True,
                ))  # fmt: skip
            self._changed(key)
        elif record is not None:
            value = self._recorded_value(key, fp, record)
            if value is not _NONE:
                _, _, _, _, _, attempts, cost, tokens, _, _ = record
                return Outcome(
                    str(key), _OK, value, None, None, attempts, None, None, cost, group, seq,
                    (), False, tokens, None, True,
                )  # fmt: skip
        elif self.only_failed:
            return Outcome(
                str(key), Status.SKIPPED, None, None, NOT_FAILED, 0, None, None, None,
                group, seq,
            )  # fmt: skip
        self.fps[key] = fp  # it runs: its Outcome is written with this fingerprint
        return None

    def _recorded_value(self, key: Any, fp: str, record: list[Any]) -> Any:
        """The value of a full record if the task can be resumed from it, else _NONE."""
        _, recorded, status, enc, value, _, _, _, _, _ = record
        if status != "ok":
            return _NONE
        if recorded != fp:
            self._changed(key)
            return _NONE
        if enc is None:
            return _NONE  # its value could not be stored
        if enc == "pickle":
            if not self._pickle:
                return _NONE  # a json journal never loads a pickle
            try:
                return pickle.loads(base64.b64decode(value))  # opted in: the user's own
            except Exception:
                return _NONE
        return value

    def _changed(self, key: Any) -> None:
        self.changes += 1
        if len(self.changed) < 10:
            self.changed.append(str(key))

    def warn_changed(self) -> None:
        """One JournalWarning naming the tasks whose call changed since they were recorded."""
        changed = self.changed
        count = self.changes
        if not count:
            return
        shown = ", ".join(repr(n) for n in changed)
        more = f" and {count - len(changed)} more" if count > len(changed) else ""
        self.changed = []
        self.changes = 0
        warnings.warn(
            f"journal {str(self.journal.path)!r} run {self.run!r}: {count} task(s) "
            f"changed since they were recorded (another function or arguments), so they run "
            f"again: {shown}{more}",
            JournalWarning,
            stacklevel=2,
        )

    # -- writing -------------------------------------------------------------------------

    def _adder(self) -> Callable[[Outcome], None]:
        """:attr:`add`: write one Outcome (committed now, or with its batch). A closure
        over what it needs: it runs once per task."""
        pop = self.fps.pop
        pending = self._pending
        append = pending.append
        by_index = self.by_index
        plain = not self._pickle
        sync = self.sync
        flush = self.flush
        add_record = self._add_record
        schedule = self._schedule

        def add(outcome: Outcome) -> None:
            if outcome.resumed:
                return
            key: Any = outcome.index if by_index else outcome.name
            if (
                outcome.status is _OK
                and outcome.attempts == 1
                and outcome.cost is None
                and outcome.tokens is None
                and plain
            ):
                # the common case: JSON-encoded with its segment (an unencodable value is
                # found then, see _encodable)
                append([key, pop(key, None), outcome.value])
            elif outcome.reason == NOT_FAILED:
                return
            else:
                add_record(key, pop(key, None), outcome)
            if sync or len(pending) >= BATCH_ROWS:
                flush()
            elif self._timer is None:
                schedule()

        return add

    def _schedule(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - outcomes are recorded on the loop
            self.flush()
        else:
            self._timer = loop.call_later(BATCH_SECONDS, self._tick)

    def _add_record(self, key: Any, fp: str | None, outcome: Outcome) -> None:
        status = outcome.status
        enc: str | None = None
        value: Any = None
        error: str | None = None
        if status is _OK:
            if self._pickle:
                try:
                    data = pickle.dumps(outcome.value, protocol=pickle.HIGHEST_PROTOCOL)
                except Exception:
                    self._unencodable(key, outcome.value)
                else:
                    enc, value = "pickle", base64.b64encode(data).decode("ascii")
            else:
                enc, value = "raw", outcome.value
        else:
            error = _error_text(outcome.error, self.redact)
        cost = outcome.cost
        tokens = outcome.tokens
        if cost is not None:
            self._spent[0] += cost
        if tokens is not None:
            self._spent[1] += tokens
        self._pending.append(
            [key, fp, status.value, enc, value, outcome.attempts, cost, tokens,
             outcome.reason, error]
        )  # fmt: skip

    def _unencodable(self, key: Any, value: Any) -> None:
        kind = type(value)
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(
                f"journal {str(self.journal.path)!r}: the value of task {str(key)!r} "
                f"(type {kind.__qualname__}) cannot be stored by the "
                f"{self.journal.serializer} serializer; it is returned as usual and the "
                "task will run again next time",
                JournalWarning,
                stacklevel=3,
            )

    def _encodable(self, records: list[list[Any]]) -> list[list[Any]]:
        """The records with every value JSON cannot encode made not resumable (warned)."""
        out = []
        for record in records:
            try:
                _dumps(record)
            except (TypeError, ValueError, OverflowError, RecursionError):
                value = record[2] if len(record) == 3 else record[4]
                self._unencodable(record[0], value)
                if len(record) == 3:
                    record = [record[0], record[1], "ok", None, None, 1, None, None, None, None]
                else:
                    record = [*record[:3], None, None, *record[5:]]
            out.append(record)
        return out

    def _tick(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        """Commit the outcomes written so far (one segment)."""
        pending = self._pending
        if not pending:
            return
        records = pending.copy()
        pending.clear()  # the same list: add() appends to it
        timer = self._timer
        if timer is not None:
            timer.cancel()
            self._timer = None
        try:
            body = _dumps(records)
        except (TypeError, ValueError, OverflowError, RecursionError):
            records = self._encodable(records)
            body = _dumps(records)
        lo = hi = None
        if self.by_index:
            keys = [r[0] for r in records]
            lo, hi = min(keys), max(keys)
        usd, tokens = self._spent
        self._spent = [0.0, 0.0]
        conn = self._conn
        row = (self.run, lo, hi, len(records), time.time(), body)
        try:
            if not (usd or tokens):
                conn.execute(_INSERT, row)  # one statement: its own transaction
            else:
                conn.execute("BEGIN")
                conn.execute(_INSERT, row)
                conn.execute(
                    "UPDATE runs SET spent_usd = spent_usd + ?, spent_tokens = spent_tokens + ? "
                    "WHERE run = ?",
                    (usd, tokens, self.run),
                )
                conn.execute("COMMIT")
        except BaseException as e:
            import sqlite3

            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise JournalError(
                    f"{self.journal.path}: cannot write the journal ({e}): its last "
                    f"{len(records)} outcomes were not committed"
                ) from None
            raise

    def close(self) -> None:
        """Commit what is left and release the run's lock."""
        conn = getattr(self, "_conn", None)
        if conn is None:
            return
        self.warn_changed()
        try:
            self.flush()
            conn.execute(
                "UPDATE runs SET holder_pid = NULL, holder_token = NULL, holder_since = NULL, "
                "updated = ? WHERE run = ? AND holder_token = ?",
                (time.time(), self.run, self._token),
            )
        finally:
            _ACTIVE.discard(self._token)
            conn.close()
            self._conn = None  # type: ignore[assignment]


def _error_text(error: BaseException | None, redact: Callable[[str], str] | None) -> str | None:
    if error is None:
        return None
    text = str(error)
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    if redact is not None:
        text = redact(text)  # before truncation: a secret cut in half is not found
    return text[:ERROR_CHARS]


def check_journal(where: str, value: Any) -> Journal | None:
    """``journal=``: None, a path or a Journal."""
    if value is None or isinstance(value, Journal):
        return value
    if isinstance(value, str | os.PathLike) and not isinstance(value, bytes):
        return Journal(value)
    raise InvalidPolicy(f"{where}: expected a file path or fj.Journal(...), got {value!r}")
