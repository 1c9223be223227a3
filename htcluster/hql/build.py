"""Parse tree to typed statements: the lark ``Transformer`` behind :func:`htcluster.hql.parse`.

Callbacks are named after the rules of ``hql.lark``; each returns a value of
:mod:`htcluster.hql.statements`, :mod:`htcluster.hql.scan` or
:mod:`htcluster.hql.schema`.  Values are evaluated here, once: ``GUID()``
in an INSERT becomes one fixed UUID text, so the same parsed statement
always yields the same cells (:ref:`hql`).
"""
from __future__ import annotations

import uuid
from typing import Any, Optional

from lark import Token, Transformer

from .._thrift.ttypes import Cell, ColumnPredicate, Key, KeyFlag
from .._thrift.ttypes import ColumnPredicateOperation as Op
from . import statements as ast
from .alter import AddDefinitions, DropFamilies, ModifyDefinitions, RenameFamily
from .files import FileOption, check_int, file_format, load_options, separator
from ._errors import parse_error as _parse_error
from .scan import (CellPredicate, ColumnMatches, RowPredicate, RowRegexp, ScanOption,
                   TimePredicate, ValueRegexp, build_scan_spec, cell_interval, mirror,
                   row_interval, time_range)
from .schema import ColumnDef, GroupDef, IndexDef, SchemaOption, build_schema
from .timestamps import duration_seconds, parse_timestamp

__all__ = ["MAX_I32", "StatementBuilder", "delete_cells"]

#: Largest number HQL takes where the wire has an i32.
MAX_I32 = 2**31 - 1

#: The children of a parse-tree node as a callback gets them: tokens and values already built.
Children = list[Any]


def _trim_quotes(text: str) -> str:
    """INSERT values and column keys lose every leading and trailing quote (:ref:`hql`)."""
    return text.strip("'\"")


class _Generated(str):
    """A value made by a function call such as ``GUID()``, not written as a string."""


def delete_cells(row: str, columns: Optional[list[str]], timestamp: Optional[int] = None,
                 version: Optional[int] = None) -> list[Cell]:
    """Return the delete markers of ``DELETE columns FROM t WHERE ROW = row`` (:ref:`hql`).

    :param columns: ``None`` for ``*`` (DELETE_ROW), else ``"cf"`` or ``"cf:q"`` names.
    :param timestamp: nanoseconds of ``TIMESTAMP ts``: DELETE_CELL at ts, even for a bare ``cf``.
    :param version: nanoseconds of ``VERSION ts``: DELETE_CELL_VERSION at exactly ts.
    :returns: one ``Cell`` per marker; auto-timestamped when neither time is given.
    """
    if columns is None:
        stamp = timestamp if timestamp is not None else version
        return [Cell(key=Key(row=row, column_family="", column_qualifier="", timestamp=stamp,
                             flag=KeyFlag.DELETE_ROW))]
    cells = []
    for column in columns:
        family, colon, qualifier = column.partition(":")
        if version is not None:
            flag, stamp = KeyFlag.DELETE_CELL_VERSION, version
        elif timestamp is not None:
            flag, stamp = KeyFlag.DELETE_CELL, timestamp
        else:
            flag, stamp = (KeyFlag.DELETE_CELL if colon else KeyFlag.DELETE_CF), None
        cells.append(Cell(key=Key(row=row, column_family=family, column_qualifier=qualifier,
                                  timestamp=stamp, flag=flag)))
    return cells


def _insert_cell(items: list[str]) -> Cell:
    """Turn one ``([ts,] row, column, value)`` tuple into an INSERT cell."""
    if len(items) not in (3, 4):
        raise _parse_error(f"an INSERT tuple has 3 elements (row, column, value) or 4 "
                           f"(timestamp, row, column, value), not {len(items)}")
    timestamp = None
    if len(items) == 4:
        if isinstance(items[0], _Generated):
            raise _parse_error("the timestamp of an INSERT tuple must be a quoted "
                               "'YYYY-MM-DD HH:MM:SS' literal")
        timestamp = parse_timestamp(items[0])
    row, column, value = items[-3:]
    if isinstance(column, _Generated):
        raise _parse_error("the column of an INSERT tuple must be a quoted 'family[:qualifier]'")
    family, _, qualifier = _trim_quotes(column).partition(":")
    if not isinstance(value, _Generated):
        value = _trim_quotes(value)
    key = Key(row=str(row), column_family=family, column_qualifier=qualifier,
              timestamp=timestamp, flag=KeyFlag.INSERT)
    return Cell(key=key, value=str(value).encode("utf-8"))


