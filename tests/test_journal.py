"""The journal in one process: resume, identity, serializers, budget, locks, bad files."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sqlite3
import stat
import warnings
from pathlib import Path
from typing import Any

import pytest

import forkjoin as fj


class Calls:
    """What the tasks of a test were called with, across runs."""

    def __init__(self) -> None:
        self.names: list[Any] = []

    async def ok(self, name: Any, value: Any = None) -> Any:
        self.names.append(name)
        return value if value is not None else f"v-{name}"


def rows(path: Path, run: str = "default") -> dict[Any, dict[str, Any]]:
    """What the journal file holds for ``run`` (read by another connection)."""
    return {r["key"]: r for r in fj.Journal(path).outcomes(run)}


# -- resume -------------------------------------------------------------------------------


def test_a_rerun_calls_nothing_and_returns_the_recorded_outcomes(tmp_path: Path) -> None:
    c = Calls()
    db = tmp_path / "run.db"
    tasks = {f"t{i}": fj.task(c.ok, i, {"n": i, "list": [i, "x"]}, cost=0.25) for i in range(5)}
    first = fj.run(tasks, journal=db)
    assert c.names == [0, 1, 2, 3, 4]
    assert not any(o.resumed for o in first.values())
    c.names.clear()
    second = fj.run(tasks, journal=db)
    assert c.names == []
    for name, o in second.items():
        assert o.resumed
        assert o.ok
        assert o.value == first[name].value
        assert o.attempts == 1
        assert o.cost == 0.25
        assert o.started is None  # it did not run in this run
    report = second.report
    assert report.resumed == 5
    assert report.cost_saved == pytest.approx(1.25)
    assert "resumed" in str(report)
    assert report.to_dict()["resumed"] == 5
    assert report.to_dict()["cost_saved"] == pytest.approx(1.25)
    assert fj.RunReport.from_dict(report.to_dict()).resumed == 5
    page = report.to_html()
    assert "5 from the journal, not called again" in page
    assert "(resumed)" in page


def test_failed_and_new_tasks_run_again_ok_ones_do_not(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    called: list[str] = []
    broken = {"b": True}

    async def work(name: str) -> str:
        called.append(name)
        if name == "b" and broken["b"]:
            raise RuntimeError("boom")
        return name

    first = fj.run({n: (work, n) for n in "abc"}, journal=db)
    assert first.counts() == {"ok": 2, "failed": 1}
    assert rows(db)["b"]["status"] == "failed"
    assert rows(db)["b"]["error"] == "RuntimeError: boom"
    broken["b"] = False
    called.clear()
    second = fj.run({n: (work, n) for n in "abcd"}, journal=db)
    assert sorted(called) == ["b", "d"]
    assert second.all_ok
    assert [n for n, o in second.items() if o.resumed] == ["a", "c"]


def test_a_changed_call_runs_again_with_a_warning_naming_it(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    c = Calls()
    fj.run({"a": (c.ok, 1), "b": (c.ok, 2)}, journal=db)
    c.names.clear()
    with pytest.warns(fj.JournalWarning, match=r"1 task\(s\) changed.*'b'"):
        r = fj.run({"a": (c.ok, 1), "b": (c.ok, 3)}, journal=db)
    assert c.names == [3]
    assert r["a"].resumed
    assert not r["b"].resumed


def test_fan_spawn_resumes_too(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    c = Calls()

    async def main() -> fj.Results:
        async with fj.Fan(journal=db, limit=2) as fan:
            for i in range(4):
                fan.spawn(f"s{i}", c.ok, i)
            seen = [o.name async for o in fan.as_completed()]
            assert sorted(seen) == ["s0", "s1", "s2", "s3"]
        return fan.results

    asyncio.run(main())
    c.names.clear()
    again = asyncio.run(main())
    assert c.names == []
    assert all(o.resumed for o in again.values())


def test_coroutine_objects_are_fingerprinted_by_their_arguments(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    c = Calls()
    fj.run({"a": c.ok("a", 1)}, journal=db)
    c.names.clear()
    again = fj.run({"a": c.ok("a", 1)}, journal=db)  # closed, never awaited: no warning
    assert c.names == []
    assert again["a"].resumed
    with pytest.warns(fj.JournalWarning):
        changed = fj.run({"a": c.ok("a", 2)}, journal=db)
    assert c.names == ["a"]
    assert not changed["a"].resumed


def test_fresh_discards_the_runs_records(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    c = Calls()
    fj.run({"a": (c.ok, 1)}, journal=fj.Journal(db, run="one"))
    fj.run({"a": (c.ok, 2)}, journal=fj.Journal(db, run="two"))
    c.names.clear()
    fj.run({"a": (c.ok, 1)}, journal=fj.Journal(db, run="one", fresh=True))
    fj.run({"a": (c.ok, 2)}, journal=fj.Journal(db, run="two"))
    assert c.names == [1]  # run "two" in the same file kept its records


def test_map_and_imap_resume_by_index_and_content(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    c = Calls()

    async def double(x: int) -> int:
        c.names.append(x)
        return 2 * x

    async def main() -> None:
        assert await fj.map(double, range(10), journal=db, limit=3) == [2 * i for i in range(10)]
        assert sorted(c.names) == list(range(10))
        c.names.clear()
        # longer, and item 3 differs: 0-2 and 4-9 resume, 3 and 10-11 run
        items = [0, 1, 2, 30, 4, 5, 6, 7, 8, 9, 10, 11]
        with pytest.warns(fj.JournalWarning, match="'3'"):
            values = await fj.map(double, items, journal=db, limit=3)
        assert values == [2 * i for i in items]
        assert sorted(c.names) == [10, 11, 30]
        assert values.report is not None
        assert values.report.resumed == 9
        c.names.clear()
        seen = {}
        async for o in fj.imap(double, items[:6], journal=db, limit=2, ordered=True):
            seen[o.index] = (o.value, o.resumed)
        assert c.names == []
        assert seen == {i: (2 * x, True) for i, x in enumerate(items[:6])}
        total = await fj.map_reduce(double, items, lambda a, v: a + v, 0, journal=db)
        assert total == 2 * sum(items)
        assert c.names == []

    asyncio.run(main())


def test_a_map_over_many_items_reads_its_records_a_window_at_a_time(tmp_path: Path) -> None:
    db = tmp_path / "run.db"

    async def ident(x: int) -> int:
        return x

    async def main() -> None:
        await fj.map(ident, range(10_000), journal=db, limit=8)
        values = await fj.map(ident, range(10_000), journal=db, limit=8)
        assert values == list(range(10_000))
        assert values.report is not None
        assert values.report.resumed == 10_000

    asyncio.run(main())


# -- values -------------------------------------------------------------------------------


def test_an_unencodable_value_is_returned_and_runs_again_next_time(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    called: list[str] = []

    async def make(name: str) -> Any:
        called.append(name)
        return {1, 2} if name == "s" else name

    with pytest.warns(fj.JournalWarning, match=r"task 's' \(type set\)"):
        first = fj.run({"s": (make, "s"), "t": (make, "t")}, journal=db)
    assert first["s"].value == {1, 2}
    called.clear()
    with pytest.warns(fj.JournalWarning):
        again = fj.run({"s": (make, "s"), "t": (make, "t")}, journal=db)
    assert called == ["s"]
    assert again["t"].resumed
    assert not again["s"].resumed


def test_pickle_journals_round_trip_what_json_cannot(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    c = Calls()
    journal = fj.Journal(db, serializer="pickle")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fj.run({"s": (c.ok, "s", frozenset({1, 2}))}, journal=journal)
    c.names.clear()
    r = fj.run({"s": (c.ok, "s", frozenset({1, 2}))}, journal=journal)
    assert c.names == []
    assert r["s"].value == frozenset({1, 2})
    # a json journal never loads a pickle: the task runs instead
    with pytest.warns(fj.JournalWarning, match="frozenset"):
        r = fj.run({"s": (c.ok, "s", frozenset({1, 2}))}, journal=db)
    assert c.names == ["s"]
    assert not r["s"].resumed


def test_json_values_come_back_as_json_does(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    c = Calls()
    value = {"a": [1, 2.5, None, True], "t": (1, 2)}
    fj.run({"x": (c.ok, "x", value)}, journal=db)
    r = fj.run({"x": (c.ok, "x", value)}, journal=db)
    assert r["x"].value == {"a": [1, 2.5, None, True], "t": [1, 2]}  # a tuple is a list


# -- durability ---------------------------------------------------------------------------


def test_sync_commits_each_outcome_before_it_is_seen(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    c = Calls()

    async def main() -> None:
        journal = fj.Journal(db, durability="sync")
        async with fj.Fan(journal=journal, limit=3) as fan:
            for i in range(12):
                fan.spawn(f"t{i}", c.ok, i)
            seen = 0
            async for o in fan.as_completed():
                seen += 1
                keys = set(rows(db))  # another connection: what is committed
                assert o.name in keys
                assert len(keys) >= seen

    asyncio.run(main())


def test_batch_commits_every_thousand_outcomes_and_at_the_end(tmp_path: Path) -> None:
    db = tmp_path / "run.db"

    async def ident(x: int) -> int:
        return x

    async def main() -> None:
        committed_at_1500 = -1
        async for o in fj.imap(ident, range(2500), journal=db, limit=4, ordered=True):
            if o.index == 1500:
                committed_at_1500 = len(rows(db))
        # the commit at 1,000 is in; the 50 ms timer may have committed more (what the
        # workers ran ahead of the consumer included), never what was not recorded yet
        assert 1000 <= committed_at_1500 <= 1500 + 16  # 16: the ordered window at limit 4
        assert len(rows(db)) == 2500

    asyncio.run(main())


def test_batch_commits_within_fifty_milliseconds(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    committed = asyncio.Event()

    async def first() -> str:
        return "first"

    async def waits() -> str:
        # the first task's Outcome is committed by the batch timer while this one runs
        for _ in range(400):
            if db.exists() and len(rows(db)) == 1:
                committed.set()
                return "seen"
            await asyncio.sleep(0.005)
        return "never"

    r = fj.run({"first": first, "waits": waits}, journal=db)
    assert committed.is_set()
    assert r["waits"].value == "seen"


# -- idempotency keys ---------------------------------------------------------------------


def test_the_idempotency_key_is_stable_across_attempts_and_resumes(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    keys: dict[str, list[str]] = {}
    fails = {"a": 1, "c": 2}

    async def work(name: str) -> str:
        keys.setdefault(name, []).append(fj.idempotency_key())
        if fails.get(name, 0) > 0:
            fails[name] -= 1
            raise ConnectionError("flaky")
        return name

    retry = fj.Retry(attempts=2, backoff=0.0)
    tasks = {n: fj.task(work, n, retry=retry) for n in "abc"}
    first = fj.run(tasks, journal=db)
    assert first.counts() == {"ok": 2, "failed": 1}  # c failed both attempts
    assert len(keys["a"]) == 2
    assert keys["a"][0] == keys["a"][1]  # attempt 1 and attempt 2
    assert len({keys["a"][0], keys["b"][0], keys["c"][0]}) == 3  # one per task
    first_c = keys["c"]
    assert first_c[0] == first_c[1]
    # the resumed run: a and b are not called, c runs again with the same key
    keys.clear()
    again = fj.run({n: fj.task(work, n, retry=retry) for n in "abc"}, journal=db)
    assert again["a"].resumed
    assert again["c"].ok
    assert set(keys) == {"c"}
    assert keys["c"] == [first_c[0]]
    # another journal: other keys
    keys.clear()
    fj.run({"c": fj.task(work, "c", retry=retry)}, journal=tmp_path / "other.db")
    assert keys["c"][0] != first_c[0]


def test_the_idempotency_key_without_a_journal_and_in_threads_and_hedges() -> None:
    keys: dict[str, list[str]] = {}
    tries = {"r": 1}

    async def flaky(name: str) -> str:
        keys.setdefault(name, []).append(fj.idempotency_key())
        if tries.get(name, 0) > 0:
            tries[name] -= 1
            raise ConnectionError("again")
        return name

    def blocking(name: str) -> str:
        keys.setdefault(name, []).append(fj.idempotency_key())
        return name

    slow_first = {"h": True}

    async def hedged(name: str) -> str:
        keys.setdefault(name, []).append(fj.idempotency_key())
        if slow_first["h"]:
            slow_first["h"] = False
            await asyncio.sleep(5)
        return name

    r = fj.run(
        {
            "r": fj.task(flaky, "r", retry=fj.Retry(attempts=2, backoff=0.0)),
            "p": (flaky, "p"),
            "s": (blocking, "s"),
            "h": fj.task(hedged, "h", idempotent=True, hedge=fj.Hedge(after=0.01)),
        },
        limit=4,
    )
    assert r.all_ok
    assert len(keys["r"]) == 2
    assert len(set(keys["r"])) == 1
    assert len(keys["h"]) == 2
    assert len(set(keys["h"])) == 1
    assert len({keys[n][0] for n in "rpsh"}) == 4
    with pytest.raises(RuntimeError, match="only available inside a task"):
        fj.idempotency_key()

    async def in_map(x: int) -> str:
        return fj.idempotency_key()

    async def maps() -> None:
        got = await fj.map(in_map, [1, 2, 3], limit=2)
        assert len(set(got)) == 3
        got2 = [o.value async for o in fj.imap(in_map, [1, 2, 3], limit=2, ordered=True)]
        assert len(set(got2)) == 3

    asyncio.run(maps())


# -- budget -------------------------------------------------------------------------------


def test_recorded_spending_counts_against_the_budget(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    down = {"c": True}

    async def paid(name: str) -> str:
        if down.get(name):
            raise RuntimeError("down")
        return name

    tasks = {n: fj.task(paid, n, cost=0.3) for n in "abc"}
    first = fj.run(tasks, journal=db, budget=fj.Budget(usd=1.0))
    assert first.counts() == {"ok": 2, "failed": 1}  # 0.9 spent
    down["c"] = False
    # a crash loop cannot spend the budget twice: 0.9 + 0.3 > 1.0
    second = fj.run(tasks, journal=db, budget=fj.Budget(usd=1.0))
    assert second["a"].resumed
    assert second["b"].resumed
    assert second["c"].status is fj.Status.SKIPPED
    assert second["c"].reason == "budget"
    third = fj.run(tasks, journal=db, budget=fj.Budget(usd=1.3))
    assert third["c"].ok
    assert not third["c"].resumed
    budget = third.report.options["budget"]
    assert budget["carried_usd"] == pytest.approx(0.9)


# -- one run at a time --------------------------------------------------------------------


def test_a_second_open_of_a_running_journal_run_is_locked(tmp_path: Path) -> None:
    db = tmp_path / "run.db"

    async def main() -> None:
        async with fj.Fan(journal=db):
            with pytest.raises(fj.JournalLocked, match=f"process {os.getpid()}") as info:
                async with fj.Fan(journal=db):
                    pass
            assert info.value.pid == os.getpid()
            async with fj.Fan(journal=fj.Journal(db, run="other")):
                pass  # another run in the same file is free
        async with fj.Fan(journal=db):
            pass  # released

    asyncio.run(main())


# -- bad files ----------------------------------------------------------------------------


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def nothing() -> None:
    return None


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("garbage", "not a forkjoin journal (not an SQLite database)"),
        ("foreign", "not a forkjoin journal (an SQLite database of another application)"),
        ("newer", "newer forkjoin (journal schema 99"),
        ("truncated", "corrupt journal"),
    ],
)
def test_bad_files_get_one_line_and_are_not_written(
    tmp_path: Path, kind: str, message: str
) -> None:
    db = tmp_path / "bad.db"
    if kind == "garbage":
        db.write_bytes(b"this is not a database at all\n" * 10)
    elif kind == "foreign":
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("CREATE TABLE users (id INTEGER)")
            conn.commit()
    else:
        fj.run({f"t{i}": (Calls().ok, i, "x" * 500) for i in range(300)}, journal=db)
        if kind == "newer":
            with contextlib.closing(sqlite3.connect(db)) as conn:
                conn.execute("PRAGMA user_version = 99")
        else:
            data = db.read_bytes()
            db.write_bytes(data[: len(data) // 2])
    before = digest(db)
    with pytest.raises(fj.JournalError) as info:
        fj.run({"a": nothing}, journal=db)
    text = str(info.value)
    assert message in text
    assert "\n" not in text
    assert str(db) in text
    assert digest(db) == before
    with pytest.raises(fj.JournalError):
        fj.Journal(db).runs()


def test_new_journals_are_private_files(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    old = os.umask(0)
    try:
        fj.run({"a": nothing}, journal=db)
    finally:
        os.umask(old)
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_bad_journal_options_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(fj.InvalidPolicy, match=r"Journal\.durability"):
        fj.Journal(tmp_path / "x.db", durability="always")
    with pytest.raises(fj.InvalidPolicy, match=r"Journal\.serializer"):
        fj.Journal(tmp_path / "x.db", serializer="yaml")
    with pytest.raises(fj.InvalidPolicy, match=r"Journal\.run"):
        fj.Journal(tmp_path / "x.db", run="")
    with pytest.raises(fj.InvalidPolicy, match="journal: expected a file path"):
        fj.run({"a": nothing}, journal=42)  # type: ignore[arg-type]
    assert not (tmp_path / "x.db").exists()


def test_a_bad_journal_closes_the_coroutine_objects_it_was_given(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"garbage" * 100)
    c = Calls()
    coro = c.ok("a")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would be an error
        with pytest.raises(fj.JournalError):
            fj.run({"a": coro}, journal=bad)
    assert coro.cr_frame is None  # closed
    assert c.names == []
