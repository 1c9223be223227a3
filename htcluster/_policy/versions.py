"""Versions of a cell written more than once: collapse repeats, ask for enough versions.

A write that ``Replicas`` retries carries the same client timestamps, so a
broker that received it twice stores it as two revisions of one version; the
reads of ``Replicas`` show it once (:func:`collapse`) and ask for enough
versions that ``versions`` distinct ones survive (:func:`widen_versions`).
Hypertable keeps a cell's revisions apart by the revision number the
RangeServer assigns; a scan counts every stored revision as a version.
"""
from __future__ import annotations

import copy
from typing import Any, Iterable

from ..types import Cell, KeyFlag, ScanSpec

__all__ = ["COLLAPSED_METHODS", "collapse", "widen_versions"]

#: Reads whose cells are collapsed (a list of Cells, or an HqlResult with ``cells``).
COLLAPSED_METHODS = frozenset({"get_cells", "get_row", "hql_query", "hql_exec"})


def collapse(cells: Iterable[Cell], versions: int = 0) -> list[Cell]:
    """Keep one cell per (row, family, qualifier, timestamp, flag): the newest revision.

    A write retried with the same timestamps is stored twice, as two
    revisions (the broker's revisions); readers should see it once.  Order
    is kept (the first occurrence's place); cells without a timestamp are kept.

    :param cells: cells as a scan returns them (each column's versions newest first).
    :param versions: keep at most this many versions (distinct timestamps) of
        each (row, family, qualifier); 0 keeps all.  Delete markers are not counted.
    :returns: a new list.
    """
    out: list[Cell] = []
    where: dict[tuple[Any, ...], int] = {}
    for cell in cells:
        key = cell.key
        if key is None or key.timestamp is None:
            out.append(cell)
            continue
        ident = (key.row, key.column_family, key.column_qualifier or "", key.timestamp, key.flag)
        i = where.get(ident)
        if i is None:
            where[ident] = len(out)
            out.append(cell)
        elif (key.revision or 0) > (out[i].key.revision or 0):
            out[i] = cell
    return _newest(out, versions) if versions > 0 else out


def _newest(cells: list[Cell], versions: int) -> list[Cell]:
    """Drop the inserts of each (row, family, qualifier) beyond its first ``versions``."""
    seen: dict[tuple[Any, ...], int] = {}
    out = []
    for cell in cells:
        key = cell.key
        if key is not None and key.flag in (None, KeyFlag.INSERT):
            column = (key.row, key.column_family, key.column_qualifier or "")
            seen[column] = seen.get(column, 0) + 1
            if seen[column] > versions:
                continue
        out.append(cell)
    return out


def widen_versions(spec: ScanSpec, copies: int) -> tuple[ScanSpec, int]:
    """Return the spec to send so that ``spec.versions`` distinct versions survive :func:`collapse`.

    A write through :class:`Replicas` is stored at most once per replica
    (``copies``), and the broker counts each stored revision as a version
    (the broker's revisions), so asking for ``versions * copies`` and keeping
    the newest ``versions`` after collapsing gives the versions asked for.
    Left as it is (nothing to trim): ``versions`` 0 or 1 (the newest revision
    always shows), and specs with ``cell_limit``, ``cell_limit_per_family`` or
    ``cell_offset``, which count the broker's cells and would change meaning.
    A family's own ``MAX_VERSIONS`` still counts repeats on the broker.

    :param spec: the caller's spec; never modified.
    :param copies: how many times one write may be stored (the number of replicas).
    :returns: ``(spec to send, versions to keep)``; 0 versions: keep all.
    """
    versions = spec.versions or 0
    if versions < 2 or copies < 2 or spec.cell_limit or spec.cell_limit_per_family or spec.cell_offset:
        return spec, 0
    wide = copy.copy(spec)
    wide.versions = versions * copies
    return wide, versions
