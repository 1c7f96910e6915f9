"""Bad input gets one clear error naming the field; the error classes form one tree."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import forkjoin as fj


async def noop() -> None:
    await asyncio.sleep(0)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"limit": -1}, "limit"),
        ({"limit": 0}, "limit"),
        ({"limit": 1.5}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": "10"}, "limit"),
        ({"limits": {"g": 0}}, "limits"),
        ({"limits": {"g": -3}}, "limits"),
        ({"limits": {1: 2}}, "limits"),
        ({"limits": [("g", 2)]}, "limits"),
        ({"deadline": 0}, "deadline"),
        ({"deadline": -1}, "deadline"),
        ({"deadline": float("nan")}, "deadline"),
        ({"deadline": "10"}, "deadline"),
        ({"timeout": 0}, "timeout"),
        ({"on_error": "ignore"}, "on_error"),
        ({"on_error": None}, "on_error"),
        ({"quorum": 0}, "quorum"),
        ({"quorum": True}, "quorum"),
        ({"retry": 3}, "retry"),
    ],
)
def test_invalid_run_options(options: dict[str, Any], field: str) -> None:
    with pytest.raises(fj.InvalidPolicy, match=field) as info:
        fj.Fan(**options)
    message = str(info.value)
    assert "\n" not in message
    assert field in message.split(":")[0]

    calls: list[int] = []

    async def counted() -> None:
        calls.append(1)

    async def main() -> None:
        await fj.gather({"a": counted}, **options)

    with pytest.raises(fj.InvalidPolicy, match=field):
        asyncio.run(main())
    with pytest.raises(fj.InvalidPolicy, match=field):
        fj.run({"a": counted}, **options)
    assert calls == []  # nothing ran: no partial side effects


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"timeout": 0}, "timeout"),
        ({"timeout": -2}, "timeout"),
        ({"priority": "high"}, "priority"),
        ({"group": 3}, "group"),
        ({"cost": -1}, "cost"),
        ({"retry": "yes"}, "retry"),
    ],
)
def test_invalid_task_options(options: dict[str, Any], field: str) -> None:
    with pytest.raises(fj.InvalidPolicy, match=field):
        fj.task(noop, **options)


def test_quorum_more_than_tasks() -> None:
    async def main() -> None:
        await fj.gather({"a": noop, "b": noop}, quorum=3)

    with pytest.raises(fj.InvalidPolicy, match=r"quorum: 3 .* 2 tasks"):
        asyncio.run(main())


def test_bad_task_specs_are_type_errors_naming_the_task() -> None:
    async def main(tasks: Any) -> None:
        await fj.gather(tasks)

    with pytest.raises(TypeError, match=r"tasks\['x'\]"):
        asyncio.run(main({"x": 42}))
    with pytest.raises(TypeError, match=r"tasks\['x'\]"):
        asyncio.run(main({"x": ()}))
    with pytest.raises(TypeError, match="names must be strings"):
        asyncio.run(main({1: noop}))
    with pytest.raises(TypeError, match="callable"):
        fj.task(42)  # type: ignore[arg-type]


def test_duplicate_name_and_fan_closed() -> None:
    async def main() -> None:
        async with fj.Fan() as fan:
            fan.spawn("x", noop)
            with pytest.raises(fj.DuplicateTaskName, match="'x'"):
                fan.spawn("x", noop)
        with pytest.raises(fj.FanClosed, match="ended"):
            fan.spawn("y", noop)

    asyncio.run(main())


def test_error_hierarchy() -> None:
    for cls in (
        fj.InvalidPolicy,
        fj.DuplicateTaskName,
        fj.FanClosed,
        fj.TaskTimeout,
        fj.TaskCancelled,
        fj.TaskSkipped,
    ):
        assert issubclass(cls, fj.ForkjoinError)
    assert issubclass(fj.InvalidPolicy, ValueError)
    assert issubclass(fj.DuplicateTaskName, ValueError)
    assert issubclass(fj.FanClosed, RuntimeError)
    assert issubclass(fj.TaskTimeout, TimeoutError)
    assert issubclass(fj.FanError, ExceptionGroup)
    assert issubclass(fj.Interrupted, KeyboardInterrupt)
    assert fj.TaskSkipped("deadline").reason == "deadline"
    assert fj.TaskCancelled("quorum").reason == "quorum"
