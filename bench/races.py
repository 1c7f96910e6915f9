"""The shared-state pitfall, measured: ``python -m bench.races``.

Tasks that read a shared counter, let something else run, and write it back lose
updates. With async tasks the loss is deterministic (every task that read the same value
writes the same value back); with sync tasks in threads it depends on when the threads
are switched, so it varies from run to run. README.md ("Shared state") quotes this.
"""

from __future__ import annotations

import asyncio
import operator
import time

import forkjoin as fj

counter = 0


async def add_one_async(i: int) -> None:
    global counter
    seen = counter
    await asyncio.sleep(0)  # any await: other tasks run here
    counter = seen + 1


def add_one_in_a_thread(i: int) -> None:
    global counter
    seen = counter
    time.sleep(0)  # any blocking call: other threads run here
    counter = seen + 1


def one(i: int) -> int:
    return 1


def main() -> None:
    global counter
    counter = 0
    fj.run({f"t{i}": (add_one_async, i) for i in range(500)}, limit=5)
    print(f"async tasks, limit 5: counter {counter:,} of 500")
    for _ in range(5):
        counter = 0
        fj.run({f"t{i}": (add_one_in_a_thread, i) for i in range(5_000)}, limit=8)
        print(f"sync tasks in threads, limit 8: counter {counter:,} of 5,000")
    total = fj.map_reduce_sync(one, range(5_000), operator.add, 0, limit=8)
    print(f"the same with map_reduce: {total:,} of 5,000")


if __name__ == "__main__":
    main()
