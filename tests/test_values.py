"""The value classes with written-out methods (forkjoin._values) behave as the dataclass
each stands for: the same ``__init__``, repr, equality, hashing, freezing, pickling and
``dataclasses`` functions. Every such class of the package is checked, found by its base."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from typing import Any

import pytest

import forkjoin as fj
from forkjoin import _events, _options, _outcome, _report
from forkjoin._values import FACTORY, Frozen, FrozenValue, Value


def _all(base: type) -> list[type]:
    found = []
    for sub in base.__subclasses__():
        found += [sub, *_all(sub)]
    return found


assert fj.gather and _events and _options and _outcome and _report  # their classes exist
CLASSES = sorted(
    {c for c in _all(Value) + _all(Frozen) if dataclasses.is_dataclass(c)},
    key=lambda c: c.__qualname__,
)


def _reference(cls: type) -> type:
    """The dataclass ``cls`` stands for, made by ``@dataclass`` from its fields."""
    frozen = issubclass(cls, Frozen)
    eq = issubclass(cls, FrozenValue) or issubclass(cls, Value)
    spec = [
        (
            f.name,
            f.type,
            dataclasses.field(default=f.default, default_factory=f.default_factory, repr=f.repr),
        )
        for f in dataclasses.fields(cls)
    ]
    return dataclasses.make_dataclass(cls.__name__, spec, frozen=frozen, eq=eq, slots=True)


def _sample(cls: type, tag: str) -> dict[str, Any]:
    return {f.name: f"{tag}{i}" for i, f in enumerate(dataclasses.fields(cls))}


def test_every_class_is_found() -> None:
    names = {c.__name__ for c in CLASSES}
    assert {"Event", "AttemptFailed", "RunFinished", "TaskFinished"} <= names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__qualname__)
def test_a_class_behaves_as_its_dataclass(cls: type) -> None:
    ref = _reference(cls)
    # the same parameters, in the order of the fields, with the same defaults
    mine = list(inspect.signature(cls).parameters.values())
    theirs = list(inspect.signature(ref).parameters.values())
    assert [p.name for p in mine] == [p.name for p in theirs]
    for p, q, f in zip(mine, theirs, dataclasses.fields(cls), strict=True):
        if f.default_factory is not dataclasses.MISSING:
            assert p.default is FACTORY, p
        else:
            assert p.default == q.default, p
    values = _sample(cls, "v")
    a, b, c = cls(**values), cls(**values), cls(**_sample(cls, "w"))
    r = ref(**values)
    assert repr(a) == repr(r)
    assert dataclasses.asdict(a) == dataclasses.asdict(r)
    assert (a == b) == (r == ref(**values))
    assert a != c
    assert (a == b) is (ref.__eq__ is not object.__eq__)
    if ref.__hash__ is None:
        assert type(a).__hash__ is None
    elif ref.__hash__ is object.__hash__:
        assert hash(a) != hash(b) or a is b
    else:
        assert hash(a) == hash(b) == hash(r)
    name = dataclasses.fields(cls)[0].name
    if issubclass(ref, object) and ref.__setattr__ is not object.__setattr__:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(a, name, "x")
        with pytest.raises(dataclasses.FrozenInstanceError):
            delattr(a, name)
    else:
        setattr(a, name, "x")
        assert getattr(a, name) == "x"
        setattr(a, name, values[name])
    assert not hasattr(a, "__dict__")  # slotted
    back = pickle.loads(pickle.dumps(a))
    assert dataclasses.asdict(back) == dataclasses.asdict(a)
    changed = dataclasses.replace(a, **{name: "y"})
    assert getattr(changed, name) == "y"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__qualname__)
def test_a_default_factory_makes_a_new_value_each_time(cls: type) -> None:
    made = [f for f in dataclasses.fields(cls) if f.default_factory is not dataclasses.MISSING]
    required = {
        f.name: None
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    one, two = cls(**required), cls(**required)
    for f in made:
        assert getattr(one, f.name) == f.default_factory()  # type: ignore[misc]
        assert getattr(one, f.name) is not getattr(two, f.name) or not isinstance(
            getattr(one, f.name), list | dict | set
        )
