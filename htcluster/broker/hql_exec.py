"""Run parsed HQL statements through the broker handler's Thrift-level methods.

Only handler calls happen here (``table_create``, ``get_cells``, ``set_cells``,
...); their ``ClientException`` answers pass through unchanged.  Which
``HqlResult`` fields each statement fills is protocol.md 5.4.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable

from .. import codes
from .._thrift.ttypes import ClientException, HqlResult
from ..hql import statements as ast
from ..hql.alter import apply_alter
from ..hql.schema import render_create_table
from ._errors import client_error
from .store import join_path

__all__ = ["HELP_LINES", "resolve_namespace", "run"]

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
    "SELECT {* | column, ...} FROM t [WHERE predicate AND ...] [options]",
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
    if unbuffered:
        return HqlResult(scanner=handler.scanner_open(ns, st.table, st.spec))
    return HqlResult(cells=handler.get_cells(ns, st.table, st.spec))


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
    ast.Help: _help, ast.NotImplementedStatement: _not_implemented,
}


def run(handler: Any, ns: int, statement: ast.Statement, noflush: bool = False,
        unbuffered: bool = False) -> HqlResult:
    """Run one parsed statement; see :func:`htcluster.broker.hql.execute`.

    :returns: ``HqlResult`` with only the fields protocol.md 5.4 sets for it.
    :raises ClientException: BAD_NAMESPACE for USE, NOT_IMPLEMENTED, or the handler's errors.
    """
    return _RUNNERS[type(statement)](handler, ns, statement, noflush=noflush, unbuffered=unbuffered)
