"""A strict HTTP API for tests: a real server on 127.0.0.1 that behaves like a rate-limited
production API.

It enforces a hidden request rate (a GCRA token bucket: ``rate`` per second with a
``burst`` allowance, like most real APIs) and a hidden maximum of requests in flight,
answering ``429`` with ``Retry-After`` (seconds, fractional) when either is exceeded. Its
latency has a configurable slow tail and it fails a configurable share of requests with
``500``. It counts every request with its arrival time, so tests check the server's own
view, not the client's.

Run by uvicorn in a separate process (its own core and event loop, so the client under
test cannot distort the server's clock or starve it of the GIL); :func:`strict_api` starts
and stops it, and ``GET /stats`` returns what it counted.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import forkjoin as fj


@dataclass
class StrictConfig:
    rate: float = 1e9  # requests per second
    burst: int = 0  # extra requests allowed at once after a quiet spell
    max_in_flight: int = 1_000_000
    latency: float = 0.01  # seconds, base
    jitter: float = 0.0  # + uniform(0, jitter)
    slow_share: float = 0.0  # share of requests that are slow...
    slow_factor: float = 20.0  # ...by this factor
    error_share: float = 0.0  # share of requests answered 500
    busy_retry_after: float = 0.02  # Retry-After for "too many in flight"
    seed: int = 0


@dataclass
class Request_:
    arrival: float  # seconds since the server started (its own clock)
    ident: str
    status: int = 0
    ended: float = 0.0


@dataclass
class _Server:
    config: StrictConfig
    requests: list[Request_] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0
    _t0: float = field(default_factory=time.monotonic)
    _tat: float = 0.0
    _calls: dict[str, int] = field(default_factory=dict)

    def _admit(self, now: float) -> float | None:
        """GCRA: None if the request conforms, else seconds until it would."""
        c = self.config
        interval = 1.0 / c.rate
        tat = max(self._tat, now)
        allow_at = tat - c.burst * interval
        if now < allow_at:
            return allow_at - now
        self._tat = tat + interval
        return None

    async def handle(self, request: Request) -> JSONResponse:
        c = self.config
        now = time.monotonic() - self._t0
        ident = request.query_params.get("id", "")
        n = self._calls[ident] = self._calls.get(ident, 0) + 1
        rec = Request_(now, ident)
        self.requests.append(rec)
        if self.in_flight >= c.max_in_flight:
            rec.status, rec.ended = 429, now
            return JSONResponse(
                {"error": "too many requests in flight"},
                429,
                {"Retry-After": f"{c.busy_retry_after:.3f}"},
            )
        wait = self._admit(now)
        if wait is not None:
            rec.status, rec.ended = 429, now
            return JSONResponse({"error": "rate limited"}, 429, {"Retry-After": f"{wait:.3f}"})
        # per-request randomness from (seed, id, call number): reproducible whatever the
        # arrival order
        rnd = random.Random(f"{c.seed}:{ident}:{n}")
        latency = c.latency + rnd.uniform(0, c.jitter)
        if rnd.random() < c.slow_share:
            latency *= c.slow_factor
        failed = rnd.random() < c.error_share
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            await asyncio.sleep(latency)
        finally:
            self.in_flight -= 1
        rec.ended = time.monotonic() - self._t0
        if failed:
            rec.status = 500
            return JSONResponse({"error": "internal error"}, 500)
        rec.status = 200
        cost = round(0.005 + rnd.random() * 0.006, 6)  # what this call "cost" in USD
        return JSONResponse({"id": ident, "call": n, "cost": cost})

    async def stats(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "requests": [[r.arrival, r.ident, r.status] for r in self.requests],
                "peak_in_flight": self.peak_in_flight,
            }
        )


def _serve(config: StrictConfig) -> None:
    """The server process: print the port, serve until terminated."""
    server_state = _Server(config)
    app = Starlette(
        routes=[Route("/call", server_state.handle), Route("/stats", server_state.stats)]
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", access_log=False
        )
    )

    async def main() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                return
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        server_state._t0 = time.monotonic()
        print(port, flush=True)
        await task

    asyncio.run(main())


@dataclass
class StrictAPI:
    """The test's handle on a running strict API: its URL and what it counted."""

    config: StrictConfig
    url: str
    _stats_url: str
    _cache: dict[str, Any] | None = None

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = httpx.get(self._stats_url, timeout=30).json()
        return data

    @property
    def requests(self) -> list[tuple[float, str, int]]:
        return [tuple(r) for r in self.stats()["requests"]]  # type: ignore[misc]

    @property
    def peak_in_flight(self) -> int:
        return int(self.stats()["peak_in_flight"])

    def count(self, status: int | None = None) -> int:
        return sum(1 for _, _, st in self.requests if status is None or st == status)

    def calls_per_ident(self) -> dict[str, int]:
        calls: dict[str, int] = {}
        for _, ident, _ in self.requests:
            calls[ident] = calls.get(ident, 0) + 1
        return calls

    def max_in_window(self, per: float = 1.0, status: int | None = 200) -> int:
        """Most requests (with ``status``; None: all) that arrived in any window of
        ``per`` seconds, by the server's clock."""
        return _max_window([t for t, _, st in self.requests if status is None or st == status], per)


@contextmanager
def strict_api(config: StrictConfig | None = None) -> Iterator[StrictAPI]:
    """Start a strict API server process on 127.0.0.1 (ephemeral port); stop it on exit."""
    config = config or StrictConfig()
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from tests.strict_api import _main; _main()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=str(Path(__file__).resolve().parent.parent),
        text=True,
    )
    try:
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write(json.dumps(asdict(config)))
        proc.stdin.close()
        line = proc.stdout.readline()  # the port, once it listens
        if not line.strip().isdigit():
            raise RuntimeError(f"strict API server did not start: {line!r}")
        base = f"http://127.0.0.1:{int(line)}"
        yield StrictAPI(config, f"{base}/call", f"{base}/stats")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait()


