"""Results, Outcome and RunReport: the keyed, read-only view of a run."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Mapping

import pytest

import forkjoin as fj


async def value_after(value: object, seconds: float) -> object:
    await asyncio.sleep(seconds)
    return value


async def fail_after(error: Exception, seconds: float) -> None:
    await asyncio.sleep(seconds)
    raise error


@pytest.fixture
def mixed(vrun) -> fj.Results:
    async def main() -> fj.Results:
        return await fj.gather(
            {
                "z": (value_after, "Z", 3),
                "broken": (fail_after, ConnectionError("down"), 1),
                "a": (value_after, "A", 2),
                "late": (value_after, "L", 100),
                "never": (value_after, "N", 1),
            },
            limit=4,
            deadline=10,
        )

    return vrun(main())


def test_results_is_a_mapping_in_added_order(mixed: fj.Results) -> None:
    assert isinstance(mixed, Mapping)
    assert list(mixed) == ["z", "broken", "a", "late", "never"]
    assert list(mixed.keys()) == list(mixed)
    assert all(isinstance(o, fj.Outcome) for o in mixed.values())
    assert [n for n, o in mixed.items() if o.name != n] == []
    assert len(mixed) == 5
    assert "a" in mixed
    assert "nope" not in mixed
    with pytest.raises(KeyError):
        mixed["nope"]
    assert mixed.get("nope") is None


def test_results_are_read_only(mixed: fj.Results) -> None:
    with pytest.raises(TypeError):
        mixed["a"] = mixed["z"]  # type: ignore[index]
    with pytest.raises(TypeError):
        del mixed["a"]  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        mixed.extra = 1  # type: ignore[attr-defined]
    o = mixed["a"]
    with pytest.raises(AttributeError):
        o.value = "changed"  # type: ignore[misc]
    # what the accessors return are copies: changing them does not change the results
    mixed.ok_values()["a"] = "changed"
    mixed.failures().clear()
    assert mixed["a"].value == "A"
    assert len(mixed.failures()) == 2


def test_ok_values_failures_all_ok(mixed: fj.Results) -> None:
    assert mixed.ok_values() == {"z": "Z", "a": "A", "never": "N"}
    failures = mixed.failures()
    assert list(failures) == ["broken", "late"]
    assert failures["late"].status is fj.Status.TIMED_OUT
    assert not mixed.all_ok
    assert mixed.counts() == {"ok": 3, "failed": 1, "timed_out": 1}


def test_raise_for_failures_is_an_exception_group_with_results(mixed: fj.Results) -> None:
    with pytest.raises(fj.FanError) as info:
        mixed.raise_for_failures()
    err = info.value
    assert isinstance(err, ExceptionGroup)
    assert err.results is mixed
    assert len(err.exceptions) == 2
    assert "broken" in str(err)


def test_fan_error_works_with_except_star(mixed: fj.Results) -> None:
    caught: dict[str, object] = {}
    try:
        mixed.raise_for_failures()
    except* ConnectionError as group:
        caught["conn"] = group
    except* TimeoutError as group:
        caught["timeout"] = group
    assert set(caught) == {"conn", "timeout"}
    conn = caught["conn"]
    assert isinstance(conn, fj.FanError)
    assert conn.results is mixed  # split groups keep the results
    assert isinstance(conn.exceptions[0], ConnectionError)


def test_fan_error_pickles_with_its_results(mixed: fj.Results) -> None:
    with pytest.raises(fj.FanError) as info:
        mixed.raise_for_failures()
    again = pickle.loads(pickle.dumps(info.value))
    assert isinstance(again, fj.FanError)
    assert list(again.results) == list(mixed)


def test_all_ok_run_does_not_raise(vrun) -> None:
    results = vrun(fj.gather({"a": (value_after, 1, 1)}))
    results.raise_for_failures()
    assert results.all_ok


def test_skipped_tasks_are_in_the_fan_error(vrun) -> None:
    async def main() -> fj.Results:
        return await fj.gather(
            {f"t{i}": (value_after, i, 5) for i in range(3)}, limit=1, deadline=1
        )

    results = vrun(main())
    with pytest.raises(fj.FanError) as info:
        results.raise_for_failures()
    kinds = sorted(type(e).__name__ for e in info.value.exceptions)
    assert kinds == ["TaskSkipped", "TaskSkipped", "TaskTimeout"]


def test_outcome_fields_and_unwrap(mixed: fj.Results) -> None:
    a = mixed["a"]
    assert a.ok
    assert a.unwrap() == "A"
    assert a.started == 0.0
    assert a.ended == 2.0
    assert a.duration == 2.0
    assert a.attempts == 1
    assert a.index == 2
    assert a.cost is None
    broken = mixed["broken"]
    with pytest.raises(ConnectionError):
        broken.unwrap()
    never = mixed["never"]
    assert never.started == 1.0  # admitted when "broken" freed its slot
    assert "status='failed'" in repr(broken)
    assert "value='A'" in repr(a)


def test_cost_is_carried(vrun) -> None:
    results = vrun(fj.gather({"a": fj.task(value_after, 1, 1, cost=0.25)}))
    assert results["a"].cost == 0.25
    assert results.report.cost == 0.25


def test_report_on_a_virtual_clock(vrun) -> None:
    async def main() -> fj.Results:
        return await fj.gather({f"t{i}": (asyncio.sleep, 1) for i in range(4)}, limit=2)

    report = vrun(main()).report
    assert report.wall == 2.0
    assert report.total_duration == 4.0
    assert report.speedup == 2.0
    assert report.peak_concurrency == 2
    assert report.tasks == 4
    assert report.counts == {"ok": 4}
    assert report.attempts == 4
    assert report.retries == 0
    assert report.to_dict()["speedup"] == 2.0
    assert "speedup      2.00x" in str(report)


def test_report_counts_reasons_and_excludes_unstarted(mixed: fj.Results) -> None:
    report = mixed.report
    assert report.wall == 10.0
    # z 3 + broken 1 + a 2 + late 10 + never 1
    assert report.total_duration == 17.0
    assert report.peak_concurrency == 4
    assert report.reasons == {"deadline": 1}
    assert report.slowest[0] == ("late", 10.0)


def test_report_of_unlimited_run(vrun) -> None:
    async def main() -> fj.Results:
        return await fj.gather({f"t{i}": (asyncio.sleep, i + 1) for i in range(3)})

    report = vrun(main()).report
    assert report.wall == 3.0
    assert report.total_duration == 6.0
    assert report.speedup == 2.0
    assert report.peak_concurrency == 3
