"""The public API is exactly what forkjoin.__all__ lists (sorted)."""

from __future__ import annotations

import types

import pytest

import forkjoin as fj


def test_all_is_sorted() -> None:
    assert fj.__all__ == sorted(fj.__all__)
    assert len(fj.__all__) == len(set(fj.__all__))


def test_all_equals_the_public_names() -> None:
    # dir(), not vars(): a public name is bound in the module's namespace on first use
    public = {
        name
        for name in dir(fj)
        if not name.startswith("_") and not isinstance(getattr(fj, name), types.ModuleType)
    }
    assert public | {"__version__"} == set(fj.__all__)


def test_star_import_binds_every_public_name() -> None:
    namespace: dict[str, object] = {}
    exec("from forkjoin import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(fj.__all__)
    assert all(namespace[name] is getattr(fj, name) for name in fj.__all__)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        fj.no_such_name  # noqa: B018


def test_exported_members_are_defined_in_forkjoin() -> None:
    for name in fj.__all__:
        value = getattr(fj, name)
        module = getattr(value, "__module__", "forkjoin")
        assert module.startswith("forkjoin"), name


def test_contract_names_exist() -> None:
    contract = {
        "AttemptFailed", "DuplicateTaskName", "Fan", "FanClosed", "FanError", "InvalidPolicy",
        "Outcome", "Results", "Retry", "RunFinished", "RunStarted", "Status", "TaskFinished",
        "TaskQueued", "TaskStarted", "current_fan", "gather", "imap", "map", "map_reduce", "run",
        "task",
    }  # fmt: skip
    assert contract <= set(fj.__all__)
    assert {s.name for s in fj.Status} == {"OK", "FAILED", "TIMED_OUT", "CANCELLED", "SKIPPED"}


def test_private_modules_start_with_an_underscore() -> None:
    import pkgutil

    allowed = {"testing", "cli"}
    for mod in pkgutil.iter_modules(fj.__path__):
        assert mod.name.startswith("_") or mod.name in allowed, mod.name
