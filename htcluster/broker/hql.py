"""HQL for the stand-in broker: parse one statement (:mod:`htcluster.hql`), run it through the handler.

``execute(handler, ns, command, noflush, unbuffered)`` is what ``hql_query`` /
``hql_exec`` call and returns the ``HqlResult`` of protocol.md 5.4.  The
grammar and parser live in :mod:`htcluster.hql`; ``parse``, ``delete_cells``
and ``warm_up`` are re-exported here for older imports.  Every failure is a
``ClientException`` with the broker's code.
"""
from __future__ import annotations

from typing import Any

from .._thrift.ttypes import HqlResult
from ..hql import delete_cells, parse, warm_up
from .hql_exec import run

__all__ = ["delete_cells", "execute", "parse", "warm_up"]


def execute(handler: Any, ns: int, command: str, noflush: bool = False,
            unbuffered: bool = False) -> HqlResult:
    """Run one HQL statement in namespace ``ns`` through ``handler``'s Thrift-level methods.

    :param handler: the broker's per-connection ``HqlService`` handler.
    :param ns: namespace id of this connection; names in the statement are relative to it.
    :param command: one HQL statement.
    :param noflush: INSERT/DELETE leave a mutator open and return its id.
    :param unbuffered: SELECT returns a scanner id instead of the cells.
    :returns: ``HqlResult`` filled as protocol.md 5.4 says for the statement.
    :raises ClientException: THRIFTBROKER_BAD_NAMESPACE_ID for an unknown ``ns``,
        any error of :func:`htcluster.hql.parse`, BAD_NAMESPACE for USE,
        NOT_IMPLEMENTED for statements the stand-in does not run, and whatever
        the handler raises.
    """
    handler.namespace_name(ns)  # the broker checks the id before it reads the text
    return run(handler, ns, parse(command), noflush=noflush, unbuffered=unbuffered)
