"""What travels to a worker process and back, and what runs there around each call.

The caller pickles ``(fn, args)`` with cloudpickle (so lambdas, closures and functions of
``__main__`` travel by value); the worker runs the call in a fresh context, where
``fj.charge()`` adds to an account of the call's own and ``fj.current_fan()`` says why it
is not available, and sends back one pickled tuple: how the call ended (its value, or its
error with the worker's traceback as text), what it charged and where it ran. Packing the
value and the error in the worker means a value or an error that cannot be pickled is
reported as such, never a broken pool or a hung call.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import pickle
import traceback
from collections.abc import Callable, Coroutine
from typing import Any, Final

from .._errors import TaskNotSerializable
from .._policies._budget import Charge, current_account
from ._base import worker_backend

__all__ = [
    "ERROR",
    "TIMEOUT",
    "VALUE",
    "RemoteTraceback",
    "dumps_call",
    "run_call",
    "run_call_async",
    "unpack",
]

VALUE: Final = 0
ERROR: Final = 1
TIMEOUT: Final = 2  # the worker's own timeout of an async call ended it

_PROTOCOL: Final = pickle.HIGHEST_PROTOCOL


class RemoteTraceback(Exception):
    """The traceback of an error raised in a worker, as text (the ``__cause__`` of the
    error re-raised in the caller, as concurrent.futures does)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


# -- the caller's side ------------------------------------------------------------------


def dumps_call(name: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> bytes:
    """``(fn, args)`` as bytes for a worker, or TaskNotSerializable naming what failed."""
    import cloudpickle

    try:
        return cloudpickle.dumps((fn, args), protocol=_PROTOCOL)  # type: ignore[no-any-return]
    except Exception as e:
        raise TaskNotSerializable(_culprit(name, fn, args, e)) from e


def _culprit(name: str, fn: Callable[..., Any], args: tuple[Any, ...], error: Exception) -> str:
    import cloudpickle

    what = "cannot be pickled for a worker process"
    try:
        cloudpickle.dumps(fn, protocol=_PROTOCOL)
    except Exception as e:
        return f"task {name!r}: its function {_short(fn)} {what}: {_text(e)}"
    for i, arg in enumerate(args):
        try:
            cloudpickle.dumps(arg, protocol=_PROTOCOL)
        except Exception as e:
            return f"task {name!r}: argument {i + 1} ({type(arg).__name__}) {what}: {_text(e)}"
    return f"task {name!r}: its call {what}: {_text(error)}"


def unpack(name: str, packed: bytes) -> tuple[int, Any, tuple[bool, float, float], str]:
    """What a worker sent back: ``(kind, value or error, (charged, usd, tokens), where)``.
    An error comes with the worker's traceback as its ``__cause__``."""
    try:
        kind, obj, charges, where, remote = pickle.loads(packed)
    except Exception as e:
        error = TaskNotSerializable(
            f"task {name!r}: what its worker sent back cannot be unpickled here: {_text(e)}"
        )
        return ERROR, error, (False, 0.0, 0.0), "?"
    if kind == ERROR and type(obj) is TaskNotSerializable:
        obj = TaskNotSerializable(f"task {name!r}: {obj}")  # the worker did not know its name
    elif kind == ERROR and isinstance(obj, BaseException) and remote:
        obj.__cause__ = RemoteTraceback(remote)
    return kind, obj, charges, where


# -- the worker's side ------------------------------------------------------------------


def run_call(payload: bytes, backend: str, where: str, fresh: bool) -> bytes:
    """Run a pickled call in this worker (an async function on an event loop of its own)
    and pack how it ended. ``fresh``: in an empty context (a forked worker inherits the
    caller's); else in a copy of the current one (a Dask worker's, which its code may use),
    never the one the next call sees."""
    account = Charge(None, None, None)
    ctx = contextvars.Context() if fresh else contextvars.copy_context()
    return ctx.run(_run, payload, backend, where, account)


def _run(payload: bytes, backend: str, where: str, account: Charge) -> bytes:
    current_account.set(account)
    worker_backend.set(backend)
    try:
        fn, args = pickle.loads(payload)
    except BaseException as e:
        return _pack_error(_unloadable(e), account, where)
    try:
        value = fn(*args)
        if inspect.isawaitable(value):
            value = asyncio.run(_awaited(value))
    except BaseException as e:
        return _pack_error(e, account, where)
    return _pack(VALUE, value, account, where)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


async def run_call_async(payload: bytes, backend: str, where: str, timeout: float | None) -> bytes:
    """:func:`run_call` for an async function on a worker's own event loop (Dask's): in a
    Task of its own, in a copy of the current context, stopped by ``timeout`` there (a
    cancelled future does not stop a coroutine that runs on a worker)."""
    account = Charge(None, None, None)
    ctx = contextvars.copy_context()
    task = asyncio.get_running_loop().create_task(
        _run_async(payload, backend, where, account, timeout), context=ctx
    )
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.cancel()  # the worker itself is closing
        raise


async def _run_async(
    payload: bytes, backend: str, where: str, account: Charge, timeout: float | None
) -> bytes:
    current_account.set(account)
    worker_backend.set(backend)
    try:
        fn, args = pickle.loads(payload)
    except BaseException as e:
        return _pack_error(_unloadable(e), account, where)
    try:
        coro: Coroutine[Any, Any, Any] = fn(*args)
        if timeout is None:
            value = await coro
        else:
            try:
                async with asyncio.timeout(timeout):
                    value = await coro
            except TimeoutError:
                return _pack(TIMEOUT, None, account, where)
    except BaseException as e:
        return _pack_error(e, account, where)
    return _pack(VALUE, value, account, where)


def _unloadable(e: BaseException) -> TaskNotSerializable:
    return TaskNotSerializable(f"its worker cannot unpickle the call: {_text(e)}")


def _pack(kind: int, obj: Any, account: Charge, where: str, remote: str | None = None) -> bytes:
    import cloudpickle

    charges = (account.charged, account.usd, account.tokens)
    try:
        return cloudpickle.dumps((kind, obj, charges, where, remote), protocol=_PROTOCOL)  # type: ignore[no-any-return]
    except Exception as e:
        if kind == VALUE:
            error: BaseException = TaskNotSerializable(
                f"its value ({type(obj).__name__}) cannot be pickled back from the worker: "
                f"{_text(e)}"
            )
        else:  # an error that cannot travel: its type and text do
            error = RuntimeError(f"{_text(obj)} (raised in the worker; not picklable: {e})")
        return cloudpickle.dumps((ERROR, error, charges, where, remote), protocol=_PROTOCOL)  # type: ignore[no-any-return]


def _pack_error(error: BaseException, account: Charge, where: str) -> bytes:
    remote = "".join(traceback.format_exception(error))
    # the chain and the frames travel as the text above: an exception pickled with them
    # (tblib, which Dask installs, does that) drags along whatever they hold
    error.__traceback__ = error.__context__ = error.__cause__ = None
    if not isinstance(error, Exception):
        # SystemExit, KeyboardInterrupt in a worker end that call, not the caller's program
        error = RuntimeError(f"the call raised {error!r} in its worker")
    return _pack(ERROR, error, account, where, remote)


def _text(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _short(fn: Any) -> str:
    text = getattr(fn, "__qualname__", None) or repr(fn)
    return text if len(text) <= 80 else text[:77] + "..."
