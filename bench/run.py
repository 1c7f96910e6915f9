"""The benchmark harness: ``python -m bench [--quick | --full] [--out FILE]``.

Method (issue 3):

- every (workload, contender, size, loop) configuration runs in a fresh subprocess, once per
  repeat; repeats are interleaved (pass 1 runs every configuration, then pass 2, ...), so
  a burst of load on this shared machine hits every contender alike rather than one;
- the child times only the fan-out itself (``time.perf_counter`` inside the running loop,
  after imports and set-up, after a ``gc.collect()``), checks its results, and prints JSON;
- peak RSS is that subprocess's own ``ru_maxrss``, read by the parent with ``os.wait4``
  on the child's pid (``RUSAGE_CHILDREN`` would be the maximum over all children so far);
  the child also reports its ``ru_maxrss`` just before the timed region, so the table can
  show what the workload itself added (ΔRSS);
- the figure is the median over the repeats, in µs per task (or seconds for a makespan),
  and every figure is also given as a ratio to a baseline measured in the same run:
  absolute times drift on a shared machine, ratios hold.

``--quick`` (CI's smoke test: tiny sizes, one repeat, two configurations at a time) only
checks that every contender runs and is correct; it exits non-zero when a contender crashes,
returns wrong results or hangs, never because the machine is slow. ``--full`` writes
bench/RESULTS.md (and the raw figures beside it, as RESULTS.json).

``--ref REV`` adds a before/after comparison: src/forkjoin as committed at REV is exported
to a temporary directory and every forkjoin contender runs twice per repeat, once against
the working tree and once against REV, both in the same interleaved passes (adjacent, their
order swapped every other pass). A contender that REV cannot run (a feature it lacks) is
left out at REV, with a note. The floors are judged on the working tree only; the
"Before/after" section gives, per configuration, REV's figure, the working tree's and their
ratio, with a verdict that counts a difference only when it is larger than the spread of
the repeats.

The floors (judged on the stock asyncio loop; the time floors of the CPU-bound workloads
1, 2, 5 and 8 on the child's CPU time, the others on wall time):

- 1: ``fj.gather`` of 100,000 trivial tasks ≤ 1.15× raw ``asyncio.gather``; peak RSS ≤ 1.3×;
- 2: ``fj.map(limit=100)`` ≤ 1.5× the hand-written pool of 100 workers at every size,
  ≤ 0.5× gather + Semaphore, ≥ 8× faster than aiometer and ≥ 40× faster than LangChain;
- 3: makespan of 1,000 × 10 ms under limit 50, as a multiple of the ideal: ``fj.map`` ≤ the
  bare pool of the same run + 0.02, ``fj.gather(limit=50)`` ≤ the bare pool + 0.03;
- 4: ``fj.imap`` over 1,000,000 items: peak RSS ≤ 60 MB and ≤ 1.1× its RSS at 100,000;
- 5: policies on (timeout, retry, two limited groups, an observer) ≤ 1.3× workload 1's
  ``fj.gather``;
- 6: 200 blocking ``time.sleep(0.01)`` calls through ``fj.map`` / ``fj.gather`` ≤ 1.1×
  ``ThreadPoolExecutor.map``;
- 7: 500 tasks under ``RateLimit(100, per=1)``: no 1-s window (the first included) over 100
  starts, and ≥ 97% of the rate achieved;
- 8: a circuit breaker and ``max_failures`` that never trip ≤ 1.1× the same run without them;
- 4 and 9 (durable runs): ``fj.imap`` over 1,000,000 items with a journal: peak RSS ≤ 60 MB
  and flat in n; ``fj.gather`` of 100,000 trivial tasks with a batch journal ≤ 5 µs per task
  more than without one, with ``durability="sync"`` ≤ 25 µs more; a rerun of 100,000
  finished tasks (nothing called) ≤ 1 s;
- 10-13 (the shell): ``forkjoin map`` beside ``xargs -P`` and GNU parallel, its makespan,
  ``--call`` throughput and start-up;
- 14: 200 calls of ~20 ms of pure-Python work on 2 workers: ``backend="process"`` ≥ 1.8×
  faster than ``backend="thread"``, and ≤ 1.1× ``ProcessPoolExecutor.submit`` (wall time);
- 15: 1,000 trivial calls on a 2-worker Dask LocalCluster: ``fj.gather`` ≤ 1.2× raw
  ``client.submit`` + ``as_completed``; ``fj.map_reduce``'s caller peak RSS at 100k ≤ 1.1×
  at 10k (the cluster's start and shutdown are reported beside them);
- 16: 10,000 trivial tasks in a random DAG (2 dependencies each) ≤ 1.5× the same tasks with no
  dependency (``fj.task(f, i)``), and linear in the edges: the cost of an edge from degree 8
  to 32 ≤ 1.5× its cost from degree 2 to 8;
- 17: workload 10's ``echo {}`` at N = 8 beside two busy processes: its ≤ 1.2× ``xargs``
  floor on a busy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import importlib.metadata
import json
import os
import platform
import resource
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import workloads
from bench.workloads import Contender, Skip, Workload

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
PEERS = ("aiometer", "anyio", "trio", "langchain-core", "uvloop", "aiolimiter", "tenacity")
MB = 1024 * 1024


@dataclass(frozen=True, order=True)
class Config:
    workload: int
    contender: str
    n: int
    loop: str  # "asyncio", "uvloop", "trio" or "-" (a sync contender)
    engine: str = "tree"  # which forkjoin: "tree" (the working tree) or "ref" (``--ref``)


@dataclass
class Agg:
    """The repeats of one configuration, summarised."""

    config: Config
    runs: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.runs) and not self.errors

    def median(self, key: str = "seconds") -> float:
        return statistics.median(r[key] for r in self.runs)

    def has(self, key: str) -> bool:
        return self.ok and all(key in r for r in self.runs)

    def worst(self, key: str) -> float:
        return max(r[key] for r in self.runs)

    def spread(self, key: str = "seconds") -> float:
        """max / min over the repeats: how much this configuration moved between runs."""
        values = [float(r[key]) for r in self.runs]
        return max(values) / min(values) if min(values) > 0 else float("inf")

    @property
    def us_per_task(self) -> float:
        return self.median() / self.config.n * 1e6

    @property
    def cpu_us_per_task(self) -> float:
        return self.median("cpu") / self.config.n * 1e6

    @property
    def rss(self) -> float:
        """Peak RSS of the subprocess, bytes (median over repeats)."""
        return statistics.median(r["rss_peak_kb"] for r in self.runs) * 1024

    @property
    def rss_delta(self) -> float:
        """What the timed workload added to the peak, bytes (median over repeats)."""
        return (
            statistics.median(max(0, r["rss_peak_kb"] - r["rss_before_kb"]) for r in self.runs)
            * 1024
        )


# -- the child ----------------------------------------------------------------------------


def _check_engine() -> None:
    """Raise unless forkjoin was imported from the src directory the parent chose."""
    want = os.environ.get(_SRC_ENV)
    if want is None:
        return
    import forkjoin

    got = Path(forkjoin.__file__ or "?").resolve()
    if not got.is_relative_to(Path(want).resolve()):
        raise RuntimeError(f"forkjoin was imported from {got}, not from {want}")


def child(spec: str) -> int:
    """Run one configuration once; print one JSON line."""
    cfg = Config(**json.loads(spec))
    w = workloads.get(cfg.workload)
    c = w.contender(cfg.contender)
    params = dict(w.params)
    try:
        for mod in c.modules():
            importlib.import_module(mod)
        if c.is_forkjoin:
            _check_engine()
            # forkjoin binds its public names on first use: load them all here, so that the
            # timed region holds the run and not the import (as with an eager package)
            import forkjoin

            for name in forkjoin.__all__:
                getattr(forkjoin, name)
        if cfg.loop == "uvloop":
            import uvloop

            factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
        elif cfg.loop == "select":
            factory = functools.partial(asyncio.SelectorEventLoop, selectors.SelectSelector())
        else:
            factory = None
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if c.runtime == "asyncio":
            with asyncio.Runner(loop_factory=factory) as runner:
                result = runner.run(c.fn(cfg.n, params))
        elif c.runtime == "trio":
            import trio

            result = trio.run(c.fn, cfg.n, params)
        else:
            result = c.fn(cfg.n, params)
    except Skip as e:
        print(json.dumps({"skipped": str(e)}))
        return 0
    result["rss_before_kb"] = rss_before
    result["rss_self_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(result))
    return 0


# -- the parent ---------------------------------------------------------------------------


def probe(spec: str) -> int:
    """Print, as JSON, why each forkjoin contender of the given workloads cannot run with
    the forkjoin this process imports (None: it can). The parent runs this against
    ``--ref``'s export: its own ``import forkjoin`` is the working tree's."""
    _check_engine()
    reasons = {
        f"{w.id}/{c.key}": c.skip_reason()
        for w in map(workloads.get, json.loads(spec))
        for c in w.contenders
        if c.is_forkjoin
    }
    print(json.dumps(reasons))
    return 0


# where the children import forkjoin from, per engine: "tree" is the working tree's src/,
# "ref" (with --ref) a revision's src/forkjoin exported to a temporary directory
SRCS: dict[str, Path] = {"tree": ROOT / "src"}
# the child checks that forkjoin came from there (an installed copy must not win silently)
_SRC_ENV = "FORKJOIN_BENCH_SRC"


def child_env(engine: str = "tree") -> dict[str, str]:
    src = SRCS[engine]
    paths = [str(src), str(ROOT)]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths), **{_SRC_ENV: str(src)})


def export_revision(rev: str) -> Path:
    """``src/forkjoin`` as of git revision ``rev``, in a temporary directory: the children
    then measure what is committed there, not what someone is editing right now."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev, "src/forkjoin"],
        cwd=ROOT,
        capture_output=True,
    )
    if archive.returncode != 0:
        raise RuntimeError(archive.stderr.decode(errors="replace").strip())
    dest = Path(tempfile.mkdtemp(prefix="forkjoin-bench-"))
    SRCS["ref"] = dest / "src"  # before extracting: _drop_export() then removes what is left
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest / "src"


