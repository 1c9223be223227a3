"""Typed HQL statements: what :func:`htcluster.hql.parse` returns.

Each statement holds values ready for the handler's Thrift-level calls
(``Schema``, ``ScanSpec``, ``Cell``), so the executor only makes calls.
Names of namespaces are kept as written (relative unless they start with
``/``); the executor resolves them against the current namespace.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from .._thrift.ttypes import Cell, ScanSpec, Schema

__all__ = [
    "AlterTable", "CreateNamespace", "CreateTable", "Delete", "DescribeTable", "DropNamespace", "DropTable",
    "ExistsTable", "GetListing", "Help", "Insert", "NotImplementedStatement", "RenameTable",
    "Select", "ShowCreateTable", "ShowTables", "Statement", "UseNamespace",
]


@dataclass(frozen=True)
class CreateNamespace:
    """``CREATE NAMESPACE name [IF NOT EXISTS]`` (DATABASE is a synonym)."""

    name: str
    if_not_exists: bool = False


@dataclass(frozen=True)
class DropNamespace:
    """``DROP NAMESPACE [IF EXISTS] name``."""

    name: str
    if_exists: bool = False


@dataclass(frozen=True)
class UseNamespace:
    """``USE name``: the broker refuses it (protocol.md 5.4)."""

    name: str


@dataclass(frozen=True)
class CreateTable:
    """``CREATE TABLE name (...)`` with its ``schema``, or ``CREATE TABLE name LIKE like``."""

    name: str
    schema: Optional[Schema] = None
    like: Optional[str] = None


@dataclass(frozen=True)
class DropTable:
    """``DROP TABLE [IF EXISTS] name``."""

    name: str
    if_exists: bool = False


@dataclass(frozen=True)
class RenameTable:
    """``RENAME TABLE name TO new_name``."""

    name: str
    new_name: str


@dataclass(frozen=True)
class AlterTable:
    """``ALTER TABLE name action ...``: the actions of :mod:`.alter`, applied in order."""

    name: str
    actions: tuple = ()


@dataclass(frozen=True)
class ShowTables:
    """``SHOW TABLES``."""


@dataclass(frozen=True)
class GetListing:
    """``GET LISTING``."""


@dataclass(frozen=True)
class DescribeTable:
    """``DESCRIBE TABLE [WITH IDS] name``."""

    name: str
    with_ids: bool = False


@dataclass(frozen=True)
class ShowCreateTable:
    """``SHOW CREATE TABLE name``."""

    name: str


@dataclass(frozen=True)
class ExistsTable:
    """``EXISTS TABLE name``."""

    name: str


@dataclass(frozen=True)
class Insert:
    """``INSERT INTO table VALUES ...``: one ``Cell`` per tuple, flag INSERT."""

    table: str
    cells: list[Cell] = field(default_factory=list)


@dataclass(frozen=True)
class Delete:
    """``DELETE ... FROM table WHERE ROW = ...``: the delete markers to write."""

    table: str
    cells: list[Cell] = field(default_factory=list)


@dataclass(frozen=True)
class Select:
    """``SELECT ... FROM table ...`` as one ``ScanSpec``."""

    table: str
    spec: ScanSpec = field(default_factory=ScanSpec)


@dataclass(frozen=True)
class Help:
    """``HELP [topic]``."""

    topic: str = ""


@dataclass(frozen=True)
class NotImplementedStatement:
    """A statement the grammar accepts but the stand-in does not run (answered NOT_IMPLEMENTED)."""

    statement: str


Statement = Union[CreateNamespace, DropNamespace, UseNamespace, CreateTable, DropTable,
                  RenameTable, AlterTable, ShowTables, GetListing, DescribeTable, ShowCreateTable,
                  ExistsTable, Insert, Delete, Select, Help, NotImplementedStatement]
