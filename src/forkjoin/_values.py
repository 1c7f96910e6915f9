"""Value classes whose methods are written out rather than generated at import.

``@dataclass`` writes each class's ``__init__``, ``__repr__`` and ``__eq__`` (frozen:
``__setattr__`` and ``__delattr__`` too) as source and compiles it when the module is
imported: 0.5 to 1.3 ms a class, 28 ms of a one-line ``forkjoin map``'s 150 ms start-up for
its 23 classes (bench workload 13, on a slow day). The classes that every run imports are
still dataclasses -- ``@dataclass(slots=True, init=False, repr=False, eq=False)`` only reads
their fields (so ``dataclasses.fields``, ``asdict`` and ``replace`` work) and makes their
slots, at a tenth of the cost -- with their ``__init__`` written in the class and the rest
taken from the bases here, which behave as ``@dataclass`` would (``tests/test_values.py``
holds each class to the dataclass it stands for).

:data:`FACTORY` is the default of a field with a ``default_factory``: the ``__init__``
calls the factory when it is given nothing else; a frozen class's ``__init__`` sets each
field with :func:`set_field`.
"""

from __future__ import annotations

import reprlib
from dataclasses import FrozenInstanceError, fields
from typing import Any

__all__ = ["FACTORY", "Frozen", "FrozenValue", "Value", "set_field"]

# how a frozen value's __init__ sets its fields: past its own __setattr__, as @dataclass does
set_field = object.__setattr__

FACTORY: Any = type("_Factory", (), {"__repr__": lambda self: "<factory>"})()


def _values(obj: Any) -> tuple[Any, ...]:
    return tuple(getattr(obj, f.name) for f in fields(obj) if f.compare)


def _frozen(obj: Any, name: str) -> bool:
    return "__dataclass_fields__" in type(obj).__dict__ or name in obj.__dataclass_fields__


class _Shown:
    __slots__ = ()

    @reprlib.recursive_repr()
    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)  # type: ignore[arg-type]
        return f"{type(self).__qualname__}({shown})"


class Value(_Shown):
    """A mutable value: equal to another of its class with equal fields, not hashable
    (``@dataclass``)."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return _values(self) == _values(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


class Frozen(_Shown):
    """A frozen value compared by identity (``@dataclass(frozen=True, eq=False)``); its
    ``__init__`` sets its fields with ``object.__setattr__``."""

    __slots__ = ()

    # as @dataclass's: frozen are the fields, and every attribute of an instance of the
    # dataclass itself; a subclass that is not a dataclass may set attributes of its own
    def __setattr__(self, name: str, value: Any) -> None:
        if _frozen(self, name):
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if _frozen(self, name):
            raise FrozenInstanceError(f"cannot delete field {name!r}")
        object.__delattr__(self, name)

    # pickled by its fields (slots, no __dict__; unpickling cannot go through __setattr__)
    def __getstate__(self) -> list[Any]:
        return [getattr(self, f.name) for f in fields(self)]  # type: ignore[arg-type]

    def __setstate__(self, state: list[Any]) -> None:
        for f, value in zip(fields(self), state, strict=True):  # type: ignore[arg-type]
            object.__setattr__(self, f.name, value)


class FrozenValue(Frozen):
    """A frozen value, equal to another of its class with equal fields and hashed by them
    (``@dataclass(frozen=True)``)."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return _values(self) == _values(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(_values(self))
