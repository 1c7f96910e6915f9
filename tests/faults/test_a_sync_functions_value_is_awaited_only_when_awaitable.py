"""Guarantee: a sync function's return value is its value, whatever it is, unless it is
an awaitable (a coroutine, an object with ``__await__``, a ``types.coroutine``
generator), which is awaited. A plain generator or an async generator is never mistaken
for a coroutine: it is the task's value, the same object, wherever the call ran.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

import pytest

import forkjoin as fj


def _numbers() -> Iterator[int]:
    yield 1


async def _async_numbers() -> AsyncIterator[int]:
    yield 1


async def _coroutine() -> str:
    return "awaited coroutine"


class _Awaitable:
    def __await__(self) -> Generator[Any, None, str]:
        return _coroutine().__await__()


@types.coroutine
def _generator_coroutine() -> Generator[Any, None, str]:
    yield from asyncio.sleep(0).__await__()
    return "awaited generator-based coroutine"


KEPT = {
    "generator": _numbers,
    "async generator": _async_numbers,
    "list": lambda: [1, 2],
    "iterator": lambda: iter([1]),
}
AWAITED = {
    "coroutine": (_coroutine, "awaited coroutine"),
    "awaitable": (_Awaitable, "awaited coroutine"),
    "generator-based coroutine": (_generator_coroutine, "awaited generator-based coroutine"),
}


def _returning(value: Any) -> Any:
    def sync() -> Any:
        return value

    return sync


@pytest.mark.parametrize("backend", [None, "loop", "thread"], ids=["default", "loop", "thread"])
def test_gather_keeps_a_returned_generator_and_awaits_an_awaitable(backend: str | None) -> None:
    async def main() -> tuple[dict[str, Any], fj.Results]:
        made = {name: make() for name, make in KEPT.items()}
        tasks = {name: fj.task(_returning(v), backend=backend) for name, v in made.items()}
        for name, (make, _) in AWAITED.items():
            tasks[name] = fj.task(_returning_new(make), backend=backend)
        return made, await fj.gather(tasks)

    made, results = asyncio.run(main())
    for name, value in made.items():
        assert results[name].ok, results[name]
        assert results[name].value is value  # the very object the function returned
    for name, (_, expected) in AWAITED.items():
        assert results[name].value == expected


def _returning_new(make: Any) -> Any:
    def sync() -> Any:
        return make()  # made in the call: a coroutine is awaited once

    return sync


def test_map_and_run_keep_a_returned_generator() -> None:
    gens = [_numbers() for _ in range(3)]
    values = asyncio.run(fj.map(lambda i: gens[i], range(3)))
    assert all(v is g for v, g in zip(values, gens, strict=True))
    results = fj.run({"g": _returning(gens[0]), "c": _returning_new(_coroutine)})
    assert results["g"].value is gens[0]
    assert results["c"].value == "awaited coroutine"
