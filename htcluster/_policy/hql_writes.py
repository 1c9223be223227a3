"""HQL ``INSERT`` and ``DELETE`` as the equivalent cell writes, so that they can be stamped and repeated.

``Replicas`` sends these statements as ``set_cells`` with client timestamps:
a write that failed after it was sent can then be repeated on another
replica without applying twice.  The statement is parsed with the broker's
own grammar (:mod:`htcluster.hql`).
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

from .. import hql
from ..types import Cell, ClientException, HqlResult, HqlResult2, HqlResultAsArrays
from .classify import hql_is_read

__all__ = ["HQL_WRITE_ANSWERS", "hql_write_cells", "all_stamped"]


#: HQL methods whose INSERT and DELETE :class:`Replicas` sends as stamped ``set_cells``, with the
#: (empty) answer the broker gives such a statement through each.
HQL_WRITE_ANSWERS: dict[str, Callable[[], Any]] = {
    "hql_query": HqlResult, "hql_exec": HqlResult, "hql_query2": HqlResult2, "hql_exec2": HqlResult2,
    "hql_query_as_arrays": HqlResultAsArrays, "hql_exec_as_arrays": HqlResultAsArrays,
}


def hql_write_cells(method: str, args: Sequence[Any]) -> Optional[tuple[Any, ...]]:
    """Turn an HQL ``INSERT`` or ``DELETE`` call into the arguments of the equivalent ``set_cells``.

    The statement is parsed with the broker's own grammar (:mod:`htcluster.hql`),
    so the cells are the ones the broker's INSERT would write (quoting,
    escapes, 3- and 4-tuples, ``GUID()`` evaluated once, here); DELETE gives
    its delete markers.  ``hql_exec`` with ``noflush`` is left alone (it leaves
    a mutator open on the connection), and so is anything that does not parse:
    the broker answers it as before.

    :param method: the broker method, e.g. ``'hql_query'``.
    :param args: its arguments (the namespace id, if given, then the statement, then the flags).
    :returns: ``(*leading args, table, cells)`` for ``set_cells``, or ``None``.
    """
    if method not in HQL_WRITE_ANSWERS:
        return None
    at = next((i for i, a in enumerate(args) if isinstance(a, str)), None)
    if at is None or (method.startswith("hql_exec") and len(args) > at + 1 and args[at + 1]):
        return None
    command = args[at]
    if hql_is_read(command):
        return None
    try:
        statement = hql.parse(command)
    except ClientException:
        return None
    if not isinstance(statement, (hql.Insert, hql.Delete)) or not statement.cells:
        return None
    return (*args[:at], statement.table, list(statement.cells))


def all_stamped(cells: Union[Cell, Sequence[Cell]]) -> bool:
    """True when every cell of ``cells`` (one Cell or a sequence) has a key with a timestamp."""
    cells = [cells] if isinstance(cells, Cell) else cells
    return all(c.key is not None and c.key.timestamp is not None for c in cells)
