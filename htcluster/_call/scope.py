"""Deadline scopes: ``with htcluster.deadline(2.0):`` bounds every call made inside.

A scope sets a ``time.monotonic()`` deadline in a :class:`contextvars.ContextVar`,
so it follows the thread (and an asyncio task) that entered it.  Every routed
call and every ``Pool.call`` inside takes the earlier of the scope's deadline
and its own ``timeout=``; a nested scope can only shorten the deadline, never
extend it (PyMongo's ``pymongo.timeout()`` works the same way).
"""
from __future__ import annotations

import contextvars
import time
from contextlib import contextmanager
from typing import Iterator, Optional

from .._validate import seconds

__all__ = ["current_deadline", "deadline", "earliest"]

_scope: contextvars.ContextVar[Optional[float]] = contextvars.ContextVar("htcluster_deadline", default=None)


def current_deadline() -> Optional[float]:
    """Return the ``time.monotonic()`` deadline of the innermost :func:`deadline` scope, or ``None``."""
    return _scope.get()


@contextmanager
def deadline(timeout: float) -> Iterator[float]:
    """Bound every htcluster call made inside the ``with`` block by ``timeout`` seconds from now.

    :param timeout: seconds (float > 0) for everything inside: pool waits,
        connects, probes, attempts, hedges and failovers of every call.
    :returns: a context manager giving the scope's ``time.monotonic()`` deadline.
    :raises ConfigError: ``timeout`` is not a finite positive number of seconds.

    Calls inside raise :class:`~htcluster.errors.DeadlineExceeded` once it has
    passed.  A scope nested in another ends at the earlier of the two.

    Example::

        with htcluster.deadline(2.0):
            rows = replicas.call("get_cells", "logs", spec, namespace="web")
            replicas.call("set_cells", "audit", cells, namespace="web")  # shares the 2 s
    """
    end = time.monotonic() + seconds("timeout", timeout)
    outer = _scope.get()
    if outer is not None and outer < end:
        end = outer
    token = _scope.set(end)
    try:
        yield end
    finally:
        _scope.reset(token)


def earliest(deadline_: Optional[float]) -> Optional[float]:
    """Return the earlier of ``deadline_`` and the current scope's deadline (``None``: neither bounds)."""
    scope = _scope.get()
    if scope is None:
        return deadline_
    return scope if deadline_ is None or scope < deadline_ else deadline_