def _drop_export() -> None:
    """Remove --ref's exported copy, if any."""
    src = SRCS.pop("ref", None)
    if src is not None:
        shutil.rmtree(src.parent, ignore_errors=True)


# children running now: killed if the harness itself is stopped (Ctrl-C, SIGTERM)
_LIVE: set[subprocess.Popen[bytes]] = set()


def run_child(cfg: Config, timeout: float) -> dict[str, Any]:
    """Run one configuration in a fresh interpreter; its figures, or {"error": ...}."""
    cmd = [sys.executable, "-m", "bench.run", "--child", json.dumps(asdict(cfg))]
    env = child_env(cfg.engine)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT, env=env)
        _LIVE.add(proc)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            # wait4 on this pid: the rusage of this child alone (its own peak RSS)
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            os.wait4(proc.pid, 0)
            proc.returncode = -9
            raise
        finally:
            timer.cancel()
            _LIVE.discard(proc)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if proc.returncode != 0:
        why = f"killed after {timeout:g} s (hang?)" if proc.returncode < 0 else "crashed"
        tail = "\n".join(stderr.strip().splitlines()[-12:])
        return {"error": f"{why}, exit {proc.returncode}:\n{tail}"}
    try:
        result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": f"no result printed; stdout={stdout[-500:]!r} stderr={stderr[-500:]!r}"}
    result["rss_peak_kb"] = usage.ru_maxrss  # kilobytes on Linux
    return result


def probe_ref(chosen: Iterable[Workload]) -> dict[str, str | None]:
    """Which forkjoin contenders ``--ref``'s revision cannot run, and why (see probe())."""
    ids = [w.id for w in chosen]
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--probe", json.dumps(ids)],
        cwd=ROOT,
        env=child_env("ref"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-12:])
        raise RuntimeError(f"the revision's forkjoin cannot be probed:\n{tail}")
    reasons: dict[str, str | None] = json.loads(done.stdout.strip().splitlines()[-1])
    return reasons


def _name(c: Contender) -> str:
    """A contender in a sentence: its label, or its key where the label only makes sense
    under the row above it ("… with ...")."""
    return f"`{c.key}` ({c.label[1:].strip()})" if c.label.startswith("…") else c.label


