"""A journaled run in a process of its own, for the tests that kill it (not a test module).

    python journal_worker.py run JOURNAL SIDE DURABILITY N LIMIT
        N tasks (limit LIMIT) that each append their name to SIDE, sleep and
        return it (20 ms each); prints {"ok": ..., "resumed": ...} as JSON at the end.
    python journal_worker.py hold JOURNAL
        opens the journal's run, prints "ready" and waits until it is killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import forkjoin as fj


def append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode() + b"\n")  # one write: lines never interleave
    finally:
        os.close(fd)


async def work(side: str, name: str) -> str:
    append(side, name)
    await asyncio.sleep(0.02)
    return name


def run(path: str, side: str, durability: str, n: int, limit: int) -> None:
    tasks = {f"t{i:03d}": (work, side, f"t{i:03d}") for i in range(n)}
    journal = fj.Journal(path, durability=durability)
    results = fj.run(tasks, limit=limit, journal=journal)
    print(
        json.dumps(
            {
                "ok": sum(1 for o in results.values() if o.ok),
                "resumed": sum(1 for o in results.values() if o.resumed),
            }
        ),
        flush=True,
    )


async def hold(path: str) -> None:
    async with fj.Fan(journal=path):
        print("ready", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    mode = sys.argv[1]
    if mode == "run":
        run(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
    elif mode == "hold":
        try:
            asyncio.run(hold(sys.argv[2]))
        except fj.JournalLocked as e:
            print(json.dumps({"locked": e.pid, "message": str(e)}), flush=True)
            sys.exit(3)


if __name__ == "__main__":
    main()
