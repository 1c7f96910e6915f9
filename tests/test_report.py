"""RunReport: every figure derived from the run's outcomes, and back from its JSON."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import forkjoin as fj
from forkjoin._outcome import Attempt, Outcome, Results, RunInfo, Status
from forkjoin._report import RunReport, TaskRow, _packed_makespan, concurrency_steps


async def _sleep(d: float, fail: bool = False) -> float:
    await asyncio.sleep(d)
    if fail:
        raise ValueError("boom")
    return d


def _equal_tasks(vrun: Any, n: int, limit: int) -> fj.Results:
    return vrun(fj.gather({f"t{i}": (_sleep, 1.0) for i in range(n)}, limit=limit))  # type: ignore[no-any-return]


def test_equal_tasks_under_a_limit(vrun: Any) -> None:
    rep = _equal_tasks(vrun, 10, 3).report
    assert rep.wall == pytest.approx(4.0)
    assert rep.total_duration == pytest.approx(10.0)
    assert rep.speedup == pytest.approx(2.5)
    # 10 equal tasks under limit 3 can finish no sooner than ceil(10/3) = 4 lengths
    assert rep.ideal_speedup == pytest.approx(2.5)
    assert rep.peak_concurrency == 3
    assert rep.mean_concurrency == pytest.approx(2.5)
    assert rep.utilisation == pytest.approx(2.5 / 3)
    assert rep.time_saved == pytest.approx(6.0)
    assert rep.counts == {"ok": 10}
    # the tail: the one task of the last round sets the wall time
    assert [n for n, _ in rep.stragglers] == ["t9"]
    assert rep.tail_start == pytest.approx(3.0)


def test_ideal_speedup_shows_a_badly_packed_run() -> None:
    assert _packed_makespan([1.0] * 10, 3) == 4.0
    assert _packed_makespan([3.0, 1.0, 1.0, 1.0], 2) == 3.0
    assert _packed_makespan([2.0, 1.0], None) == 2.0
    assert _packed_makespan([], 4) == 0.0


def test_counts_reasons_retries_cost_and_groups(vrun: Any) -> None:
    async def main() -> fj.Results:
        return await fj.gather(
            {
                "a": fj.task(_sleep, 1.0, group="search", cost=0.5),
                "b": fj.task(_sleep, 2.0, group="search", cost=0.25),
                "c": fj.task(_sleep, 1.0, True, cost=1.0, retry=fj.Retry(attempts=3, backoff=0)),
                "slow": fj.task(_sleep, 50.0),
            },
            limits={"search": 1},
            deadline=10,
        )

    rep = vrun(main()).report
    assert rep.counts == {"ok": 2, "failed": 1, "timed_out": 1}
    assert rep.reasons == {"deadline": 1}
    assert rep.attempts == 6
    assert rep.retries == 2
    assert rep.cost == pytest.approx(1.75)
    assert rep.cost_by_group == {"search": 0.75, "": 1.0}
    assert rep.groups["search"]["limit"] == 1
    assert rep.groups["search"]["peak"] == 1
    assert rep.groups["search"]["mean"] == pytest.approx(3.0 / 10)
    assert rep.groups["search"]["utilisation"] == pytest.approx(0.3)
    assert rep.slowest[0] == ("slow", pytest.approx(10.0))
    row = rep.task("c")
    assert [c.error for c in row.calls] == ["ValueError: boom"] * 3
    assert row.error == "ValueError: boom"
    text = str(rep)
    assert "sequential would cost the same $1.7500" in text
    assert "search $0.7500" in text
    assert "1 retries" not in text
    assert "2 retries" in text


def test_hedges_fallbacks_and_budget_read_from_outcomes() -> None:
    # written by the resilience policies when they run; the report only reads them
    outcomes = {
        "h": Outcome(
            "h",
            Status.OK,
            1,
            None,
            None,
            2,
            0.0,
            1.0,
            0.2,
            None,
            0,
            (Attempt(1, 0.0, 1.0), Attempt(2, 0.5, 0.8, None, True)),
        ),
        "f": Outcome("f", Status.OK, 2, None, None, 1, 0.0, 0.5, None, None, 1, (), True),
        "s": Outcome("s", Status.SKIPPED, None, fj.TaskSkipped("budget"), "budget", index=2),
    }
    info = RunInfo(wall=1.0, started_at=0.0, policies={"budget": {"usd": 0.25}})
    rep = Results(outcomes, info).report
    assert rep.hedged == 1
    assert rep.retries == 0
    assert rep.fallbacks == 1
    assert rep.budget == 0.25
    assert rep.skipped_for_budget == ["s"]
    d = rep.to_dict()
    assert d["cost"]["budget"] == 0.25
    assert d["cost"]["skipped_for_budget"] == ["s"]
    assert d["rows"][0]["calls"][1]["hedge"] is True
    assert "1 hedged" in str(rep)
    assert "1 fallback" in str(rep)
    assert "1 fallbacks" not in str(rep)
    assert "skipped 1: s" in str(rep)


def test_dict_round_trip_and_schema(vrun: Any, tmp_path: Path) -> None:
    async def main() -> fj.Results:
        return await fj.gather(
            {
                "x": fj.task(_sleep, 1.0, True, retry=fj.Retry(attempts=2, backoff=0)),
                "y": fj.task(_sleep, 2.0, group="g", cost=0.1),
            },
            limit=2,
        )

    rep = vrun(main()).report
    d = rep.to_dict()
    assert d["version"] == 3
    assert set(d) >= {
        "wall",
        "total_duration",
        "speedup",
        "ideal_speedup",
        "time_saved",
        "peak_concurrency",
        "mean_concurrency",
        "limit",
        "limits",
        "utilisation",
        "groups",
        "tasks",
        "counts",
        "reasons",
        "attempts",
        "retries",
        "hedged",
        "fallbacks",
        "cost",
        "slowest",
        "tail",
        "rows",
    }
    json.dumps(d, allow_nan=False)  # plain JSON
    again = RunReport.from_dict(json.loads(rep.to_json()))
    assert again.to_dict() == d
    assert str(again) == str(rep)
    path = rep.save(tmp_path / "run.json")
    assert RunReport.load(path).to_dict() == d


def test_values_and_arguments_never_reach_the_report(vrun: Any) -> None:
    async def secret(token: str) -> str:
        return token.upper()

    rep = vrun(fj.gather({"s": (secret, "s3cret-arg")})).report
    text = rep.to_json() + str(rep) + rep.to_html()
    assert "s3cret" not in text.lower()


def test_from_dict_reads_version_1_summaries() -> None:
    v1 = {
        "version": 1,
        "wall": 2.0,
        "total_duration": 3.0,
        "speedup": 1.5,
        "tasks": 2,
        "counts": {"ok": 2},
        "slowest": [{"name": "a", "duration": 2.0}],
        "cost": 0.5,
    }
    rep = RunReport.from_dict(v1)
    assert rep.wall == 2.0
    assert rep.cost == 0.5
    assert rep.slowest == [("a", 2.0)]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "expected a JSON object"),
        ({"version": 9}, "unsupported schema version 9"),
        ({"version": 2, "rows": [{"name": "a"}]}, "report.rows[0]"),
        ({"version": 2, "rows": [{"name": "a", "status": "ok", "started": "x"}]}, "bad field"),
    ],
)
def test_bad_documents_say_where(doc: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        RunReport.from_dict(doc)


def test_load_of_a_non_json_file_names_it(tmp_path: Path) -> None:
    p = tmp_path / "bad.json"
    p.write_text("{nope")
    with pytest.raises(ValueError, match=r"bad\.json: not JSON"):
        RunReport.load(p)


def test_rich_and_plain_rendering(vrun: Any) -> None:
    rep = _equal_tasks(vrun, 4, 2).report
    plain = rep.render(terminal=False)
    assert plain.startswith("tasks        4 (ok 4)")
    assert "\x1b[" not in plain
    fancy = rep.render(terminal=True, width=100)
    assert "\x1b[" in fancy
    assert "speedup" in fancy
    assert "2.00x" in fancy


def test_empty_run_report(vrun: Any) -> None:
    rep = vrun(fj.gather({})).report
    assert rep.tasks == 0
    assert rep.speedup == 0.0
    assert rep.stragglers == []
    assert RunReport.from_dict(rep.to_dict()).to_dict() == rep.to_dict()


intervals_st = st.lists(
    st.tuples(st.integers(0, 50), st.integers(1, 20)).map(lambda p: (p[0], p[0] + p[1])),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(intervals_st)
def test_concurrency_steps_match_brute_force(intervals: list[tuple[int, int]]) -> None:
    steps = concurrency_steps([(float(s), float(e)) for s, e in intervals])
    for t in range(0, 72):
        x = t + 0.5
        expect = sum(1 for s, e in intervals if s <= x < e)
        got = 0
        for st_, n in steps:
            if st_ <= x:
                got = n
        assert got == expect


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0.1, 10.0), min_size=1, max_size=20),
    st.integers(1, 6),
)
def test_ideal_speedup_never_beats_the_bounds(durations: list[float], limit: int) -> None:
    rows = [TaskRow(f"t{i}", "ok", started=0.0, ended=d) for i, d in enumerate(durations)]
    rep = RunReport.from_rows(rows, wall=sum(durations), limit=limit)
    assert rep.ideal_speedup <= min(limit, len(durations)) + 1e-9
    assert rep.ideal_speedup >= 1.0 - 1e-9


def test_resilience_policies_in_a_real_run(vrun: Any) -> None:
    calls = {"n": 0}

    async def hedged() -> int:
        calls["n"] += 1
        await asyncio.sleep(5 if calls["n"] == 1 else 1)
        return calls["n"]

    async def broken() -> str:
        raise ConnectionError("down")

    async def cached() -> str:
        return "cached"

    async def main() -> fj.Results:
        return await fj.gather(
            {
                "h": fj.task(hedged, hedge=fj.Hedge(after=0.5), idempotent=True, cost=0.1),
                "f": fj.task(broken, fallback=cached, cost=0.1),
                "a": fj.task(_sleep, 1.0, cost=0.5),
                "b": fj.task(_sleep, 1.0, cost=0.5),
            },
            budget=fj.Budget(usd=0.75),
            limit=1,
        )

    rep = vrun(main()).report
    assert rep.hedged == 1
    assert rep.retries == 0
    assert rep.fallbacks == 1
    assert rep.budget == 0.75
    assert rep.skipped_for_budget == ["a", "b"]
    assert rep.options["budget"]["skipped"] == 2
    hedge_calls = [c for c in rep.task("h").calls if c.hedge]
    assert len(hedge_calls) == 1
    text = str(rep)
    assert "1 hedged" in text
    assert "budget       $0.7500, spent $0.3000; skipped 2: a, b" in text
    assert RunReport.from_dict(rep.to_dict()).to_dict() == rep.to_dict()


def test_the_call_a_deadline_cut_is_a_row_of_its_own(vrun: Any) -> None:
    async def main() -> fj.Results:
        return await fj.gather(
            {"t": fj.task(_sleep, 1.0, True, retry=fj.Retry(attempts=3, backoff=0))},
            deadline=1.5,
        )

    row = vrun(main()).report.task("t")
    assert row.status == "timed_out"
    assert [c.number for c in row.calls] == [1, 2]
    assert row.calls[0].error == "ValueError: boom"
    assert row.calls[1].error is not None
    assert row.calls[1].error.startswith("TaskTimeout")
    assert (row.calls[1].started, row.calls[1].ended) == (pytest.approx(1.0), pytest.approx(1.5))