def plan(
    mode: str,
    chosen: Iterable[Workload],
    only: str | None,
    uvloop: bool,
    notes: list[str],
    ref: tuple[str, dict[str, str | None]] | None = None,
) -> list[Config]:
    """The configurations to run, in the order of one pass. With ``ref`` (the revision's
    name and probe()'s answer), each forkjoin configuration is followed by the same one
    against that revision."""
    have_uvloop = importlib.util.find_spec("uvloop") is not None
    if uvloop and not have_uvloop:
        notes.append("uvloop is not installed: every contender runs on the stock loop only.")
    configs: list[Config] = []
    for w in chosen:
        if w.available is not None and (reason := w.available()) is not None:
            notes.append(f"Workload {w.id} ({w.title}) skipped: {reason}.")
            continue
        for c in w.contenders:
            if only and only not in c.key and c.key != w.baseline:
                continue
            reason = c.skip_reason()
            if reason is not None:
                notes.append(f"Workload {w.id}: {_name(c)} skipped: {reason}.")
                continue
            engines = ["tree"]
            if ref is not None and c.is_forkjoin:
                name, reasons = ref
                why = reasons.get(f"{w.id}/{c.key}")
                if why is None:
                    engines.append("ref")
                else:
                    notes.append(
                        f"Workload {w.id}: {_name(c)} not run at `{name}` (`--ref`): {why}."
                    )
            for n in w.sizes[mode]:
                if mode == "full" and c.max_n is not None and n > c.max_n:
                    continue
                if c.runtime == "asyncio":
                    loops = ["asyncio"]
                    uv_sizes = (w.uvloop_sizes or {}).get(mode, ())
                    small = mode != "full" or c.uvloop_max_n is None or n <= c.uvloop_max_n
                    if uvloop and have_uvloop and c.uvloop and n in uv_sizes and small:
                        loops.append("uvloop")
                    if c.key in w.select_loop:
                        loops.append("select")
                else:
                    loops = ["trio" if c.runtime == "trio" else "-"]
                configs.extend(
                    Config(w.id, c.key, n, loop, engine) for loop in loops for engine in engines
                )
        capped = [
            f"{c.label} (≤ {c.max_n:,})"
            for c in w.contenders
            if c.max_n is not None and any(n > c.max_n for n in w.sizes[mode])
        ]
        if mode == "full" and capped:
            notes.append(
                f"Workload {w.id}: to keep the full run near 20 minutes, not run at the "
                f"larger sizes: {', '.join(capped)}."
            )
    return configs


def _twin(cfg: Config) -> Config:
    """The same configuration against the other engine."""
    return Config(
        cfg.workload, cfg.contender, cfg.n, cfg.loop, "ref" if cfg.engine == "tree" else "tree"
    )


def execute(
    configs: list[Config], repeats: dict[int, int], jobs: int, timeout: float, progress: bool
) -> dict[Config, Agg]:
    aggs = {cfg: Agg(cfg) for cfg in configs}
    passes = max(repeats[cfg.workload] for cfg in configs) if configs else 0
    # a configuration and its --ref twin are adjacent; every other pass runs them in the
    # other order, so neither always runs just after the same neighbour
    swapped = list(configs)
    for i in range(len(swapped) - 1):
        a, b = swapped[i], swapped[i + 1]
        if a.engine == "tree" and b.engine == "ref" and _twin(a) == b:
            swapped[i], swapped[i + 1] = b, a
    todo = [
        cfg
        for p in range(passes)
        for cfg in (configs if p % 2 == 0 else swapped)
        if p < repeats[cfg.workload]
    ]
    started = time.monotonic()
    done = 0
    lock = threading.Lock()

    def one(cfg: Config) -> None:
        nonlocal done
        agg = aggs[cfg]
        if agg.skipped or agg.errors:
            return
        result = run_child(cfg, timeout)
        with lock:
            done += 1
            if "error" in result:
                agg.errors.append(result["error"])
                tag = "ERROR"
            elif "skipped" in result:
                agg.skipped = result["skipped"]
                tag = "skipped"
            else:
                agg.runs.append(result)
                tag = f"{result['seconds'] / cfg.n * 1e6:10.2f} µs/task"
            if progress:
                name = cfg.contender + ("@ref" if cfg.engine == "ref" else "")
                print(
                    f"[{time.monotonic() - started:6.0f}s {done}/{len(todo)}] "
                    f"w{cfg.workload} {name:<26} n={cfg.n:<8,} {cfg.loop:<7} {tag}",
                    flush=True,
                )

    if jobs <= 1:
        for cfg in todo:
            one(cfg)
    else:
        with ThreadPoolExecutor(max_workers=jobs) as ex:
            list(ex.map(one, todo))
    return aggs


# -- the report ---------------------------------------------------------------------------


def _mb(b: float) -> str:
    return f"{b / MB:,.0f}"


def _x(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}×"


def _git(ref: str | None) -> str:
    """Which forkjoin the children import (the working tree's, or ``ref``'s), in words."""
    # read-only: no opportunistic index refresh by `git status` (someone may be committing)
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", ref or "HEAD"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if ref is not None:
            return f"git {rev} (`--ref {ref}`: that revision's src/forkjoin, exported)"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src/forkjoin"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    if not dirty:
        return f"git {rev} (working tree, clean)"
    files = ", ".join(line[3:] for line in dirty)
    return f"git {rev} + uncommitted changes in {files}"


