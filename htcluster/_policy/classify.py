"""Classification, done once: whether a call may change data, and what its outcome says about the host.

:func:`is_write` decides the routing of ``Replicas`` and whether a call is
safe to repeat; :func:`verdict` turns how an attempt ended into one of three
verdicts for host health.  Both are pure functions.

=====================  ==============================================================
verdict                outcomes
=====================  ==============================================================
:data:`ANSWERED`       a reply, including the broker's own errors (``ClientException``,
                       ``TApplicationException``): the host is alive
:data:`FAILED`         a transport failure (:class:`~htcluster.errors.BrokerUnavailable`:
                       refused, reset, timed out, out of step): the host is blamed
:data:`NOTHING`        anything that says nothing about the host: the caller's deadline
                       (``DeadlineExceeded``), a bad argument (``InvalidRequest``), a full
                       pool (``PoolTimeout``), a local limit (``ClientResourceError``),
                       a TLS configuration mistake (``TLSError``: certificate not trusted,
                       expired or for another name, TLS on one side only), an interrupt
                       or cancellation (``KeyboardInterrupt``, ``GeneratorExit``,
                       ``asyncio.CancelledError``)
=====================  ==============================================================

:func:`is_transient` picks, among the broker's answers, the errors that say
"this broker could not reach the cluster right now" rather than "this call
is wrong" (:ref:`error-codes`):

========================  ===========================================================
transient (fail over)     ``REQUEST_TIMEOUT`` (4) and every ``COMM_*`` code
                          (``0x0001xxxx``: ``COMM_NOT_CONNECTED``,
                          ``COMM_BROKEN_CONNECTION``, ``COMM_CONNECT_ERROR`` ...)
final (raised at once)    every other code: ``TABLE_NOT_FOUND``, ``NAMESPACE_DOES_NOT_EXIST``,
                          ``BAD_KEY``, ``HQL_PARSE_ERROR``, ``SYNTAX_ERROR``, ``BAD_SCAN_SPEC``,
                          ``BAD_SCHEMA``, the ``THRIFTBROKER_BAD_*_ID`` codes ..., and
                          ``TApplicationException``
========================  ===========================================================

A transient error is still an answer for host health (the host is alive),
but it counts towards outlier ejection (:mod:`htcluster._policy.outliers`),
and a read or a stamped write that gets one is retried on another host.
"""
from __future__ import annotations

import functools
from typing import Any, Optional, Sequence

from .._wire import ANSWERS
from ..codes import REQUEST_TIMEOUT, is_comm
from ..errors import BrokerUnavailable, ClientException, TLSError

__all__ = ["ANSWERED", "FAILED", "HQL_METHODS", "NOTHING", "READ_METHODS", "READ_VERBS", "hql_is_read",
           "is_transient", "is_write", "verdict"]

#: The host answered (the broker's error answers included).
ANSWERED = "answered"
#: The host failed in transport: it is blamed (backoff, failover).
FAILED = "failed"
#: Nothing was learnt about the host: it is neither blamed nor credited.
NOTHING = "nothing"


def verdict(error: Optional[BaseException]) -> str:
    """Return what an attempt that ended with ``error`` (``None``: an answer) says about its host.

    :returns: :data:`ANSWERED`, :data:`FAILED` or :data:`NOTHING` (see the table above).
    """
    if error is None or isinstance(error, ANSWERS):
        return ANSWERED
    if isinstance(error, TLSError):  # a configuration mistake: the host's health is not in question
        return NOTHING
    if isinstance(error, BrokerUnavailable):
        return FAILED
    return NOTHING


def is_transient(error: Optional[BaseException]) -> bool:
    """True when ``error`` is a broker's answer meaning "could not reach the cluster right now":
    a ``ClientException`` whose code is ``REQUEST_TIMEOUT`` or a ``COMM_*`` code (see the table above)."""
    if not isinstance(error, ClientException):
        return False
    code = error.code
    return isinstance(code, int) and (code == REQUEST_TIMEOUT or is_comm(code))


#: Methods that only read (:ref:`broker-methods`); everything else counts as a write.
READ_METHODS = frozenset({
    "namespace_exists", "exists_namespace", "namespace_get_listing", "get_listing", "get_tables",
    "table_exists", "exists_table", "table_get_id", "get_table_id", "table_get_schema_str",
    "get_schema_str", "table_get_schema_str_with_ids", "get_schema_str_with_ids",
    "table_get_schema", "get_schema", "table_get_splits", "get_table_splits",
    "get_cell", "get_row", "get_row_as_arrays", "get_row_serialized", "get_cells",
    "get_cells_as_arrays", "get_cells_serialized", "status", "error_get_text", "generate_guid",
})

#: HQL statements that only read, by their first word(s) (:ref:`hql`).
READ_VERBS: tuple[tuple[str, ...], ...] = (
    ("SELECT",), ("SHOW",), ("DESCRIBE",), ("EXISTS",), ("GET", "LISTING"),
)

HQL_METHODS = frozenset({"hql_query", "hql_exec", "hql_query_as_arrays", "hql_exec_as_arrays",
                         "hql_query2", "hql_exec2"})


def hql_is_read(command: str) -> bool:
    """True when the HQL ``command`` (a statement) only reads: SELECT, SHOW, DESCRIBE, EXISTS, GET LISTING.

    The verbs are those of :ref:`hql`, compared without regard to
    case.  Only the statement's first words matter, so the answer is cached by
    its first 40 characters (a bounded cache, whatever the statements' size).
    """
    return _prefix_is_read(command[:40])


@functools.lru_cache(maxsize=1024)
def _prefix_is_read(prefix: str) -> bool:
    upper = tuple(w.upper() for w in prefix.split(None, 2))
    return any(upper[:len(verb)] == verb for verb in READ_VERBS)


def is_write(method: str, args: Sequence[Any] = ()) -> bool:
    """Classify a broker call: True when it may change data (or anything but a known read).

    Reads are the methods of :data:`READ_METHODS` and HQL calls whose command
    (the first ``str`` argument) starts with a verb of :data:`READ_VERBS`.
    Everything else, including ``set_*``, ``mutator_*``, ``shared_mutator_*``,
    schema and namespace changes, counts as a write: unknown means unsafe to repeat.

    :param method: the broker method name.
    :param args: its arguments (only HQL commands are inspected).
    :returns: ``True`` for a write (or an unknown method), ``False`` for a read.
    """
    if method in HQL_METHODS:
        command = next((a for a in args if isinstance(a, str)), "")
        return not hql_is_read(command)
    return method not in READ_METHODS
