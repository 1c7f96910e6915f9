"""Functions that `forkjoin map --call` tests run in a child process (not tests)."""

from __future__ import annotations


async def echo(line: str) -> str:
    """Trivial and async: keeps a 1,000,000-line map run fast."""
    return line


def shout(line: str) -> str:
    if line == "boom":
        raise ValueError("no boom allowed")
    return line.upper()


def tls_ready(line: str) -> bool:
    """Whether asyncio in this process can make TLS connections (its ssl is the module)."""
    import asyncio.sslproto
    import ssl

    return asyncio.sslproto.ssl is ssl


def collector(line: str) -> list[object]:
    """Whether the garbage collector is on while the user's code runs, and what it keeps
    out of its way (gc.freeze)."""
    import gc

    return [gc.isenabled(), gc.get_freeze_count() > 0]
