"""The value classes with written-out methods (forkjoin._values) behave as the dataclass
each stands for: the same ``__init__``, repr, equality, hashing, freezing, pickling and
``dataclasses`` functions. Every such class of the package is checked, found by its base."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
import sys
from typing import Any

import pytest

import forkjoin as fj
from forkjoin import _events, _options, _outcome, _policies, _report
from forkjoin._policies import _group, _hedge
from forkjoin._values import FACTORY, Frozen, FrozenValue, Value


def _all(base: type) -> list[type]:
    found = []
    for sub in base.__subclasses__():
        found += [sub, *_all(sub)]
    return found


# every module that defines such classes, loaded
_LOADED = (fj.gather, _events, _options, _outcome, _policies, _report, _group, _hedge)
# the classes as their modules hold them (@dataclass(slots=True) makes a new class; the
# one it replaced may not be collected yet)
CLASSES = sorted(
    {
        c
        for c in _all(Value) + _all(Frozen)
        if dataclasses.is_dataclass(c)
        and getattr(sys.modules[c.__module__], c.__qualname__, None) is c
    },
    key=lambda c: c.__qualname__,
)
# two valid values of each class that checks its fields (the others take any)
SAMPLES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "AdaptiveLimit": ({"initial": 4, "min": 1, "max": 64}, {"initial": 8, "min": 2, "max": 9}),
    "Budget": ({"usd": 1.0, "tokens": None}, {"usd": 2.0, "tokens": 10.0}),
    "CircuitBreaker": ({"failures": 5, "reset": 30.0}, {"failures": 3, "reset": 5.0}),
    "RateLimit": ({"rate": 10, "per": 1.0, "burst": None}, {"rate": 5, "per": 2.0, "burst": 1}),
    "Hedge": ({"after": 0.5, "max_extra": 1}, {"after": 2.0, "max_extra": 3}),
    "Group": ({"timeout": 5.0, "limit": 4}, {"timeout": 1.0, "limit": 2}),
    "Retry": ({"attempts": 3, "backoff": 0.5}, {"attempts": 5, "backoff": 1.0, "jitter": False}),
}


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
    if cls.__name__ in SAMPLES:
        return SAMPLES[cls.__name__][tag == "w"]
    return {f.name: f"{tag}{i}" for i, f in enumerate(dataclasses.fields(cls))}


def test_every_class_is_found() -> None:
    names = {c.__name__ for c in CLASSES}
    assert {"Event", "AttemptFailed", "RunFinished", "RunReport", "RunOptions"} <= names
    assert {"Retry", "RateLimit", "Budget", "CircuitBreaker", "Group", "Registration"} <= names


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
    if ref.__setattr__ is not object.__setattr__:
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
    new = _sample(cls, "w")[name] if cls.__name__ in SAMPLES else "y"
    assert getattr(dataclasses.replace(a, **{name: new}), name) == new


MADE = [
    c
    for c in CLASSES
    if any(f.default_factory is not dataclasses.MISSING for f in dataclasses.fields(c))
]


@pytest.mark.parametrize("cls", MADE, ids=lambda c: c.__qualname__)
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


def test_a_subclass_that_is_no_dataclass_keeps_the_fields_frozen_only() -> None:
    # as with @dataclass(frozen=True): its own attributes may be set, the fields may not
    class Mine(fj.Retry):
        def __init__(self) -> None:
            super().__init__(attempts=2)
            self.note = "mine"

    mine = Mine()
    assert (mine.attempts, mine.note) == (2, "mine")
    with pytest.raises(dataclasses.FrozenInstanceError):
        mine.attempts = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        fj.Retry().note = "x"  # type: ignore[attr-defined]
