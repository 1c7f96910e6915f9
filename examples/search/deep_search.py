"""Two-phase search, in Python: search three engines, then read every page they returned.

python examples/search/deep_search.py ["query"]

Phase 2 does not wait for phase 1 to end: each engine's pages are read (fj.each over its
hits) as soon as that engine has answered. A search that failed skips its own pages
(reason "dependency"), and the digest, which runs anyway, reads what was found.
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

ENGINES = ("google", "bing", "duckduckgo")


async def deep_search(base_url: str, query: str) -> fj.Results:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:

        async def search(engine: str) -> list[dict[str, str]]:
            response = await client.get(f"/{engine}", params={"q": query})
            response.raise_for_status()
            return response.json()["hits"]  # type: ignore[no-any-return]

        async def read(url: str) -> dict[str, Any]:
            response = await client.get(url)
            response.raise_for_status()
            page = response.json()
            return {"title": page["title"], "words": len(page["text"].split())}

        def digest(*pages_by_engine: list[dict[str, Any]]) -> dict[str, Any]:
            pages = {e: p for e, p in zip(ENGINES, pages_by_engine, strict=True) if p}
            return {"pages": pages, "words": sum(p["words"] for ps in pages.values() for p in ps)}

        tasks: dict[str, Any] = {
            # phase 1
            "google": (search, "google"),
            "bing": fj.task(search, "bing", timeout=5, idempotent=True, hedge=fj.Hedge(after=0.3)),
            "duckduckgo": (search, "duckduckgo"),  # hangs: the timeout ends it
        }
        for engine in ENGINES:
            # phase 2: one task per hit of this engine, started once this engine answered
            tasks[f"{engine}_pages"] = fj.each(engine, read, fj.item("url"), group="pages")
        # the digest waits for every group; a group not all ok gives the pages that are
        tasks["digest"] = fj.task(
            digest, *(fj.ref(f"{e}_pages") for e in ENGINES), on_dependency_failure="run"
        )
        return await fj.gather(tasks, timeout=1.0, limits={"pages": 4}, deadline=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("query", nargs="?", default="noise cancelling headphones")
    args = parser.parse_args()
    with engines.serve_engines() as provided:
        results = asyncio.run(deep_search(provided["base_url"], args.query))
    out = {
        **results["digest"].value,
        "not_ok": {n: o.reason or o.status.value for n, o in results.failures().items()},
    }
    print(json.dumps(out, indent=2, ensure_ascii=False))
    print(results.report, file=sys.stderr)


if __name__ == "__main__":
    main()
