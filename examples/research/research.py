"""Research a product across five sources at once, in Python (the pattern's own scenario).

Starts five local HTTP "sources" (different latencies; one is broken, one is slow), then
fans out one request per source with forkjoin: a per-call timeout, a retry for the flaky
one, a cost per call and a budget, and keyed results — a failed source never shifts the
others. Meanwhile a CPU-bound price model runs on a local Dask cluster that forkjoin
starts for the run (``backend=fj.DaskBackend(workers=2)``) and closes after it.

    python examples/research/research.py [--product "noise-cancelling headphones"]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import httpx

import forkjoin as fj

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sources


async def research(base_url: str, product: str) -> fj.Results:
    async with httpx.AsyncClient(base_url=base_url) as client:

        async def search(source: str) -> dict[str, object]:
            response = await client.get(f"/{source}", params={"q": product})
            response.raise_for_status()
            return response.json()  # type: ignore[no-any-return]

        model = fj.task(
            sources.price_model,
            product,
            backend=fj.DaskBackend(workers=2),  # CPU-bound: on a local cluster
            timeout=15.0,
            priority=1,  # admitted first: it has no cost, the budget is for the sources
        )
        return await fj.gather(
            {
                "price_model": model,
                **{
                    name: fj.task(search, name, cost=sources.COST_PER_CALL, priority=-rank)
                    for rank, name in enumerate(sources.SOURCES)
                },
            },
            timeout=1.0,  # per call: expert_reviews (5 s) cannot hold the others up
            retry=fj.Retry(attempts=2, backoff=0.05),
            limit=5,
            budget=fj.Budget(usd=0.12),  # four calls' worth: the last source is skipped
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--product", default="noise-cancelling headphones")
    args = parser.parse_args()
    with sources.serve_sources() as provided:
        results = asyncio.run(research(provided["base_url"], args.product))
    for name, outcome in results.items():
        shown = outcome.value if outcome.ok else f"{outcome.error!r}"
        print(f"{name:15} {outcome.status.value:10} attempts={outcome.attempts} {shown}")
    print()
    print(json.dumps(sources.aggregate(results), indent=2))
    print()
    print(results.report)


if __name__ == "__main__":
    main()