def _match(family: str, qualifier: Optional[tuple[int, str]], operation: int,
           value: str) -> ColumnPredicate:
    bits, name = qualifier if qualifier is not None else (0, None)
    return ColumnPredicate(column_family=family, column_qualifier=name,
                           operation=operation | bits, value=value)


def _first(children: list[Any]) -> Any:
    return children[0]


def _as_list(c: Children) -> list[Any]:
    return list(c)


def _true(_: list[Any]) -> bool:
    return True


def _option(kind: type, key: str, value: Any = None) -> Any:
    """A callback making ``kind(key, value)``; without ``value``, the last child (``True`` when left out)."""
    def build(self: Any, c: Children) -> Any:
        if value is not None:
            return kind(key, value)
        return kind(key, True if c[-1] is None else c[-1])
    return build


def _unsupported(what: str) -> Any:
    return lambda self, c: ast.NotImplementedStatement(what)


class StatementBuilder(Transformer[Token, Any]):
    """Turn an HQL parse tree into a :mod:`.statements` value (one callback per grammar rule)."""

    # terminals
    def STR(self, token: Token) -> str:
        return token[1:-1]  # a backslash before a quote stays in the text (:ref:`hql`)

    def INT(self, token: Token) -> int:
        if int(token) > MAX_I32:
            raise _parse_error(f"number {token} is too large (at most {MAX_I32})")
        return int(token)

    IDENT = DECIMAL = lambda self, token: str(token)
    start = name = staticmethod(_first)
    relop = time_unit = staticmethod(lambda c: str(c[0]))
    if_exists = if_not_exists = with_ids = true = staticmethod(_true)
    false = staticmethod(lambda c: False)

    # namespaces and tables
    def create_namespace(self, c: Children) -> ast.CreateNamespace:
        return ast.CreateNamespace(c[0], bool(c[1]))

    def drop_namespace(self, c: Children) -> ast.DropNamespace:
        return ast.DropNamespace(c[1], bool(c[0]))

    use_namespace = staticmethod(lambda c: ast.UseNamespace(c[0]))

    def create_table(self, c: Children) -> ast.CreateTable:
        definitions = [x for x in c[1:] if isinstance(x, (ColumnDef, GroupDef, IndexDef))]
        options = [x for x in c[1:] if isinstance(x, SchemaOption)]
        return ast.CreateTable(c[0], schema=build_schema(definitions, options))

    create_table_like = staticmethod(lambda c: ast.CreateTable(c[0], like=c[1]))
    create_table_with = _unsupported("CREATE TABLE ... WITH (schema file)")
    column_def = staticmethod(lambda c: ColumnDef(c[0], list(c[1:])))
    group_def = staticmethod(lambda c: GroupDef(c[0], c[1], list(c[2:])))
    group_members = staticmethod(_as_list)
    index_def = staticmethod(lambda c: IndexDef(c[0]))
    qualifier_index_def = staticmethod(lambda c: IndexDef(c[0], qualifier=True))
    opt_max_versions = _option(SchemaOption, "max_versions")
    opt_time_order_asc = _option(SchemaOption, "time_order_desc", False)
    opt_time_order_desc = _option(SchemaOption, "time_order_desc", True)
    opt_blocksize = _option(SchemaOption, "blocksize")
    opt_replication = _option(SchemaOption, "replication")
    opt_group_commit_interval = _option(SchemaOption, "group_commit_interval")
    opt_counter = _option(SchemaOption, "counter")
    opt_in_memory = _option(SchemaOption, "in_memory")

    def opt_ttl(self, c: Children) -> SchemaOption:
        return SchemaOption("ttl", duration_seconds(str(c[0]), c[1]))

    def opt_compressor(self, c: Children) -> SchemaOption:
        return SchemaOption("compressor", c[-1].lower())

    def opt_bloomfilter(self, c: Children) -> SchemaOption:
        return SchemaOption("bloom_filter", c[-1].lower())

    drop_table = staticmethod(lambda c: ast.DropTable(c[1], bool(c[0])))
    rename_table = staticmethod(lambda c: ast.RenameTable(c[0], c[1]))
    alter_table = staticmethod(lambda c: ast.AlterTable(c[0], tuple(c[1:])))
    alter_table_with = _unsupported("ALTER TABLE ... WITH (schema file)")
    alter_add = staticmethod(lambda c: AddDefinitions(tuple(c)))
    alter_modify = staticmethod(lambda c: ModifyDefinitions(tuple(c)))
    alter_drop = staticmethod(lambda c: DropFamilies(tuple(c)))
    alter_rename = staticmethod(lambda c: RenameFamily(c[0], c[1]))
    show_tables = staticmethod(lambda c: ast.ShowTables())
    get_listing = staticmethod(lambda c: ast.GetListing())
    describe_table = staticmethod(lambda c: ast.DescribeTable(c[1], bool(c[0])))
    show_create_table = staticmethod(lambda c: ast.ShowCreateTable(c[0]))
    exists_table = staticmethod(lambda c: ast.ExistsTable(c[0]))

    def load_data(self, c: Children) -> ast.LoadData:
        *options, path, table = c
        return ast.LoadData(path, table=table, options=load_options(options))

    def load_data_into_file(self, c: Children) -> ast.LoadData:
        *options, path, out = c
        return ast.LoadData(path, into_file=out, options=load_options(options))

    opt_row_key_column = staticmethod(lambda c: FileOption("row_key_columns", tuple(c)))
    opt_timestamp_column = staticmethod(lambda c: FileOption("timestamp_column", c[0]))
    opt_header_file = staticmethod(lambda c: FileOption("header_file", c[0]))
    opt_row_uniquify_chars = staticmethod(
        lambda c: FileOption("row_uniquify_chars", check_int(c[0], "ROW_UNIQUIFY_CHARS", 64)))
    opt_dup_key_cols = staticmethod(lambda c: FileOption("dup_key_cols", c[0] is None or c[0]))
    opt_ignore_unknown = staticmethod(lambda c: FileOption("ignore_unknown", True))
    opt_single_cell_format = staticmethod(lambda c: FileOption("single_cell", True))
    opt_no_log = staticmethod(lambda c: FileOption("no_log", True))

    def dump_table(self, c: Children) -> ast.Select:
        table, where, *options = c
        return self._select(None, table, where, options, "DUMP TABLE", dump=True)
    help = staticmethod(lambda c: ast.Help(" ".join(str(x) for x in c)))

    # cells
    insert = staticmethod(lambda c: ast.Insert(c[0], list(c[1:])))
    cell_tuple = staticmethod(_insert_cell)

    def function(self, c: Children) -> _Generated:
        if c[0].lower() != "guid":
            raise _parse_error(f"unknown function '{c[0]}()'; HQL knows only GUID()")
        return _Generated(uuid.uuid4())

    def delete(self, c: Children) -> ast.Delete:
        columns, table, row, when = c
        kind, stamp = when if when is not None else (None, None)
        return ast.Delete(table, delete_cells(row, columns, stamp if kind == "timestamp" else None,
                                              stamp if kind == "version" else None))

    delete_all = staticmethod(lambda c: None)
    delete_named = staticmethod(_as_list)
    delete_timestamp = staticmethod(lambda c: ("timestamp", parse_timestamp(c[0])))
    delete_version = staticmethod(lambda c: ("version", parse_timestamp(c[0])))

    # select
    def select(self, c: Children) -> ast.Select:
        columns, table, where, *options = c
        return self._select(columns, table, where, options, "SELECT")

    @staticmethod
    def _select(columns: Optional[list[str]], table: str, where: Optional[list[Any]], options: list[Any],
                statement: str, dump: bool = False) -> ast.Select:
        """A SELECT, or a DUMP TABLE (every column and version, timestamps written, INTO FILE needed).

        Without INTO FILE, the file options (FS, NO_ESCAPE, DISPLAY_*) are accepted and have no effect.
        """
        fmt, given = file_format([o for o in options if isinstance(o, FileOption)], statement,
                                 timestamps=dump)
        into = given.get("into_file")
        if dump and into is None:
            raise _parse_error("DUMP TABLE writes a file: end it with INTO FILE 'name'")
        spec = build_scan_spec(columns, where or [], [o for o in options if isinstance(o, ScanOption)])
        return ast.Select(table, spec, into_file=into, output=fmt)

    all_columns = staticmethod(lambda c: None)
    column_list = where = staticmethod(_as_list)
    col_family = col_any = col_string = staticmethod(_first)
    col_qualifier = staticmethod(lambda c: f"{c[0]}:{c[1]}")
    col_prefix = staticmethod(lambda c: f"{c[0]}:^{c[2]}")
    col_regex = staticmethod(lambda c: f"{c[0]}:{c[1]}")
    bound = cell_bound = staticmethod(lambda c: [(c[0], c[1] if len(c) == 2 else (c[1], c[2]))])

    def bounds(self, c: Children) -> list[Any]:
        return [(mirror(c[1]), c[0]), (c[2], c[3])]

    def cell_bounds(self, c: Children) -> list[Any]:
        return [(mirror(c[2]), (c[0], c[1])), (c[3], (c[4], c[5]))]

    row_or = staticmethod(lambda c: RowPredicate(tuple(row_interval(b) for b in c)))
    cell_or = staticmethod(lambda c: CellPredicate(tuple(cell_interval(b) for b in c)))
    row_regexp = staticmethod(lambda c: RowRegexp(c[0]))
    value_regexp = staticmethod(lambda c: ValueRegexp(c[0]))
    column_or = staticmethod(lambda c: ColumnMatches(tuple(c)))

    def time_range(self, c: Children) -> TimePredicate:
        return TimePredicate(*time_range([(op, parse_timestamp(ts)) for op, ts in c[0]]))

    match_exact = staticmethod(lambda c: _match(c[0], c[1], Op.EXACT_MATCH, c[3]))
    match_prefix = staticmethod(lambda c: _match(c[0], c[1], Op.PREFIX_MATCH, c[3]))
    match_exists = staticmethod(lambda c: _match(c[0], c[1], 0, ""))

    def match_regex(self, c: Children) -> ColumnPredicate:
        return _match(c[0], c[1], Op.REGEX_MATCH, c[-1][1:-1] if len(c) == 4 else c[-1])

    qualifier_exact = staticmethod(lambda c: (Op.QUALIFIER_EXACT_MATCH, c[0]))
    qualifier_regex = staticmethod(lambda c: (Op.QUALIFIER_REGEX_MATCH, c[0][1:-1]))
    qualifier_any = staticmethod(lambda c: (Op.QUALIFIER_PREFIX_MATCH, ""))
    opt_versions = _option(ScanOption, "versions")
    opt_row_limit = _option(ScanOption, "row_limit")
    opt_cell_limit = _option(ScanOption, "cell_limit")
    opt_cell_limit_per_family = _option(ScanOption, "cell_limit_per_family")
    opt_row_offset = _option(ScanOption, "row_offset")
    opt_cell_offset = _option(ScanOption, "cell_offset")
    opt_keys_only = _option(ScanOption, "keys_only", True)
    opt_return_deletes = _option(ScanOption, "return_deletes", True)
    opt_scan_and_filter_rows = _option(ScanOption, "scan_and_filter_rows", True)
    opt_no_cache = _option(ScanOption, "do_not_cache", True)
    opt_into_file = staticmethod(lambda c: FileOption("into_file", c[0]))
    opt_display_timestamps = staticmethod(lambda c: FileOption("timestamps", True))
    opt_display_revisions = staticmethod(lambda c: FileOption("revisions", True))
    opt_no_escape = staticmethod(lambda c: FileOption("escape", False))
    opt_field_separator = staticmethod(lambda c: separator(c[0]))
