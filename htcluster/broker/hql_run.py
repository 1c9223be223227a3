"""HQL for the stand-in broker: parse one statement (:mod:`htcluster.hql`), run it through the handler.

:func:`execute` is what ``hql_query`` / ``hql_exec`` call; it returns the
``HqlResult`` of :ref:`hql`.  The grammar and parser live in
:mod:`htcluster.hql`.  Only handler calls happen here (``table_create``,
``get_cells``, ``set_cells``, ...); their ``ClientException`` answers pass
through unchanged.  Which ``HqlResult`` fields each statement fills is
:ref:`hql`.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
from pathlib import Path
from typing import IO, Any, Callable, Optional

from .. import codes
from .._thrift.ttypes import ClientException, HqlResult, KeyFlag
from ..hql import parse
from ..hql import statements as ast
from ..hql.alter import apply_alter
from ..hql.files import confine, missing
from ..hql.tsv import CellFileReader, cell_line, header_line, open_for_reading, open_for_writing
from ..hql.schema import render_create_table
from ._errors import client_error
from .table_schema import parse_counter
from .store import join_path

__all__ = ["HELP_LINES", "LOAD_BATCH", "execute", "resolve_namespace", "run"]

log = logging.getLogger("htcluster.broker")

#: Cells per ``set_cells`` (one write transaction) when loading a file.
LOAD_BATCH = 10_000

#: What ``HELP`` answers: one line per statement the stand-in runs.
HELP_LINES = [
    "CREATE NAMESPACE name [IF NOT EXISTS]    DROP NAMESPACE [IF EXISTS] name",
    "CREATE TABLE name (family [options], ..., ACCESS GROUP g (family, ...) [options]) [options]",
    "CREATE TABLE name LIKE other    DROP TABLE [IF EXISTS] name    RENAME TABLE a TO b",
    "ALTER TABLE name {ADD (definition, ...) | MODIFY (definition, ...) | DROP (family, ...)"
    " | RENAME COLUMN FAMILY (old, new)} ...",
    "SHOW TABLES    GET LISTING    DESCRIBE TABLE [WITH IDS] name    SHOW CREATE TABLE name",
    "EXISTS TABLE name",
    "INSERT INTO t VALUES ([timestamp,] row, 'family[:qualifier]', value), ...",
    "DELETE {* | column, ...} FROM t WHERE ROW = 'row' [TIMESTAMP ts | VERSION ts]",
    "SELECT {* | column, ...} FROM t [WHERE predicate AND ...] [options] [INTO FILE 'f']",
    "DUMP TABLE t [WHERE predicate AND ...] [options] INTO FILE 'f'",
    "LOAD DATA INFILE [ROW_KEY_COLUMN=c[+c...]] [TIMESTAMP_COLUMN=c] [options] 'f' INTO TABLE t",
    "Files are read and written only inside the broker's --files directory.",
    "Switch namespaces with namespace_open, not USE; one statement per call, no ';'.",
]


def resolve_namespace(handler: Any, ns: int, name: str) -> str:
    """Return the full name of namespace ``name``: absolute with a leading ``/``, else under ``ns``."""
    if name.startswith("/"):
        return name.strip("/")
    return join_path(handler.namespace_name(ns), name)


def _create_namespace(handler: Any, ns: int, st: ast.CreateNamespace, **_: bool) -> HqlResult:
    try:
        handler.namespace_create(resolve_namespace(handler, ns, st.name))
    except ClientException as exc:
        if not (st.if_not_exists and exc.code == codes.NAMESPACE_EXISTS):
            raise
    return HqlResult()


def _drop_namespace(handler: Any, ns: int, st: ast.DropNamespace, **_: bool) -> HqlResult:
    handler.namespace_drop(resolve_namespace(handler, ns, st.name), st.if_exists)
    return HqlResult()


def _use_namespace(handler: Any, ns: int, st: ast.UseNamespace, **_: bool) -> HqlResult:
    raise client_error(codes.BAD_NAMESPACE,
                       f"USE {st.name} does not work through the ThriftBroker; open the namespace "
                       f"with namespace_open('{st.name}') and send HQL with that namespace id")


def _create_table(handler: Any, ns: int, st: ast.CreateTable, **_: bool) -> HqlResult:
    schema = st.schema
    if st.like is not None:
        schema = handler.table_get_schema(ns, st.like)  # built afresh per call: safe to clear in place
        schema.generation = None
        for spec in (schema.column_families or {}).values():
            spec.id = spec.generation = None
        for group in (schema.access_groups or {}).values():
            group.generation = None
    handler.table_create(ns, st.name, schema)
    return HqlResult()


def _drop_table(handler: Any, ns: int, st: ast.DropTable, **_: bool) -> HqlResult:
    handler.table_drop(ns, st.name, st.if_exists)
    return HqlResult()


def _alter_table(handler: Any, ns: int, st: ast.AlterTable, **_: bool) -> HqlResult:
    """Read the schema, apply the actions (:func:`htcluster.hql.alter.apply_alter`), ``table_alter`` it."""
    schema = handler.table_get_schema(ns, st.name)
    handler.table_alter(ns, st.name, apply_alter(schema, st.name, st.actions))
    return HqlResult()


def _rename_table(handler: Any, ns: int, st: ast.RenameTable, **_: bool) -> HqlResult:
    handler.table_rename(ns, st.name, st.new_name)
    return HqlResult()


def _show_tables(handler: Any, ns: int, st: ast.ShowTables, **_: bool) -> HqlResult:
    return HqlResult(results=handler.get_tables(ns))


def _get_listing(handler: Any, ns: int, st: ast.GetListing, **_: bool) -> HqlResult:
    return HqlResult(results=[f"{item.name}\t(namespace)" if item.is_namespace else item.name
                              for item in handler.namespace_get_listing(ns)])


def _describe_table(handler: Any, ns: int, st: ast.DescribeTable, **_: bool) -> HqlResult:
    get = handler.table_get_schema_str_with_ids if st.with_ids else handler.table_get_schema_str
    return HqlResult(results=[get(ns, st.name)])


def _show_create_table(handler: Any, ns: int, st: ast.ShowCreateTable, **_: bool) -> HqlResult:
    return HqlResult(results=[render_create_table(st.name, handler.table_get_schema(ns, st.name))])


def _exists_table(handler: Any, ns: int, st: ast.ExistsTable, **_: bool) -> HqlResult:
    return HqlResult(results=["true" if handler.table_exists(ns, st.name) else "false"])


def _write(handler: Any, ns: int, st: "ast.Insert | ast.Delete", noflush: bool = False,
           **_: bool) -> HqlResult:
    """INSERT and DELETE: flushed at once, or left in an open mutator with ``noflush``."""
    if not noflush:
        handler.set_cells(ns, st.table, st.cells)
        return HqlResult()
    mutator = handler.mutator_open(ns, st.table, 0, 0)
    try:
        handler.mutator_set_cells(mutator, st.cells)
    except ClientException:
        with contextlib.suppress(ClientException):  # the caller never learns this id: free it
            handler.mutator_close(mutator)
        raise
    return HqlResult(mutator=mutator)


def _select(handler: Any, ns: int, st: ast.Select, unbuffered: bool = False, **_: bool) -> HqlResult:
    if st.into_file is not None:
        return _select_into_file(handler, ns, st)
    if unbuffered:
        return HqlResult(scanner=handler.scanner_open(ns, st.table, st.spec))
    return HqlResult(cells=handler.get_cells(ns, st.table, st.spec))


# ------------------------------------------------------------------ files

def _files_dir(handler: Any) -> Optional[Path]:
    """The broker's ``--files`` directory, ``None`` when it has none."""
    return handler.context.files_dir


