"""``HYPERTABLE_RECORD_QUERIES``: what broker calls the current request made, and how long each took.

A :class:`QueryRecorder` is a listener on a routing object's events
(``cluster.listeners.register(recorder)``, :mod:`htcluster.events`): for
each finished call (``CallSucceeded`` or ``CallFailed``; ``CallStarted`` is
ignored) it appends a :class:`RecordedQuery` to the current app context,
and :func:`get_recorded_queries` returns them.  Nothing is recorded outside
an app context, and nothing at all while the setting is off (no listener is
registered then).  A call made in another thread (the worker threads of a
``broadcast``) has no app context and is not recorded.

The location is the first frame of the caller's stack that is app code:
preferably in the app's own package (``app.import_name``), else the first
frame outside htcluster, Flask, Werkzeug and the standard library's
threading and context helpers.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional

from flask import g, has_app_context

from ..types import Cell

__all__ = ["QueryRecorder", "RecordedQuery", "app_location", "flask_g", "get_recorded_queries", "queries_of",
           "recorded_query", "summarize"]

_QUERIES = "_htcluster_queries"  # attribute of ``flask.g``
#: Modules whose frames are never "the app code" of a call.
_LIBRARY_PREFIXES = ("htcluster.", "flask.", "flask_", "werkzeug.", "click.", "threading", "contextlib",
                     "functools", "concurrent.", "jinja2.", "importlib", "runpy", "_pytest.", "pluggy.",
                     "quart.", "hypercorn.", "asyncio.", "pytest_asyncio.", "anyio.", "starlette.", "fastapi.")
#: Longest argument summary kept, in characters.
SUMMARY_CHARS = 300


@dataclass(frozen=True)
class RecordedQuery:
    """One broker call of the current request.

    :ivar method: the broker method, e.g. ``'hql_query'`` or ``'get_cells'``.
    :ivar statement: the HQL text for ``hql_*`` methods, else a short summary of the arguments.
    :ivar host: ``'host:port'`` of the broker that answered (or failed).
    :ivar namespace: the namespace name the call was made in, or ``None``.
    :ivar duration: seconds (float) the call took, as the event reported it.
    :ivar location: ``'file:line (function)'`` of the app code that made the call.
    :ivar attempt: which attempt of the routed call this was (1 = first).
    :ivar error: ``'ErrorType: message'`` when the call failed, else ``None``.
    :ivar bind: the ``HYPERTABLE_BINDS`` name, ``None`` for the main cluster.
    """

    method: str
    statement: str
    host: str
    namespace: Optional[str]
    duration: float
    location: str
    attempt: int = 1
    error: Optional[str] = None
    bind: Optional[str] = None


def flask_g() -> Any:
    """Return Flask's ``g`` of the current app context, or ``None`` outside one."""
    return g if has_app_context() else None


def queries_of(store: Any) -> list[RecordedQuery]:
    """Return a new list of the calls recorded in ``store`` (an app context's ``g``; ``None``: none)."""
    if store is None:
        return []
    return list(getattr(store, _QUERIES, ()))


def get_recorded_queries() -> list[RecordedQuery]:
    """Return the broker calls recorded in the current app context (a request), oldest first.

    :returns: a new list of :class:`RecordedQuery`; empty outside an app
        context or when ``HYPERTABLE_RECORD_QUERIES`` is off.
    """
    return queries_of(flask_g())


def _short(value: Any) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, Cell):
        return f"Cell({value.key.row!r}, {value.key.column_family!r})"
    if isinstance(value, (list, tuple)):
        kind = "cells" if value and isinstance(value[0], Cell) else "items"
        return f"[{len(value)} {kind}]"
    spec = getattr(type(value), "thrift_spec", None)
    if spec is not None:  # a struct: the fields that differ from its defaults
        try:
            default = type(value)()
        except TypeError:
            default = None
        fields = [f"{s[2]}={_short(getattr(value, s[2]))}" for s in spec
                  if s is not None and getattr(value, s[2], None) != getattr(default, s[2], None)]
        return f"{type(value).__name__}({', '.join(fields)})"
    return repr(value)


