"""Three local search "engines" with different latencies, for the search example.

- google: answers in ~80 ms;
- bing: a slow tail — the first call for a query takes 2 s, a repeat is quick (a hedged
  duplicate wins);
- duckduckgo: hangs (60 s) — only a timeout gets the run past it.
"""

from __future__ import annotations

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

HANG = 60.0


def _route() -> _common.Route:
    seen: dict[tuple[str, str], int] = {}
    lock = threading.Lock()

    def route(method: str, path: str, body: Any) -> tuple[int, Any]:
        url = urlsplit(path)
        engine = url.path.strip("/")
        q = parse_qs(url.query).get("q", [""])[0]
        with lock:
            n = seen[engine, q] = seen.get((engine, q), 0) + 1
        if engine == "google":
            time.sleep(0.08)
        elif engine == "bing":
            time.sleep(2.0 if n == 1 else 0.1)
        elif engine == "duckduckgo":
            time.sleep(HANG)
        else:
            return 404, {"error": f"no engine {engine!r}"}
        hits = [{"title": f"{q} — result {i} from {engine}",
                 "url": f"https://{engine}.example/{i}"} for i in range(3)]  # fmt: skip
        return 200, {"engine": engine, "query": q, "call": n, "hits": hits}

    return route


@contextmanager
def serve_engines(base_url: str = "") -> Iterator[dict[str, str]]:
    """The three engines on 127.0.0.1 for the run (unless a base URL is given)."""
    if base_url:
        yield {"base_url": base_url}
        return
    with _common.serve(_route()) as url:
        yield {"base_url": url}


def merge(results: fj.Results) -> dict[str, Any]:
    """The aggregator: hits of the engines that answered, and which did not."""
    hits = []
    for engine, value in results.ok_values().items():
        doc = value.get("json", value)
        hits.extend({**h, "engine": engine} for h in doc["hits"])
    return {
        "answered": sorted(results.ok_values()),
        "not_answered": {n: o.status.value for n, o in results.failures().items()},
        "hits": hits,
    }
