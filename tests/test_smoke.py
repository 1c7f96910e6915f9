from __future__ import annotations

import asyncio

import forkjoin as fj

from .conftest import no_orphans


async def double(x: int) -> int:
    await asyncio.sleep(x / 10)
    return 2 * x


def test_gather_keyed_results(vrun) -> None:
    async def main() -> fj.Results:
        results = await fj.gather(
            {"a": (double, 3), "b": fj.task(double, 1), "c": lambda: double(2)}
        )
        no_orphans()
        return results

    results = vrun(main())
    assert list(results) == ["a", "b", "c"]
    assert results.ok_values() == {"a": 6, "b": 2, "c": 4}
    assert results.all_ok
    assert results.report.peak_concurrency == 3
