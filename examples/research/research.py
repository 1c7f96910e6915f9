"""Research a product across five sources at once (the pattern's own scenario).

Starts five local HTTP "sources" (different latencies; one is broken, one is slow), then
fans out one request per source with forkjoin: a per-call timeout, a retry for the flaky
one, a cost per call, and keyed results — a failed source never shifts the others.

    python examples/research_product.py [--product "noise-cancelling headphones"]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import httpx

import forkjoin as fj

# name -> (latency in seconds, behaviour)
SOURCES = {
    "amazon": (0.30, "ok"),
    "reddit": (0.20, "flaky"),  # fails on its first request, then works
    "youtube": (0.25, "ok"),
    "price_sites": (0.15, "broken"),  # always answers 500
    "expert_reviews": (5.00, "ok"),  # far slower than the timeout
}
COST_PER_CALL = 0.03


class _Handler(BaseHTTPRequestHandler):
    seen: dict[str, int] = {}  # noqa: RUF012 - shared request counter of the demo server

    def do_GET(self) -> None:
        url = urlparse(self.path)
        source = url.path.strip("/")
        product = parse_qs(url.query).get("q", [""])[0]
        if source not in SOURCES:
            self.send_error(404)
            return
        latency, behaviour = SOURCES[source]
        n = self.seen[source] = self.seen.get(source, 0) + 1
        time.sleep(latency)
        if behaviour == "broken" or (behaviour == "flaky" and n == 1):
            self.send_error(500, "source unavailable")
            return
        body = json.dumps(
            {"source": source, "product": product, "rating": 3.5 + len(source) % 3 * 0.5,
             "mentions": 10 * len(source)}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # keep the demo's output clean
        pass


@contextmanager
def serve_sources() -> Iterator[str]:
    """Run the five sources on 127.0.0.1 (an ephemeral port) for the duration."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def research(base_url: str, product: str) -> fj.Results:
    async with httpx.AsyncClient(base_url=base_url) as client:

        async def search(source: str) -> dict[str, object]:
            response = await client.get(f"/{source}", params={"q": product})
            response.raise_for_status()
            return response.json()  # type: ignore[no-any-return]

        return await fj.gather(
            {
                name: fj.task(search, name, cost=COST_PER_CALL)
                for name in SOURCES
            },
            timeout=1.0,  # per call: expert_reviews (5 s) cannot hold the others up
            retry=fj.Retry(attempts=2, backoff=0.05),
            limit=5,
        )


def aggregate(results: fj.Results) -> dict[str, object]:
    """The aggregator: a plain function of the keyed results."""
    found = results.ok_values()
    ratings = [v["rating"] for v in found.values()]
    return {
        "sources_ok": sorted(found),
        "sources_failed": {n: o.status.value for n, o in results.failures().items()},
        "mean_rating": round(sum(ratings) / len(ratings), 2) if ratings else None,
        "mentions": sum(v["mentions"] for v in found.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--product", default="noise-cancelling headphones")
    args = parser.parse_args()
    with serve_sources() as base_url:
        results = asyncio.run(research(base_url, args.product))
    for name, outcome in results.items():
        shown = outcome.value if outcome.ok else f"{outcome.error!r}"
        print(f"{name:15} {outcome.status.value:10} attempts={outcome.attempts} {shown}")
    print()
    print(json.dumps(aggregate(results), indent=2))
    print()
    print(results.report)


if __name__ == "__main__":
    main()
