"""Search three engines at once, in Python: partial results, a timeout and hedging.

python examples/search/search.py ["query"]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx

import forkjoin as fj

sys.path.insert(0, str(Path(__file__).resolve().parent))
import engines


async def search_all(base_url: str, query: str) -> fj.Results:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:

        async def search(engine: str) -> dict[str, Any]:
            response = await client.get(f"/{engine}", params={"q": query})
            response.raise_for_status()
            return response.json()  # type: ignore[no-any-return]

        return await fj.gather(
            {
                "google": (search, "google"),
                # bing's slow tail: a duplicate call after 300 ms, the first answer wins
                "bing": fj.task(
                    search, "bing", timeout=5, idempotent=True, hedge=fj.Hedge(after=0.3)
                ),
                "duckduckgo": (search, "duckduckgo"),  # hangs: the timeout ends it
            },
            timeout=1.0,
            deadline=10,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("query", nargs="?", default="noise cancelling headphones")
    args = parser.parse_args()
    with engines.serve_engines() as provided:
        results = asyncio.run(search_all(provided["base_url"], args.query))
    print(json.dumps(engines.merge(results), indent=2, ensure_ascii=False))
    print(results.report, file=sys.stderr)


if __name__ == "__main__":
    main()
