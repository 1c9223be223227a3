"""``HYPERTABLE_RECORD_QUERIES`` for Quart: the broker calls of the current request, in Quart's app context.

The recorder and the record are the Flask extension's
(:class:`htcluster._flask.queries.QueryRecorder`, one
:class:`~htcluster._flask.queries.RecordedQuery` per finished call); only
where they are kept differs: ``quart.g`` of the current app context
(:func:`quart_g`).  Quart's contexts are context variables, so a call awaited
by the request's task (and by the tasks it starts, which copy its context:
one per host of a broadcast) is recorded; a call made outside any app context
is not.
"""
from __future__ import annotations

from typing import Any

from quart import g, has_app_context

from .._flask.queries import RecordedQuery, queries_of

__all__ = ["get_recorded_queries", "quart_g"]


def quart_g() -> Any:
    """Return Quart's ``g`` of the current app context, or ``None`` outside one."""
    return g if has_app_context() else None


def get_recorded_queries() -> list[RecordedQuery]:
    """Return the broker calls recorded in the current Quart app context (a request), oldest first.

    :returns: a new list of :class:`~htcluster._flask.queries.RecordedQuery`;
        empty outside an app context or when ``HYPERTABLE_RECORD_QUERIES`` is off.
    """
    return queries_of(quart_g())