class _file_errors:  # noqa: N801 - a context manager (Thrift exceptions cannot pass a generator)
    """Turn file-system errors into answers: FILE_NOT_FOUND, else INVALID_OPERATION."""

    def __init__(self, name: str, path: Path, statement: str) -> None:
        self.name, self.path, self.statement = name, path, statement

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Optional[type], exc: Optional[BaseException], tb: object) -> None:
        if kind is not None and issubclass(kind, FileNotFoundError):
            raise missing(self.path, self.name, self.statement) from None
        if kind is not None and issubclass(kind, (OSError, EOFError)):  # EOFError: a truncated gzip
            detail = getattr(exc, "strerror", None) or exc
            raise client_error(codes.INVALID_OPERATION, f"{self.statement}: cannot use file "
                               f"{self.name!r}: {detail}") from None


def _select_into_file(handler: Any, ns: int, st: ast.Select) -> HqlResult:
    """SELECT / DUMP TABLE ... INTO FILE: scan batch by batch into the file (written whole or not at all)."""
    statement = "SELECT ... INTO FILE"
    path = confine(_files_dir(handler), st.into_file or "", statement)
    scanner = handler.scanner_open(ns, st.table, st.spec)
    written = 0
    try:
        with _file_errors(st.into_file or "", path, statement), open_for_writing(path) as out:
            out.write(header_line(st.output))
            for cells in iter(lambda: handler.scanner_get_cells(scanner), []):
                out.write(b"".join(cell_line(c, st.output) for c in cells))
                written += len(cells)
    finally:
        with contextlib.suppress(ClientException):
            handler.scanner_close(scanner)
    log.info("%s: %d cells of %s written to %s", handler.peer, written, st.table, path)
    return HqlResult()


