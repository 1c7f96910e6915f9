"""Five local research "sources" for the research example, a price model, and its
aggregator.

name -> (latency, behaviour): one is flaky (fails its first request), one is broken
(always 500), one is far slower than the timeout. The price model is CPU-bound work (a
simulation of market listings): the example runs it on a Dask cluster.
"""

from __future__ import annotations

import math
import random
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common
import forkjoin as fj

SOURCES = {
    "amazon": (0.30, "ok"),
    "reddit": (0.20, "flaky"),  # fails on its first request, then works
    "youtube": (0.25, "ok"),
    "price_sites": (0.15, "broken"),  # always answers 500
    "expert_reviews": (5.00, "ok"),  # far slower than the timeout
}
COST_PER_CALL = 0.03  # USD, what each source's API charges per call


def _route() -> _common.Route:
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def route(method: str, path: str, body: Any) -> tuple[int, Any]:
        url = urlsplit(path)
        source = url.path.strip("/")
        product = parse_qs(url.query).get("q", [""])[0]
        if source not in SOURCES:
            return 404, {"error": f"no source {source!r}"}
        latency, behaviour = SOURCES[source]
        with lock:
            n = seen[source] = seen.get(source, 0) + 1
        time.sleep(latency)
        if behaviour == "broken" or (behaviour == "flaky" and n == 1):
            return 500, {"error": "source unavailable"}
        return 200, {
            "source": source,
            "product": product,
            "rating": 3.5 + len(source) % 3 * 0.5,
            "mentions": 10 * len(source),
        }

    return route


@contextmanager
def serve_sources(base_url: str = "") -> Iterator[dict[str, str]]:
    """The five sources on 127.0.0.1 for the run (unless a base URL is given)."""
    if base_url:
        yield {"base_url": base_url}
        return
    with _common.serve(_route()) as url:
        yield {"base_url": url}


def price_model(product: str, listings: int = 200_000, seed: int = 7) -> dict[str, Any]:
    """What the product sells for: the quartiles of ``listings`` simulated market prices
    (a log-normal spread around a base price; pure-Python CPU work, the same for a seed)."""
    rng = random.Random(f"{seed}:{product}")
    base = 50 + sum(map(ord, product)) % 250
    prices = sorted(base * math.exp(rng.gauss(0.0, 0.35)) for _ in range(listings))
    q1, median, q3 = (prices[int(listings * q)] for q in (0.25, 0.5, 0.75))
    return {"listings": listings, "q1": round(q1, 2), "median": round(median, 2),
            "q3": round(q3, 2)}  # fmt: skip


def aggregate(results: fj.Results) -> dict[str, Any]:
    """The aggregator: a plain function of the keyed results."""
    found = {n: v.get("json", v) for n, v in results.ok_values().items() if n in SOURCES}
    ratings = [v["rating"] for v in found.values()]
    model = results.get("price_model")
    return {
        "sources_ok": sorted(found),
        "sources_not_ok": {
            n: o.status.value for n, o in results.failures().items() if n in SOURCES
        },
        "mean_rating": round(sum(ratings) / len(ratings), 2) if ratings else None,
        "mentions": sum(v["mentions"] for v in found.values()),
        "price": model.value if model is not None and model.ok else None,
    }
