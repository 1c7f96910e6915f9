"""Where a call runs: the bottom of the call pipeline.

- :mod:`._base` — the protocol a backend implements (:class:`Backend`, :class:`Runner`)
- :mod:`._loop` — the event loop: ``await fn(*args)`` (async callables)
- :mod:`._thread` — a thread pool per run (sync callables)

Everything above (admission, policies, retries, the journal, events) stays in the caller's
process and event loop; only the call moves. Backends import the protocol, never the
engine.
"""
