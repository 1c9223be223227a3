"""Typed HQL statements: what :func:`htcluster.hql.parse` returns.

Each statement holds values ready for the handler's Thrift-level calls
(``Schema``, ``ScanSpec``, ``Cell``), so the executor only makes calls.
Names of namespaces are kept as written (relative unless they start with
``/``); the executor resolves them against the current namespace.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Union

from .._thrift.ttypes import Cell, ScanSpec, Schema

if TYPE_CHECKING:  # pragma: no cover  (for the annotation only)
    from .alter import AlterAction

__all__ = [
    "AlterTable", "CreateNamespace", "CreateTable", "Delete", "DescribeTable", "DropNamespace", "DropTable",
    "ExistsTable", "FileFormat", "GetListing", "Help", "Insert", "LoadData", "LoadOptions",
    "NotImplementedStatement", "RenameTable",
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
    """``USE name``: the broker refuses it (:ref:`hql`)."""

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
    actions: tuple[AlterAction, ...] = ()


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
class FileFormat:
    """How cells are written to (and read from) a file (:ref:`hql`).

    :param separator: between fields, a tab unless ``FS = 'c'``.
    :param escape: backslash escapes for backslash, tab and newline (off with ``NO_ESCAPE``).
    :param timestamps: a leading timestamp field (``DISPLAY_TIMESTAMPS``; DUMP TABLE always).
    """

    separator: str = "\t"
    escape: bool = True
    timestamps: bool = False


@dataclass(frozen=True)
class Select:
    """``SELECT ... FROM table ...`` as one ``ScanSpec``; ``DUMP TABLE`` too.

    ``into_file`` is the file name of ``INTO FILE`` (written on the broker
    host, in ``output``'s format), ``None`` to return the cells.
    """

    table: str
    spec: ScanSpec = field(default_factory=ScanSpec)
    into_file: Optional[str] = None
    output: FileFormat = field(default_factory=FileFormat)


@dataclass(frozen=True)
class LoadOptions:
    """The options of ``LOAD DATA INFILE`` (:ref:`hql`), as written.

    :param row_key_columns: ``ROW_KEY_COLUMN = a + b``; empty: the first column.
    :param timestamp_column: ``TIMESTAMP_COLUMN = c``.
    :param header_file: ``HEADER_FILE = 'f'``: the header line comes from that file.
    :param row_uniquify_chars: ``ROW_UNIQUIFY_CHARS = n`` random characters appended to each row key.
    :param dup_key_cols: ``DUP_KEY_COLS``: key columns are stored as cells too.
    :param ignore_unknown: ``IGNORE_UNKNOWN_CFS`` / ``IGNORE_UNKNOWN_COLUMNS``: skip them.
    :param single_cell: ``SINGLE_CELL_FORMAT``: one cell per line whatever the first line says.
    :param format: field separator and escapes (``FS``, ``NO_ESCAPE``).
    """

    row_key_columns: tuple[str, ...] = ()
    timestamp_column: Optional[str] = None
    header_file: Optional[str] = None
    row_uniquify_chars: int = 0
    dup_key_cols: bool = False
    ignore_unknown: bool = False
    single_cell: bool = False
    format: FileFormat = field(default_factory=FileFormat)


@dataclass(frozen=True)
class LoadData:
    """``LOAD DATA INFILE [options] 'path' INTO TABLE t`` (or ``INTO FILE 'out'``: convert only)."""

    path: str
    table: Optional[str] = None
    into_file: Optional[str] = None
    options: LoadOptions = field(default_factory=LoadOptions)


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
                  ExistsTable, Insert, Delete, Select, LoadData, Help, NotImplementedStatement]