def _read_header(base: Optional[Path], name: str) -> bytes:
    statement = "LOAD DATA INFILE ... HEADER_FILE"
    path = confine(base, name, statement)
    with _file_errors(name, path, statement), open_for_reading(path) as source:
        return source.readline()


def _reader(source: IO[bytes], st: ast.LoadData, families: Optional[set], header: Optional[bytes]
            ) -> CellFileReader:
    return CellFileReader(source, st.options, families, st.path, header)


def _load_data(handler: Any, ns: int, st: ast.LoadData, noflush: bool = False, **_: bool) -> HqlResult:
    """LOAD DATA INFILE: check the whole file first (nothing is written from a bad file), then load it.

    INTO TABLE writes ``LOAD_BATCH`` cells per ``set_cells`` (or into one open
    mutator with ``noflush``); INTO FILE writes the cells to a file in the
    one-cell form instead.
    """
    statement = "LOAD DATA INFILE"
    base = _files_dir(handler)
    path = confine(base, st.path, statement)
    header = _read_header(base, st.options.header_file) if st.options.header_file else None
    families = counters = None
    if st.table is not None:
        specs = handler.table_get_schema(ns, st.table).column_families or {}
        families = set(specs)
        counters = {name for name, cf in specs.items() if cf.options and cf.options.counter}
    with _file_errors(st.path, path, statement):
        with open_for_reading(path) as source:  # a first pass checks every line: a bad file writes nothing
            reader = _reader(source, st, families, header)
            for cell in reader.cells():
                if counters and cell.key.column_family in counters and cell.key.flag == KeyFlag.INSERT \
                        and parse_counter(cell.value or b"") is None:
                    raise client_error(codes.INVALID_ARGUMENT, f"{st.path}, line {reader.lines}: "
                                       f"column family '{cell.key.column_family}' is a COUNTER; "
                                       f"{(cell.value or b'')[:40]!r} is not a signed integer or '=N'")
        if st.into_file is not None:
            return _convert(handler, base, st, path, header)
        with open_for_reading(path) as source:
            reader = _reader(source, st, families, header)
            return _write_batches(handler, ns, st.table or "", reader, noflush)


def _write_batches(handler: Any, ns: int, table: str, reader: CellFileReader, noflush: bool) -> HqlResult:
    cells = reader.cells()
    batches = iter(lambda: list(itertools.islice(cells, LOAD_BATCH)), [])
    if noflush:
        mutator = handler.mutator_open(ns, table, 0, 0)
        try:
            for batch in batches:
                handler.mutator_set_cells(mutator, batch)
        except ClientException:
            with contextlib.suppress(ClientException):
                handler.mutator_close(mutator)
            raise
        return HqlResult(mutator=mutator)
    written = 0
    try:
        for batch in batches:
            handler.set_cells(ns, table, batch)
            written += len(batch)
    except ClientException as exc:
        raise ClientException(code=exc.code, message=f"{exc.message}; {reader.source}: {written} "
                              f"cells before line {reader.lines} were loaded, the rest was not") from None
    log.info("%s: %d rows (%d cells) of %s loaded into %s", handler.peer, reader.rows, written,
             reader.source, table)
    return HqlResult()


