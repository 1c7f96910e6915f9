"""Property: however runs end and are killed, a committed ok Outcome is never lost and its
task is never called again.

A kill is simulated exactly: at a random point of a run (after its k-th Outcome) the
committed state of the journal is copied with SQLite's backup API, which is what a
``kill -9`` at that instant leaves on disk; the next run resumes from that copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import forkjoin as fj


def committed_ok(path: Path, run: str) -> dict[str, Any]:
    """The ok Outcomes a journal file holds for ``run``: ``{"t3": value}``."""
    if not path.exists():
        return {}
    return {
        r["key"] if isinstance(r["key"], str) else f"t{r['key']}": r["value"]
        for r in fj.Journal(path).outcomes(run)
        if r["status"] == "ok" and r["resumable"]
    }


def snapshot(src: Path, dst: Path) -> None:
    """What a kill at this instant leaves: the committed state only."""
    dst.unlink(missing_ok=True)
    with (
        contextlib.closing(sqlite3.connect(src)) as a,
        contextlib.closing(sqlite3.connect(dst)) as b,
    ):
        a.backup(b)


class KillAt:
    """An observer that snapshots the journal after the k-th recorded Outcome."""

    def __init__(self, k: int, src: Path, dst: Path) -> None:
        self.k = k
        self.seen = 0
        self.src = src
        self.dst = dst
        self.taken = False

    def on_task_finished(self, event: Any) -> None:
        self.seen += 1
        if self.seen == self.k:
            snapshot(self.src, self.dst)
            self.taken = True


behaviour = st.sampled_from(["ok", "ok", "fail", "slow"])


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 12),
    rounds=st.lists(
        st.tuples(
            st.lists(behaviour, min_size=12, max_size=12),  # what each task does this round
            st.integers(0, 13),  # the kill point (0: not killed)
            st.sampled_from(["sync", "batch"]),
            st.sampled_from([None, 1, 3]),  # the limit
            st.booleans(),  # map (keyed by index) or gather (keyed by name)
        ),
        min_size=1,
        max_size=5,
    ),
)
def test_committed_ok_outcomes_survive_kills_and_are_never_called_again(
    n: int, rounds: list[tuple[list[str], int, str, int | None, bool]]
) -> None:
    with tempfile.TemporaryDirectory() as d:
        journal = Path(d) / "j.db"
        killed = Path(d) / "killed.db"
        for r, (does, kill_at, durability, limit, by_index) in enumerate(rounds):
            run_name = "map" if by_index else "gather"  # two runs in the one file
            before = committed_ok(journal, run_name)
            calls: list[str] = []

            async def work(
                name: str, does: list[str] = does, r: int = r, calls: list[str] = calls
            ) -> str:
                calls.append(name)
                what = does[int(name[1:])]
                if what == "fail":
                    raise RuntimeError(name)
                if what == "slow":
                    await asyncio.sleep(0)
                return f"{name}-round{r}"

            async def by_item(i: int) -> str:
                return await work(f"t{i}")

            kill = KillAt(kill_at, journal, killed)
            j = fj.Journal(journal, run=run_name, durability=durability)
            if by_index:
                got = asyncio.run(_collect(by_item, n, j, limit, kill))
                outcomes = {f"t{o.index}": o for o in got}
            else:
                tasks = {f"t{i}": (work, f"t{i}") for i in range(n)}
                outcomes = dict(fj.run(tasks, journal=j, limit=limit, observers=[kill]))
            assert len(outcomes) == n
            # committed ok before this run: not called, and back as recorded
            for name, value in before.items():
                assert name not in calls
                assert outcomes[name].resumed
                assert outcomes[name].value == value
            if kill.taken:  # the process "died" at the kill point: go on from that copy
                shutil.copyfile(killed, journal)
                for suffix in ("-wal", "-shm"):
                    Path(f"{journal}{suffix}").unlink(missing_ok=True)
            after = committed_ok(journal, run_name)
            for name, value in before.items():  # never lost
                assert after.get(name) == value
            for name in after.keys() - before.keys():  # what is new was called this run
                assert name in calls


async def _collect(
    fn: Any, n: int, journal: fj.Journal, limit: int | None, kill: KillAt
) -> list[fj.Outcome]:
    return [o async for o in fj.imap(fn, range(n), journal=journal, limit=limit, observers=[kill])]