def machine(ref: str | None) -> dict[str, str]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = []
    for dist in PEERS:
        try:
            versions.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{dist} (absent)")
    info = {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": platform.platform(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "forkjoin": _git(None),
        "peers": ", ".join(versions),
        "load": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    if ref is not None:
        info["ref"] = _git(ref)
        info["ref_rev"] = info["ref"].split(" (", 1)[0]
    return info


def _find(
    aggs: dict[Config, Agg], w: int, c: str, n: int, loop: str = "asyncio", engine: str = "tree"
) -> Agg | None:
    agg = aggs.get(Config(w, c, n, loop, engine))
    return agg if agg is not None and agg.ok else None


def _ratio_base(
    w: Workload, aggs: dict[Config, Agg], n: int, engine: str = "tree", key: str | None = None
) -> Agg | None:
    """The baseline the row of contender ``key`` is divided by: the working tree's, unless
    the baseline is itself forkjoin (workload 8), in which case a --ref row is divided by
    the --ref baseline."""
    if w.baseline == "ideal":
        return None
    name = w.baseline_for(key) if key is not None else w.baseline
    base = w.contender(name)
    loop = {"trio": "trio", "sync": "-"}.get(base.runtime, "asyncio")
    return _find(aggs, w.id, name, n, loop, engine if base.is_forkjoin else "tree")


LOOP_ORDER = {"asyncio": 0, "-": 0, "trio": 0, "uvloop": 1, "select": 2}


def workload_table(w: Workload, aggs: dict[Config, Agg], ref: str | None = None) -> list[str]:
    rows = [a for a in aggs.values() if a.config.workload == w.id]
    if not rows:
        return []
    labels = {c.key: c.label for c in w.contenders}

    def label(cfg: Config) -> str:
        return labels[cfg.contender] + (f" @ `{ref}`" if cfg.engine == "ref" else "")

    order = {c.key: i for i, c in enumerate(w.contenders)}
    engine_order = {"tree": 0, "ref": 1}
    rows.sort(
        key=lambda a: (
            a.config.n,
            LOOP_ORDER[a.config.loop],
            order[a.config.contender],
            engine_order[a.config.engine],
        )
    )
    out = [f"### {w.id}. {w.title}", "", w.description + ".", ""]
    if w.unit == "rate":
        out += [
            "| n | contender | loop | achieved /s (median) | % of limit | worst 1-s window "
            "(max) | first-second starts (max) | makespan s | peak RSS MB |",
            "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        rate = w.params["rate"]
        for a in rows:
            c = a.config
            if not a.ok:
                out.append(
                    f"| {c.n:,} | {label(c)} | {c.loop} | "
                    f"{'skipped' if a.skipped else 'ERROR'} | | | | | |"
                )
                continue
            ach = a.median("achieved")
            out.append(
                f"| {c.n:,} | {label(c)} | {c.loop} | {ach:.1f} | "
                f"{ach / rate:.1%} | {a.worst('worst_window'):.0f} | "
                f"{a.worst('first_window'):.0f} | {a.median():.3f} | {_mb(a.rss)} |"
            )
    else:
        if w.unit == "s":
            head = "median s | × ideal" if w.ideal is not None else "median s"
            if w.baseline != "ideal":
                head += " | ratio to baseline"
        else:
            head = "wall µs/task | ratio (wall) | CPU µs/task | ratio (CPU)"
        cols = head.count("|") + 1
        out += [
            f"| n | contender | loop | {head} | peak RSS MB | RSS ratio | ΔRSS MB |",
            "| ---: | --- | --- |" + " ---: |" * (cols + 3),
        ]
        for a in rows:
            c = a.config
            if not a.ok:
                what = f"skipped: {a.skipped}" if a.skipped else "ERROR"
                out.append(f"| {c.n:,} | {label(c)} | {c.loop} | {what} |" + " |" * (cols + 2))
                continue
            base = _ratio_base(w, aggs, c.n, c.engine, c.contender)
            is_base = c.contender == w.baseline_for(c.contender) and base is a
            name = f"**{label(c)}** (baseline)" if is_base else label(c)
            rss_ratio = _x(a.rss / base.rss) if base is not None else "–"
            if w.unit == "s":
                cells = [f"{a.median():.3f}"]
                if w.ideal is not None:
                    cells.append(_x(a.median() / w.ideal(c.n)))
                if w.baseline != "ideal":
                    cells.append(_x(a.median() / base.median()) if base else "–")
            else:
                cells = [
                    f"{a.us_per_task:.2f}",
                    _x(a.median() / base.median()) if base else "–",
                    f"{a.cpu_us_per_task:.2f}" if a.has("cpu") else "–",
                    _x(a.median("cpu") / base.median("cpu"))
                    if base and a.has("cpu") and base.has("cpu")
                    else "–",
                ]
            out.append(
                f"| {c.n:,} | {name} | {c.loop} | {' | '.join(cells)} | {_mb(a.rss)} | "
                f"{rss_ratio} | {_mb(a.rss_delta)} |"
            )
    out += _extras_table(rows, label)
    if w.note:
        out += ["", w.note]
    return [*out, ""]


# figures a contender reports beside its time: (key, column title, unit scale, format)
_EXTRAS = (
    ("pool_start", "pool start s", 1.0, "{:.3f}"),
    ("cluster_start", "cluster start s", 1.0, "{:.3f}"),
    ("cluster_close", "cluster shutdown s", 1.0, "{:.3f}"),
    ("caller_rss_kb", "caller peak RSS MB", 1 / 1024, "{:.1f}"),
)


def _extras_table(rows: list[Agg], label: Callable[[Config], str]) -> list[str]:
    """What the contenders measured beside the fan-out (a pool's or a cluster's start and
    shutdown, the caller's own RSS), medians over the repeats."""
    shown = [e for e in _EXTRAS if any(a.has(e[0]) for a in rows)]
    if not shown:
        return []
    out = [
        "",
        "| n | contender | " + " | ".join(e[1] for e in shown) + " |",
        "| ---: | --- |" + " ---: |" * len(shown),
    ]
    for a in rows:
        if not a.ok or not any(a.has(e[0]) for e in shown):
            continue
        cells = [
            fmt.format(a.median(key) * scale) if a.has(key) else "–"
            for key, _, scale, fmt in shown
        ]
        out.append(f"| {a.config.n:,} | {label(a.config)} | {' | '.join(cells)} |")
    return out


@dataclass
class Floor:
    workload: int
    text: str
    measured: str
    passed: bool | None  # None: not measured in this run


def floors(aggs: dict[Config, Agg], mode: str) -> list[Floor]:
    get = workloads.get
    res: list[Floor] = []

    def ref_n(wid: int) -> int:
        sizes = get(wid).sizes[mode]
        under = [n for n in sizes if n <= 100_000]
        return max(under) if under else min(sizes)

    def add(
        wid: int,
        text: str,
        value: float | None,
        ok: Callable[[float], bool],
        fmt: Callable[[float], str],
    ) -> None:
        if value is None:
            res.append(Floor(wid, text, "not measured", None))
        else:
            res.append(Floor(wid, text, fmt(value), ok(value)))

    def ratio(a: Agg | None, b: Agg | None, key: str = "seconds") -> float | None:
        if a is None or b is None:
            return None
        if key == "rss":
            return a.rss / b.rss
        return a.median(key) / b.median(key) if a.has(key) and b.has(key) else None

    def cpu(
        a: Agg | None,
        b: Agg | None,
        ok: Callable[[float], bool],
        fmt: Callable[[float], str] = _x,
    ) -> tuple[float | None, Callable[[float], bool], Callable[[float], str]]:
        """A CPU-time ratio (what the floor judges), shown with the wall-time ratio."""
        value, wall = ratio(a, b, "cpu"), ratio(a, b)
        return value, ok, lambda v: f"{fmt(v)} (wall {fmt(wall) if wall is not None else '–'})"

    n = ref_n(1)
    fj, raw = _find(aggs, 1, "fj.gather", n), _find(aggs, 1, "asyncio.gather", n)
    add(
        1,
        f"`fj.gather`, {n:,} trivial tasks: time ≤ 1.15× raw `asyncio.gather`",
        *cpu(fj, raw, lambda v: v <= 1.15),
    )
    add(
        1,
        f"`fj.gather`, {n:,} trivial tasks: peak RSS ≤ 1.3× raw `asyncio.gather`",
        ratio(fj, raw, "rss"),
        lambda v: v <= 1.3,
        _x,
    )

    for n in get(2).sizes[mode]:
        add(
            2,
            f"`fj.map(limit=100)`, {n:,} trivial tasks: ≤ 1.5× the hand-written pool of 100 "
            "workers",
            *cpu(_find(aggs, 2, "fj.map", n), _find(aggs, 2, "pool", n), lambda v: v <= 1.5),
        )
    n = ref_n(2)
    fjm = _find(aggs, 2, "fj.map", n)
    add(
        2,
        f"… {n:,} trivial tasks: ≤ 0.5× gather + Semaphore",
        *cpu(fjm, _find(aggs, 2, "gather+sem", n), lambda v: v <= 0.5),
    )
    aio = [
        a
        for a in (_find(aggs, 2, "aiometer.run_all", n), _find(aggs, 2, "aiometer.amap", n))
        if a is not None
    ]
    fastest = (
        min(aio, key=lambda a: a.median("cpu" if a.has("cpu") else "seconds")) if aio else None
    )
    faster: Callable[[float], str] = lambda v: f"{v:.1f}× faster"  # noqa: E731
    add(
        2,
        "… ≥ 8× faster than aiometer (its faster entry point)",
        *cpu(fastest, fjm, lambda v: v >= 8, faster),
    )
    add(
        2,
        "… ≥ 40× faster than LangChain `abatch`",
        *cpu(_find(aggs, 2, "langchain", n), fjm, lambda v: v >= 40, faster),
    )

    # timer wake-ups are late on a loaded machine, for every contender alike: the bare pool
    # of the same run on the same loop shows how much of the excess is the machine's, and
    # the floor is what the engine adds to it (in multiples of the ideal)
    w3 = get(3)
    x3: Callable[[float], str] = lambda v: f"{v:.3f}×"  # noqa: E731
    for key, slack in (("fj.map", 0.02), ("fj.gather", 0.03)):
        for n in w3.sizes[mode]:
            ideal = w3.ideal(n) if w3.ideal else 1.0
            excess: float | None = None
            context = ""
            a, pool = _find(aggs, 3, key, n), _find(aggs, 3, "pool", n)
            if a and pool:
                excess = (a.median() - pool.median()) / ideal
                context = f"{x3(a.median() / ideal)} vs bare pool {x3(pool.median() / ideal)}"
            # and the same on a loop whose timeouts are not rounded up to a millisecond
            sel, sel_pool = _find(aggs, 3, key, n, "select"), _find(aggs, 3, "pool", n, "select")
            if sel and sel_pool:
                context += (
                    f"; on a select() loop: {x3(sel.median() / ideal)}, "
                    f"bare pool {x3(sel_pool.median() / ideal)}"
                )
            context = f" ({context.lstrip('; ')})" if context else ""
            add(
                3,
                f"makespan, `{key}(limit=50)`, {n:,} × 10 ms, in × ideal: ≤ the bare pool's "
                f"+ {slack:.2f}",
                excess,
                lambda v, s=slack: v <= s,  # type: ignore[misc]
                lambda v, c=context: f"{v:+.3f}{c}",  # type: ignore[misc]
            )

    sizes = get(4).sizes[mode]
    small, big = min(sizes), max(sizes)
    a_big, a_small = _find(aggs, 4, "fj.imap", big), _find(aggs, 4, "fj.imap", small)
    add(
        4,
        f"`fj.imap` over {big:,} items, limit 100: peak RSS ≤ 60 MB",
        a_big.rss / MB if a_big else None,
        lambda v: v <= 60,
        lambda v: f"{v:.1f} MB",
    )
    add(
        4,
        f"… flat in n: peak RSS at {big:,} ≤ 1.1× at {small:,}",
        ratio(a_big, a_small, "rss"),
        lambda v: v <= 1.1,
        _x,
    )

    n5, n1 = ref_n(5), ref_n(1)
    add(
        5,
        f"policies on, {n5:,} tasks: `fj.gather` ≤ 1.3× its workload-1 time ({n1:,} tasks)",
        *cpu(
            _find(aggs, 5, "fj.gather", n5) if n5 == n1 else None,
            _find(aggs, 1, "fj.gather", n1),
            lambda v: v <= 1.3,
        ),
    )

    w6 = get(6)
    for key in ("fj.map", "fj.gather"):
        for n in w6.sizes[mode]:
            add(
                6,
                f"blocking calls, `{key}`, {n} × `time.sleep(0.01)`: ≤ 1.1× "
                "`ThreadPoolExecutor.map`",
                ratio(_find(aggs, 6, key, n), _find(aggs, 6, "tpe.map", n, "-")),
                lambda v: v <= 1.1,
                _x,
            )

    w7 = get(7)
    rate = w7.params["rate"]
    for n in w7.sizes[mode]:
        a = _find(aggs, 7, "fj.RateLimit", n)
        add(
            7,
            f"rate accuracy, {n} tasks at {rate}/s: worst 1-s window ≤ {rate}",
            a.worst("worst_window") if a else None,
            lambda v: v <= rate,
            lambda v: f"{v:.0f}",
        )
        add(
            7,
            f"… first-second burst ≤ {rate}",
            a.worst("first_window") if a else None,
            lambda v: v <= rate,
            lambda v: f"{v:.0f}",
        )
        add(
            7,
            f"… achieved ≥ 97% of {rate}/s",
            a.median("achieved") / rate if a else None,
            lambda v: v >= 0.97,
            lambda v: f"{v:.1%}",
        )

    for n in get(14).sizes[mode]:
        proc, thread = _find(aggs, 14, "fj.process", n, "-"), _find(aggs, 14, "fj.thread", n, "-")
        add(
            14,
            f'CPU-bound, {n} × 20 ms on 2 workers: `backend="process"` ≥ 1.8× faster than '
            '`backend="thread"`',
            ratio(thread, proc),
            lambda v: v >= 1.8,
            lambda v: f"{v:.2f}× faster",
        )
        add(
            14,
            "… time per task ≤ 1.1× `ProcessPoolExecutor.submit` (same workers)",
            ratio(proc, _find(aggs, 14, "ppe", n, "-")),
            lambda v: v <= 1.1,
            _x,
        )

    w10 = get(15)
    n10 = min(w10.sizes[mode])
    add(
        15,
        f"Dask, {n10:,} trivial calls on 2 workers: `fj.gather` ≤ 1.2× raw `client.submit` + "
        "`as_completed`",
        ratio(_find(aggs, 15, "fj.dask", n10), _find(aggs, 15, "raw", n10)),
        lambda v: v <= 1.2,
        _x,
    )
    sizes10 = [n for n in w10.sizes[mode] if n >= 10_000]
    if len(sizes10) >= 2:
        small10, big10 = min(sizes10), max(sizes10)
        a_big, a_small = (_find(aggs, 15, "fj.map_reduce", big10),
                          _find(aggs, 15, "fj.map_reduce", small10))  # fmt: skip
        add(
            15,
            f"… `fj.map_reduce`, the caller's peak RSS flat in n: at {big10:,} ≤ 1.1× at "
            f"{small10:,}",
            ratio(a_big, a_small, "caller_rss_kb"),
            lambda v: v <= 1.1,
            _x,
        )

    for n in get(8).sizes[mode]:
        add(
            8,
            f"breaker and `max_failures=10` that never trip, {n:,} tasks, limit 100: "
            "≤ 1.1× the same run without them",
            *cpu(
                _find(aggs, 8, "fj.breaker+max_failures", n),
                _find(aggs, 8, "fj.gather", n),
                lambda v: v <= 1.1,
            ),
        )
    sizes = get(4).sizes[mode]
    small, big = min(sizes), max(sizes)
    j_big, j_small = (
        _find(aggs, 4, "fj.imap+journal", big),
        _find(aggs, 4, "fj.imap+journal", small),
    )
    add(
        4,
        f"`fj.imap` with a journal over {big:,} items: peak RSS ≤ 60 MB",
        j_big.rss / MB if j_big else None,
        lambda v: v <= 60,
        lambda v: f"{v:.1f} MB",
    )
    add(
        4,
        f"… flat in n: peak RSS at {big:,} ≤ 1.1× at {small:,}",
        ratio(j_big, j_small, "rss"),
        lambda v: v <= 1.1,
        _x,
    )

    n9 = max(get(9).sizes[mode])
    plain9 = _find(aggs, 9, "fj.gather", n9)
    for key, cap in (("fj.journal", 5.0), ("fj.journal-sync", 25.0)):
        a = _find(aggs, 9, key, n9)
        add(
            9,
            f"`{key}`, {n9:,} trivial tasks: ≤ {cap:g} µs per task more than without a journal",
            a.us_per_task - plain9.us_per_task if a and plain9 else None,
            lambda v, c=cap: v <= c,  # type: ignore[misc]
            lambda v: f"{v:+.2f} µs",
        )
    resumed = _find(aggs, 9, "fj.resume", n9)
    add(
        9,
        f"rerun of {n9:,} finished tasks (all resumed, none called): ≤ 1 s",
        resumed.median() if resumed else None,
        lambda v: v <= 1.0,
        lambda v: f"{v:.3f} s",
    )

    # the shell workloads: whole commands as a shell user runs them, on wall time
    from bench.workloads import w10_shell

    faster: Callable[[float], str] = lambda v: f"{v:.1f}× faster"  # noqa: E731
    for n in get(10).sizes[mode]:
        for command in w10_shell.COMMANDS:
            for jobs in w10_shell.JOBS:
                tail = f"{command}/{jobs}"
                fjm = _find(aggs, 10, f"fj.map/{tail}", n, "-")
                xargs = _find(aggs, 10, f"xargs/{tail}", n, "-")
                par = _find(aggs, 10, f"parallel/{tail}", n, "-")
                add(
                    10,
                    f"`forkjoin map -j {jobs} -- {command}`, {n:,} lines: ≤ 1.2× `xargs -P {jobs}`",
                    ratio(fjm, xargs),
                    lambda v: v <= 1.2,
                    _x,
                )
                add(
                    10,
                    "… ≥ 4× faster than GNU parallel",
                    ratio(par, fjm),
                    lambda v: v >= 4,
                    faster,
                )
    for n in get(11).sizes[mode]:
        add(
            11,
            f"makespan, {n} × `sleep 0.05`, 50 at once: `forkjoin map` ≤ 1.2× `xargs -P 50`",
            ratio(_find(aggs, 11, "fj.map", n, "-"), _find(aggs, 11, "xargs", n, "-")),
            lambda v: v <= 1.2,
            _x,
        )
    for n in get(17).sizes[mode]:
        add(
            17,
            f"`forkjoin map -j 8 -- echo {{}}`, {n:,} lines, two busy processes beside it: "
            "≤ 1.2× `xargs -P 8` beside them",
            ratio(_find(aggs, 17, "fj.map", n, "-"), _find(aggs, 17, "xargs", n, "-")),
            lambda v: v <= 1.2,
            _x,
        )
    for n in get(12).sizes[mode]:
        a = _find(aggs, 12, "fj.map --call", n, "-")
        add(
            12,
            f"`forkjoin map -j 8 --call`, {n:,} lines, start-up included: ≥ 12,500 lines/s",
            n / a.median() if a else None,
            lambda v: v >= 12_500,
            lambda v: f"{v:,.0f} lines/s",
        )
    for key, what in (("version", "--version"), ("help", "--help"), ("map", "map -- true")):
        for n in get(13).sizes[mode]:
            a = _find(aggs, 13, key, n, "-")
            add(
                13,
                f"start-up, `forkjoin {what}`"
                + (" on one line" if key == "map" else "")
                + ": ≤ 0.15 s",
                a.median() if a else None,
                lambda v: v <= 0.15,
                lambda v, a=a: f"{v:.3f} s (CPU {a.median('cpu'):.3f} s)" if a else f"{v:.3f} s",
            )

    for n in get(16).sizes[mode]:
        dag, tasks = _find(aggs, 16, "fj.after.2", n), _find(aggs, 16, "fj.task", n)
        value, ok, fmt = cpu(dag, tasks, lambda v: v <= 1.5)
        tuples = ratio(dag, _find(aggs, 16, "fj.gather", n), "cpu")
        add(
            16,
            f"dependencies, {n:,} trivial tasks in a random DAG (2 each): ≤ 1.5× the same "
            "`fj.task(f, i)` with no dependency",
            value,
            ok,
            lambda v, f=fmt, t=tuples: (
                f(v)
                + (  # type: ignore[misc]
                    f"; {_x(t)} the `(f, i)` tuples of workload 1" if t is not None else ""
                )
            ),
        )
        runs = [_find(aggs, 16, f"fj.after.{d}", n) for d in (2, 8, 32)]
        per_edge: float | None = None
        detail = ""
        if all(a is not None and a.has("cpu") and a.has("edges") for a in runs):
            a2, a8, a32 = (a for a in runs if a is not None)

            def cost(x: Agg, y: Agg) -> float:  # CPU seconds per added edge from x to y
                return (y.median("cpu") - x.median("cpu")) / (y.median("edges") - x.median("edges"))

            low, high = cost(a2, a8), cost(a8, a32)
            per_edge = high / low if low > 0 else None
            detail = f" ({high * 1e6:.2f} µs vs {low * 1e6:.2f} µs per edge)"
        add(
            16,
            f"… linear in the edges, {n:,} tasks: the cost of an edge from degree 8 to 32 ≤ "
            "1.5× its cost from degree 2 to 8",
            per_edge,
            lambda v: v <= 1.5,
            lambda v, d=detail: _x(v) + d,  # type: ignore[misc]
        )
    return res


def floors_table(fl: list[Floor]) -> list[str]:
    out = ["| workload | floor | measured | result |", "| ---: | --- | ---: | --- |"]
    for f in fl:
        verdict = "n/a" if f.passed is None else ("PASS" if f.passed else "**FAIL**")
        out.append(f"| {f.workload} | {f.text} | {f.measured} | {verdict} |")
    return out


def _pct(v: float) -> str:
    return f"{v:+.0%}".replace("-", "−")


# peak RSS often repeats to the kilobyte, so its spread can be 0: below this, a difference
# in RSS is not named (a few hundred kB of code or import is not "more memory")
RSS_NOISE_MIN = 0.02


def _judge(a: Agg, b: Agg, key: str) -> tuple[float, float | None, str | None]:
    """``b`` (the working tree) against ``a`` (the revision) on one figure:
    (b ÷ a, noise, "slower" | "faster" | "within noise").

    noise: the larger of the two spreads (max ÷ min over the repeats) minus 1 (for "rss",
    at least RSS_NOISE_MIN). With a single repeat there is no spread to judge by:
    (b ÷ a, None, None)."""
    rss = key == "rss"
    ratio = b.rss / a.rss if rss else b.median(key) / a.median(key)
    if min(len(a.runs), len(b.runs)) < 2:
        return ratio, None, None
    noise = max(x.spread("rss_peak_kb" if rss else key) for x in (a, b)) - 1
    if rss:
        noise = max(noise, RSS_NOISE_MIN)
    if ratio > 1 + noise:
        return ratio, noise, "slower"
    if ratio < 1 / (1 + noise):
        return ratio, noise, "faster"
    return ratio, noise, "within noise"


def before_after(
    aggs: dict[Config, Agg], ref: str, rev: str, reasons: dict[str, str | None]
) -> list[str]:
    """The --ref section: every forkjoin configuration, at ``ref`` (commit ``rev``) and in
    the working tree; ``reasons``: probe()'s answer, why a contender was not run at ``ref``."""
    cpu_bound = ", ".join(str(w.id) for w in workloads.ALL if w.cpu_bound)
    out = [
        f"## Before/after: `{ref}` → working tree",
        "",
        f"Every forkjoin configuration also ran against src/forkjoin as committed at `{ref}` "
        f"({rev}, exported), in the same passes as the working tree's and next to it (the two "
        "swap places every other pass). The time is the child's CPU time for the CPU-bound "
        f"workloads ({cpu_bound}) and wall time for the others; ratio = working tree ÷ "
        f"`{ref}`, so below 1.00× the working tree is faster. Noise is judged per row: it is "
        "the larger of the two configurations' spreads (max ÷ min of the figure over the "
        "repeats, minus 1); a row says **slower** only when the ratio is above 1 + noise, "
        "faster only when it is below 1 ÷ (1 + noise), and within noise otherwise. Peak RSS "
        "is judged the same way against the spreads of the two RSS figures (taken as at "
        f"least {RSS_NOISE_MIN:.0%}, as RSS often repeats to the kilobyte) and named in the "
        "verdict only when it is beyond them. With a single repeat there is no spread, "
        "hence no verdict.",
        "",
    ]
    tally: dict[str, int] = {}
    body: list[str] = []
    for w in workloads.ALL:
        order = {c.key: i for i, c in enumerate(w.contenders)}
        labels = {c.key: c.label for c in w.contenders}
        fj = {c.key for c in w.contenders if c.is_forkjoin}
        rows = sorted(
            (
                cfg
                for cfg in aggs
                if cfg.workload == w.id and cfg.engine == "tree" and cfg.contender in fj
            ),
            key=lambda c: (c.n, LOOP_ORDER[c.loop], order[c.contender]),
        )
        if not rows:
            continue
        key = "cpu" if w.cpu_bound else "seconds"
        per_task = w.unit == "us"
        unit = f"{'CPU' if w.cpu_bound else 'wall'} {'µs/task' if per_task else 's'}"
        body += [
            f"### {w.id}. {w.title}",
            "",
            f"| n | contender | loop | {unit} at `{ref}` | {unit}, working tree | ratio | "
            f"peak RSS MB at `{ref}` | peak RSS MB, working tree | RSS ratio | verdict |",
            "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for cfg in rows:
            head = f"| {cfg.n:,} | {labels[cfg.contender]} | {cfg.loop} |"
            tree, at_ref = aggs[cfg], aggs.get(_twin(cfg))
            why = None
            if at_ref is None:
                why = f"not run at `{ref}`: {reasons.get(f'{w.id}/{cfg.contender}') or '?'}"
            elif not at_ref.ok:
                why = f"at `{ref}`: " + (
                    f"skipped: {at_ref.skipped}" if at_ref.skipped else "ERROR"
                )
            elif not tree.ok:
                why = "working tree: " + (f"skipped: {tree.skipped}" if tree.skipped else "ERROR")
            if why is not None:
                tally["not compared"] = tally.get("not compared", 0) + 1
                body.append(f"{head} | | | | | | {why} |")
                continue
            assert at_ref is not None
            # a CPU-bound contender that reports no CPU time is compared on wall time
            k = key if at_ref.has(key) and tree.has(key) else "seconds"
            what = "CPU" if k == "cpu" else "wall"
            ratio, noise, verdict = _judge(at_ref, tree, k)
            rss_ratio, rss_noise, rss_verdict = _judge(at_ref, tree, "rss")
            if verdict is None or noise is None:
                words = "no verdict (1 repeat)"
            elif verdict == "within noise":
                words = f"within noise ({what} {_pct(ratio - 1)}, noise {noise:.0%})"
            else:
                bold = "**" if verdict == "slower" else ""
                words = f"{bold}{verdict}{bold}: {what} {_pct(ratio - 1)}, noise {noise:.0%}"
            if rss_verdict in ("slower", "faster") and rss_noise is not None:
                more = "more" if rss_verdict == "slower" else "less"
                words += f"; {more} memory: RSS {_pct(rss_ratio - 1)}, noise {rss_noise:.0%}"
            tally[verdict or "no verdict"] = tally.get(verdict or "no verdict", 0) + 1

            a_fig, t_fig = (
                f"{a.median(k) / cfg.n * 1e6:.2f}" if per_task else f"{a.median(k):.3f}"
                for a in (at_ref, tree)
            )
            body.append(
                f"{head} {a_fig} | {t_fig} | {_x(ratio)} | {_mb(at_ref.rss)} | "
                f"{_mb(tree.rss)} | {_x(rss_ratio)} | {words} |"
            )
        body.append("")
    kinds = ("slower", "faster", "within noise", "no verdict", "not compared")
    summary = "; ".join(f"{k}: {tally[k]}" for k in kinds if tally.get(k))
    return [*out, f"Rows — {summary or 'none'}.", "", *body]


def render(
    mode: str,
    command: str,
    info: dict[str, str],
    repeats: dict[int, int],
    aggs: dict[Config, Agg],
    notes: list[str],
    elapsed: float,
    ref: tuple[str, dict[str, str | None]] | None = None,
) -> str:
    """The markdown report; ``ref``: --ref's revision and probe()'s answer, if given."""
    chosen = sorted({a.config.workload for a in aggs.values()})
    reps = ", ".join(f"w{w}: {repeats[w]}" for w in chosen)
    out = [
        "# forkjoin benchmark results",
        "",
        "Written by `bench/run.py`; method in its docstring. Every configuration ran in a "
        "fresh subprocess; figures are medians over the repeats; ratios are to the "
        "workload's baseline measured in the same run (the machine is shared and noisy: "
        "absolute figures drift, ratios hold). Peak RSS is the subprocess's own "
        "`ru_maxrss` (interpreter and imports included); ΔRSS is what the timed workload "
        "added to it. CPU µs/task is the child's own CPU time (`time.process_time`) over the "
        "same timed region.",
        "",
        f"- command: `{command}`",
        f"- machine: {info['cores']} cores ({info['cpu']}), {info['python']}, {info['os']}",
        f"- date: {info['date']}; forkjoin: {info['forkjoin']}",
        *([f"- before/after against: {info['ref']}"] if "ref" in info else []),
        f"- peers: {info['peers']}",
        f"- repeats per configuration: {reps}; load average at the start: {info['load']}; "
        f"the run took {elapsed / 60:.1f} min",
        "",
    ]
    if mode == "quick":
        out += [
            "> `--quick`: tiny sizes and one repeat — a smoke test of the harness, "
            "not a measurement.",
            "",
        ]
    out += [
        "## Floors (stock asyncio loop, working tree)",
        "",
        "Time floors of the CPU-bound workloads (1, 2, 5, 8, 9) are judged on the child's CPU "
        "time, which other processes on this shared machine disturb far less than wall time; "
        "the wall-time ratio is shown beside it.",
        "",
        *floors_table(floors(aggs, mode)),
        "",
    ]
    ref_name = ref[0] if ref is not None else None
    if ref is not None:
        out += before_after(aggs, ref[0], info.get("ref_rev", ref[0]), ref[1])
    out += ["## Results", ""]
    if ref is not None:
        out += [
            f"Rows marked @ `{ref_name}` ran against that revision's src/forkjoin; the "
            "others against the working tree.",
            "",
        ]
    for w in workloads.ALL:
        out += workload_table(w, aggs, ref_name)
    errors = [a for a in aggs.values() if a.errors]
    if notes or errors:
        out += ["## Notes", ""]
        out += [f"- {n}" for n in notes]
        for a in errors:
            first = a.errors[0].splitlines()[0]
            at = f" at `{ref_name}`" if a.config.engine == "ref" else ""
            out.append(
                f"- ERROR in workload {a.config.workload}, {a.config.contender}{at}, "
                f"n={a.config.n}, {a.config.loop}: {first}"
            )
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--quick",
        action="store_const",
        dest="mode",
        const="quick",
        help="tiny sizes, one repeat: a smoke test (the default)",
    )
    g.add_argument(
        "--full",
        action="store_const",
        dest="mode",
        const="full",
        help="the real sizes and repeats (about 20 minutes on 2 cores)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="markdown file to write (default: bench/RESULTS.md "
        "for --full; --quick prints only, unless given)",
    )
    p.add_argument("--workloads", help="comma-separated workload numbers (default: all)")
    p.add_argument("--only", help="only contenders whose key contains this (plus baselines)")
    p.add_argument("--repeats", type=int, help="repeats per configuration (overrides)")
    p.add_argument("--jobs", type=int, help="configurations run at once (quick: 2, full: 1)")
    p.add_argument("--no-uvloop", action="store_true", help="skip the uvloop variants")
    p.add_argument("--timeout", type=float, help="seconds before a configuration counts as hung")
    p.add_argument(
        "--ref",
        metavar="REV",
        help="also measure forkjoin as committed at this git revision (e.g. HEAD): every "
        "forkjoin contender runs against both, interleaved, and a before/after section "
        "compares them (the floors are judged on the working tree)",
    )
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--probe", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        return child(args.child)
    if args.probe is not None:
        return probe(args.probe)
    mode = args.mode or "quick"
    try:
        ids = [int(x) for x in args.workloads.split(",")] if args.workloads else None
        chosen = [workloads.get(i) for i in ids] if ids else list(workloads.ALL)
    except (ValueError, KeyError):
        p.error(
            f"--workloads: expected numbers from 1 to {len(workloads.ALL)}, got {args.workloads!r}"
        )
    if args.repeats is not None and args.repeats < 1:
        p.error("--repeats must be >= 1")
    repeats = {w.id: args.repeats or w.repeats[mode] for w in chosen}
    jobs = args.jobs or (2 if mode == "quick" else 1)
    timeout = args.timeout or (120.0 if mode == "quick" else 900.0)
    out = args.out if args.out is not None else (RESULTS if mode == "full" else None)

    notes: list[str] = []
    ref: tuple[str, dict[str, str | None]] | None = None
    if args.ref is not None:
        try:
            SRCS["ref"] = export_revision(args.ref)
            # which forkjoin contenders that revision can run ("has it a RateLimit?"): asked
            # of its own forkjoin, in a child; this process imports the working tree's
            ref = (args.ref, probe_ref(chosen))
        except (OSError, subprocess.SubprocessError, RuntimeError, ValueError) as e:
            _drop_export()
            p.error(f"--ref {args.ref}: {e}")
    info = machine(args.ref)
    configs = plan(mode, chosen, args.only, not args.no_uvloop, notes, ref)
    command = ".venv/bin/python -m bench " + " ".join(argv) if argv else ".venv/bin/python -m bench"
    print(
        f"{len(configs)} configurations, {sum(repeats[c.workload] for c in configs)} runs "
        f"({mode}, {jobs} at a time)",
        flush=True,
    )
    t0 = time.monotonic()

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        aggs = execute(configs, repeats, jobs, timeout, progress=True)
    finally:
        for proc in list(_LIVE):  # only with --jobs > 1: other threads' children
            proc.kill()
        _drop_export()
    text = render(mode, command, info, repeats, aggs, notes, time.monotonic() - t0, ref)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        raw = {
            f"w{c.workload}/{c.contender}/{c.n}/{c.loop}" + ("/ref" if c.engine == "ref" else ""): (
                asdict(a)
            )
            for c, a in aggs.items()
        }
        out.with_suffix(".json").write_text(
            json.dumps({"machine": info, "results": raw}, indent=1, default=str)
        )
        print(f"wrote {out}")
    else:
        print(text)
    failed = [a for a in aggs.values() if a.errors]
    for a in failed:
        at = f" at {args.ref}" if a.config.engine == "ref" else ""
        print(
            f"ERROR w{a.config.workload} {a.config.contender}{at} n={a.config.n} "
            f"{a.config.loop}:\n{a.errors[0]}",
            file=sys.stderr,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