def summarize(method: str, args: Any) -> str:
    """Return the HQL text of an ``hql_*`` call, else the arguments in short (at most 300 characters).

    :param method: the broker method.
    :param args: its arguments after the namespace id (a tuple).
    """
    args = tuple(args or ())
    if method.startswith("hql_"):
        for arg in args:
            if isinstance(arg, str):
                return arg
    text = ", ".join(_short(a) for a in args)
    return text if len(text) <= SUMMARY_CHARS else text[:SUMMARY_CHARS - 3] + "..."


def app_location(import_name: str, depth: int = 2) -> str:
    """Return ``'file:line (function)'`` of the innermost app frame of the current stack.

    :param import_name: the app's ``import_name``; frames of its package are preferred.
    :param depth: frames to skip (this function and its caller).
    :returns: the location, or ``'unknown'``.
    """
    root = import_name.split(".")[0]
    fallback: Optional[str] = None
    frame = sys._getframe(depth)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        here = f"{frame.f_code.co_filename}:{frame.f_lineno} ({frame.f_code.co_name})"
        if module == root or module.startswith(root + "."):
            if root not in ("__main__", "htcluster", "flask", "quart"):
                return here
        if fallback is None and module != "htcluster" and not module.startswith(_LIBRARY_PREFIXES):
            fallback = here
        frame = frame.f_back  # type: ignore[assignment]
    return fallback or "unknown"


def recorded_query(event: Any, import_name: str, bind: Optional[str] = None) -> Optional[RecordedQuery]:
    """Return the :class:`RecordedQuery` of an event that ends a call, or ``None`` for any other event.

    The framework-neutral part of recording (the Flask recorder below and the
    Quart one, :mod:`htcluster._quart.queries`, each keep the records in their
    own app context).

    :param event: an event of :mod:`htcluster.events`; only those with a ``duration``
        (``CallSucceeded``, ``CallFailed``) end a call.
    :param import_name: the app's ``import_name`` (for :func:`app_location`).
    :param bind: the bind the event came from (``None``: the main cluster).
    """
    duration = getattr(event, "duration", None)
    if duration is None:
        return None
    error = getattr(event, "error", None)
    method = str(getattr(event, "method", "?"))
    return RecordedQuery(
        method=method, statement=summarize(method, getattr(event, "args", ())),
        host=str(getattr(event, "host", "?")), namespace=getattr(event, "namespace", None),
        duration=float(duration), location=app_location(import_name, depth=3),
        attempt=int(getattr(event, "attempt", 1) or 1),
        error=None if error is None else f"{type(error).__name__}: {error}", bind=bind)


class QueryRecorder:
    """A listener that records the finished calls of one cluster into the current app context.

    :param import_name: the app's ``import_name`` (for :func:`app_location`).
    :param bind: the bind this recorder listens to (``None``: the main cluster).
    :param context: returns the current app context's ``g`` (or ``None`` outside
        one): :func:`flask_g` for Flask; the Quart extension passes Quart's.
    """

    def __init__(self, import_name: str, bind: Optional[str] = None,
                 context: Callable[[], Any] = flask_g) -> None:
        self.import_name = import_name
        self.bind = bind
        self.context = context

    def __call__(self, event: Any) -> None:
        """Record ``event`` when it ends a call (it has a ``duration``) and an app context is active."""
        store = self.context()
        if store is None:
            return
        record = recorded_query(event, self.import_name, self.bind)
        if record is None:
            return
        queries = getattr(store, _QUERIES, None)
        if queries is None:
            queries = []
            setattr(store, _QUERIES, queries)
        queries.append(record)

    def __repr__(self) -> str:
        return f"<QueryRecorder {self.import_name!r} bind={self.bind!r}>"