def _main() -> None:
    _serve(StrictConfig(**json.loads(sys.stdin.read())))


# -- scenarios: forkjoin + httpx against the strict API (shared by tests and bench) ------


def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=256), timeout=30
    )


def _caller(client: httpx.AsyncClient, url: str) -> Any:
    async def call(i: int) -> dict[str, Any]:
        response = await client.get(url, params={"id": str(i)})
        response.raise_for_status()  # 429/503 become HTTPStatusError: forkjoin reads them
        body: dict[str, Any] = response.json()
        return body

    return call


def _starts(results: fj.Results) -> list[float]:
    return [a.started for o in results.values() for a in o.history]


def _max_window(times: list[float], per: float) -> int:
    times = sorted(times)
    best = lo = 0
    for hi, t in enumerate(times):
        while times[lo] <= t - per:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def _p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def scenario_rate(api: StrictAPI, n: int = 500) -> dict[str, Any]:
    """``n`` calls with RateLimit set to the server's rate."""
    async with _client() as client:
        call = _caller(client, api.url)
        results = await fj.gather(
            {str(i): fj.task(call, i, group="api") for i in range(n)},
            rates={"api": fj.RateLimit(api.config.rate)},
        )
    wall = results.report.wall
    return {
        "results": results,
        "ok": len(results.ok_values()),
        "429s": api.count(429),
        "requests": api.count(),
        "server_max_window": api.max_in_window(1.0, status=None),
        "client_max_window": _max_window(_starts(results), 1.0),
        "achieved_rate": n / wall,
        "wall": wall,
    }


async def scenario_adaptive(api: StrictAPI, n: int = 500) -> dict[str, Any]:
    """``n`` calls against limits the client does not know: AdaptiveLimit + Retry."""
    c = api.config
    async with _client() as client:
        call = _caller(client, api.url)
        results = await fj.gather(
            {str(i): fj.task(call, i, group="api") for i in range(n)},
            limits={"api": fj.AdaptiveLimit(initial=4, max=64)},
            retry=fj.Retry(attempts=20, backoff=0.01, max_delay=0.2),
        )
    wall = results.report.wall
    mean_latency = c.latency + c.jitter / 2
    # the most the server could have accepted in this wall time: its sustained rate plus
    # one bucket of burst (or its in-flight cap over the latency, if that is lower)
    capacity = min(c.rate + c.burst / wall, c.max_in_flight / mean_latency)
    return {
        "results": results,
        "ok": len(results.ok_values()),
        "requests": api.count(),
        "429s": api.count(429),
        "429_share": api.count(429) / api.count(),
        "throughput": n / wall,
        "capacity": capacity,
        "utilisation": (n / wall) / capacity,
        "final_limit": results.report.options["adaptive"]["api"]["limit"],
        "wall": wall,
    }


async def scenario_errors(api: StrictAPI, n: int = 500) -> dict[str, Any]:
    """``n`` calls, a share of them answered 500, with Retry(attempts=4)."""
    async with _client() as client:
        call = _caller(client, api.url)
        results = await fj.gather(
            {str(i): fj.task(call, i) for i in range(n)},
            limit=50,
            retry=fj.Retry(attempts=4, backoff=0.005, max_delay=0.05),
        )
    calls = api.calls_per_ident()
    return {
        "results": results,
        "ok": len(results.ok_values()),
        "500s": api.count(500),
        "requests": api.count(),
        "max_calls_per_task": max(calls.values()),
        "attempts_match": all(calls[name] == o.attempts for name, o in results.items()),
    }


async def scenario_hedge(
    api: StrictAPI, n: int = 200, hedge: fj.Hedge | None = None
) -> dict[str, Any]:
    """``n`` calls with a slow tail, with or without a Hedge; latency percentiles."""
    start_count = api.count()
    async with _client() as client:
        call = _caller(client, api.url)
        results = await fj.gather(
            {str(i): fj.task(call, i, idempotent=True, hedge=hedge, cost=0.001) for i in range(n)},
            limit=20,
        )
    durations = [o.duration for o in results.values() if o.duration is not None]
    extra = sum(1 for o in results.values() for a in o.history if a.hedge)
    return {
        "results": results,
        "ok": len(results.ok_values()),
        "p50": _p(durations, 0.50),
        "p99": _p(durations, 0.99),
        "max": max(durations),
        "extra_calls": extra,
        "report_hedged": results.report.hedged,
        "server_requests": api.count() - start_count,
        "cost": results.report.cost,
    }


async def scenario_budget(
    api: StrictAPI, n: int = 100, estimate: float = 0.012, usd: float = 0.5
) -> dict[str, Any]:
    """``n`` calls estimated at ``estimate`` each under a smaller Budget; each call charges
    what the server says it cost."""
    async with _client() as client:
        call = _caller(client, api.url)

        async def paid(i: int) -> dict[str, Any]:
            body = await call(i)
            fj.charge(usd=body["cost"])
            return body

        results = await fj.gather(
            {str(i): fj.task(paid, i, cost=estimate) for i in range(n)},
            limit=8,
            budget=fj.Budget(usd=usd),
        )
    budget = results.report.options.get("budget", {})
    return {
        "results": results,
        "ok": len(results.ok_values()),
        "skipped_budget": sum(1 for o in results.values() if o.reason == "budget"),
        "spent": budget["spent_usd"],
        "budget": usd,
        "estimate": estimate,
        "server_requests": api.count(),
        "intact": all(o.value["id"] == name for name, o in results.items() if o.ok),
    }