def _convert(handler: Any, base: Optional[Path], st: ast.LoadData, path: Path,
             header: Optional[bytes]) -> HqlResult:
    """LOAD DATA INFILE ... INTO FILE: the cells the load would write, as a one-cell-form file."""
    statement = "LOAD DATA INFILE ... INTO FILE"
    out_path = confine(base, st.into_file or "", statement)
    with open_for_reading(path) as source, open_for_writing(out_path) as out:
        reader = _reader(source, st, None, header)
        cells = reader.cells()
        first = next(cells, None)
        fmt = ast.FileFormat(timestamps=reader.timed)
        out.write(header_line(fmt))
        for cell in itertools.chain([first] if first is not None else [], cells):
            out.write(cell_line(cell, fmt))
    return HqlResult()


def _help(handler: Any, ns: int, st: ast.Help, **_: bool) -> HqlResult:
    return HqlResult(results=list(HELP_LINES))


def _not_implemented(handler: Any, ns: int, st: ast.NotImplementedStatement, **_: bool) -> HqlResult:
    raise client_error(codes.NOT_IMPLEMENTED, f"{st.statement} is not implemented by the "
                       "htcluster stand-in broker")


_RUNNERS: dict[type, Callable[..., HqlResult]] = {
    ast.CreateNamespace: _create_namespace, ast.DropNamespace: _drop_namespace,
    ast.UseNamespace: _use_namespace, ast.CreateTable: _create_table, ast.DropTable: _drop_table,
    ast.RenameTable: _rename_table, ast.AlterTable: _alter_table, ast.ShowTables: _show_tables,
    ast.GetListing: _get_listing,
    ast.DescribeTable: _describe_table, ast.ShowCreateTable: _show_create_table,
    ast.ExistsTable: _exists_table, ast.Insert: _write, ast.Delete: _write, ast.Select: _select,
    ast.LoadData: _load_data,
    ast.Help: _help, ast.NotImplementedStatement: _not_implemented,
}


def run(handler: Any, ns: int, statement: ast.Statement, noflush: bool = False,
        unbuffered: bool = False) -> HqlResult:
    """Run one parsed statement; see :func:`execute`.

    :returns: ``HqlResult`` with only the fields :ref:`hql` sets for it.
    :raises ClientException: BAD_NAMESPACE for USE, NOT_IMPLEMENTED, or the handler's errors.
    """
    return _RUNNERS[type(statement)](handler, ns, statement, noflush=noflush, unbuffered=unbuffered)


def execute(handler: Any, ns: int, command: str, noflush: bool = False,
            unbuffered: bool = False) -> HqlResult:
    """Run one HQL statement in namespace ``ns`` through ``handler``'s Thrift-level methods.

    :param handler: the broker's per-connection ``HqlService`` handler.
    :param ns: namespace id of this connection; names in the statement are relative to it.
    :param command: one HQL statement.
    :param noflush: INSERT/DELETE leave a mutator open and return its id.
    :param unbuffered: SELECT returns a scanner id instead of the cells.
    :returns: ``HqlResult`` filled as :ref:`hql` says for the statement.
    :raises ClientException: THRIFTBROKER_BAD_NAMESPACE_ID for an unknown ``ns``,
        any error of :func:`htcluster.hql.parse`, BAD_NAMESPACE for USE,
        NOT_IMPLEMENTED for statements the stand-in does not run, and whatever
        the handler raises.
    """
    handler.namespace_name(ns)  # the broker checks the id before it reads the text
    return run(handler, ns, parse(command), noflush=noflush, unbuffered=unbuffered)
