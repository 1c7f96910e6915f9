"""Three local search "engines" with different latencies, for the search examples.

- google: answers in ~80 ms;
- bing: a slow tail — the first call for a query takes 2 s, a repeat is quick (a hedged
  duplicate wins);
- duckduckgo: hangs (60 s) — only a timeout gets the run past it.

Every hit links to a page on the same local server (``/page/ENGINE/N``, ~150 ms each), for
the two-phase example that reads every page a search returned.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common
import forkjoin as fj

HANG = 60.0


PAGE_SECONDS = 0.15


def _route(base: list[str]) -> _common.Route:
    seen: dict[tuple[str, str], int] = {}
    lock = threading.Lock()

    def route(method: str, path: str, body: Any) -> tuple[int, Any]:
        url = urlsplit(path)
        engine = url.path.strip("/")
        q = parse_qs(url.query).get("q", [""])[0]
        if engine.startswith("page/"):
            return _page(engine, q)
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
        link = f"{base[0]}/page/{engine}" if base else f"https://{engine}.example"
        hits = [{"title": f"{q} — result {i} from {engine}",
                 "url": f"{link}/{i}?q={quote(q)}"} for i in range(3)]  # fmt: skip
        return 200, {"engine": engine, "query": q, "call": n, "hits": hits}

    return route


def _page(path: str, q: str) -> tuple[int, Any]:
    """A result's page: its title and some text about the query."""
    _, engine, number = [*path.split("/"), "", ""][:3]
    time.sleep(PAGE_SECONDS)
    words = [q or "nothing", "review", engine, "page", number] * (3 + len(number))
    return 200, {"title": f"{q} — page {number} from {engine}", "text": " ".join(words)}


@contextmanager
def serve_engines(base_url: str = "") -> Iterator[dict[str, str]]:
    """The three engines on 127.0.0.1 for the run (unless a base URL is given)."""
    if base_url:
        yield {"base_url": base_url}
        return
    base: list[str] = []
    with _common.serve(_route(base)) as url:
        base.append(url)  # the hits link back to this server's pages
        yield {"base_url": url}


def digest(results: fj.Results) -> dict[str, Any]:
    """The two-phase aggregator: every page read, by engine, and what was not."""
    pages: dict[str, list[dict[str, Any]]] = {}
    for name, o in results.items():
        group, _, index = name.partition("_pages/")
        if index and o.ok:
            page = o.value.get("json", o.value)
            words = len(page["text"].split())
            pages.setdefault(group, []).append({"title": page["title"], "words": words})
    return {
        "pages": pages,
        "words": sum(p["words"] for ps in pages.values() for p in ps),
        "not_ok": {n: o.reason or o.status.value for n, o in results.failures().items()},
    }


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
