"""HQL, the Hypertable Query Language: one grammar for the stand-in broker and for clients.

The broker executes what :func:`parse` returns; clients use :func:`is_read` to
route a statement and may turn an :class:`Insert` or :class:`Delete` into the
equivalent ``set_cells`` call (``statement.table``, ``statement.cells``).
The grammar is ``hql.lark`` (:ref:`hql`), built once per process
on first use.  This package needs only ``htcluster._thrift``, ``htcluster.codes``
and ``lark``.

Public API:

``parse(text) -> Statement``
    One statement to a typed value; raises ``ClientException`` with the code
    the broker answers (HQL_PARSE_ERROR for syntax, see :func:`parse`).
``is_read(text) -> bool``
    SELECT / SHOW / DESCRIBE / EXISTS / GET LISTING are reads; anything else,
    unparsable text included, is a write.  Memoised (bounded).
``Insert``, ``Delete``, ``Select``, ...
    The statement classes (frozen dataclasses) of :mod:`.statements`.
``delete_cells(row, columns, timestamp=None, version=None)``
    The delete markers of a ``DELETE``.

Modules: ``statements`` (the typed statements), ``parser`` (grammar, errors,
``is_read``), ``build`` (parse tree to statements), ``scan`` / ``schema`` /
``alter`` / ``timestamps`` (ScanSpec, Schema, ALTER TABLE, time literals),
``files`` (file-statement options, confinement to one directory) and
``tsv`` (the cell files of LOAD DATA INFILE and SELECT ... INTO FILE, a
reader and a writer any client can use too).
"""
from __future__ import annotations

from .build import delete_cells
from .parser import is_read, parse, warm_up
from .statements import (AlterTable, CreateNamespace, CreateTable, Delete, DescribeTable,
                         DropNamespace, DropTable, ExistsTable, FileFormat, GetListing, Help, Insert,
                         LoadData, LoadOptions, NotImplementedStatement, RenameTable, Select,
                         ShowCreateTable, ShowTables, Statement, UseNamespace)

__all__ = [
    "AlterTable", "CreateNamespace", "CreateTable", "Delete", "DescribeTable", "DropNamespace",
    "DropTable", "ExistsTable", "FileFormat", "GetListing", "Help", "Insert", "LoadData",
    "LoadOptions", "NotImplementedStatement", "RenameTable",
    "Select", "ShowCreateTable", "ShowTables", "Statement", "UseNamespace", "delete_cells",
    "is_read", "parse", "warm_up",
]
