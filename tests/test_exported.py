"""The public API is exactly what forkjoin.__all__ lists (sorted)."""

from __future__ import annotations

import types

import forkjoin as fj


def test_all_is_sorted() -> None:
    assert fj.__all__ == sorted(fj.__all__)
    assert len(fj.__all__) == len(set(fj.__all__))


def test_all_equals_the_public_names() -> None:
    public = {
        name
        for name, value in vars(fj).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public | {"__version__"} == set(fj.__all__)


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
