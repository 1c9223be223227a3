"""The ``HqlService`` of the stand-in broker, one ``Handler`` per client connection.

Ids of namespaces, scanners and mutators belong to the connection (:ref:`broker-methods`
5.1, "per-connection is simpler but stricter"); :meth:`Handler.close` flushes
the connection's mutators and forgets its ids.  Namespace and table methods
live here, cell methods in :mod:`.cellops`.  The 48 legacy aliases (:ref:`broker-methods`
2) forward to their canonical methods; every other method of the IDL that the
stand-in lacks answers ``ClientException(NOT_IMPLEMENTED)`` naming it.

Methods take their arguments positionally, in IDL order, as the generated
``Processor`` passes them; HQL (``hql_run.py``) calls them the same way.
``get_cells`` (and so every one-shot read and HQL SELECT) counts the bytes
of its answer while building it: past ``max_answer_size`` it answers a
``ClientException`` asking for a scanner, and every ``GONE_CHECK_BYTES`` it
asks ``client_gone()`` whether anyone still waits (issue 10).
"""
from __future__ import annotations

import logging
import random
import socket
import uuid
from functools import lru_cache
from typing import Any, Callable, Optional

from .. import codes
from .._thrift import HqlService
from .._thrift.ttypes import (Cell, ClientException, HqlResult, HqlResult2, HqlResultAsArrays, NamespaceListing,
                              ScanSpec, Schema, Status, TableSplit)
from ._errors import ClientGone, client_error
from .cellops import CellOperations
from .cells import cell_as_array
from .objects import BrokerContext, Mutator, Scanner, cell_size
from .cell_filter import scan
from .table_schema import TableSchema
from .store import StaleTable, TableRow, join_path, split_path
from .wire import DEFAULT_MAX_FRAME_SIZE

__all__ = ["ALIASES", "Handler"]

log = logging.getLogger("htcluster.broker")

#: Legacy name -> canonical name (:ref:`broker-methods`).
ALIASES = {
    "create_namespace": "namespace_create", "open_namespace": "namespace_open",
    "close_namespace": "namespace_close", "exists_namespace": "namespace_exists",
    "drop_namespace": "namespace_drop", "get_listing": "namespace_get_listing",
    "exists_table": "table_exists", "get_table_id": "table_get_id", "get_schema_str": "table_get_schema_str",
    "get_schema_str_with_ids": "table_get_schema_str_with_ids", "get_schema": "table_get_schema",
    "get_table_splits": "table_get_splits", "rename_table": "table_rename", "drop_table": "table_drop",
    "open_scanner": "scanner_open", "next_cells": "scanner_get_cells",
    "next_cells_as_arrays": "scanner_get_cells_as_arrays", "next_cells_serialized": "scanner_get_cells_serialized",
    "next_row": "scanner_get_row", "next_row_as_arrays": "scanner_get_row_as_arrays",
    "next_row_serialized": "scanner_get_row_serialized", "close_scanner": "scanner_close",
    "open_future": "future_open", "get_future_result": "future_get_result",
    "get_future_result_as_arrays": "future_get_result_as_arrays",
    "get_future_result_serialized": "future_get_result_serialized", "cancel_future": "future_cancel",
    "close_future": "future_close", "open_scanner_async": "async_scanner_open",
    "cancel_scanner_async": "async_scanner_cancel", "close_scanner_async": "async_scanner_close",
    "open_mutator": "mutator_open", "flush_mutator": "mutator_flush", "close_mutator": "mutator_close",
    "open_mutator_async": "async_mutator_open", "set_cell_async": "async_mutator_set_cell",
    "set_cell_as_array_async": "async_mutator_set_cell_as_array", "set_cells_async": "async_mutator_set_cells",
    "set_cells_as_arrays_async": "async_mutator_set_cells_as_arrays",
    "set_cells_serialized_async": "async_mutator_set_cells_serialized",
    "flush_mutator_async": "async_mutator_flush", "cancel_mutator_async": "async_mutator_cancel",
    "close_mutator_async": "async_mutator_close", "refresh_shared_mutator": "shared_mutator_refresh",
    "offer_cells": "shared_mutator_set_cells", "offer_cell": "shared_mutator_set_cell",
    "offer_cells_as_arrays": "shared_mutator_set_cells_as_arrays",
    "offer_cell_as_array": "shared_mutator_set_cell_as_array",
}

#: Bytes of answer built between two checks that the client is still connected.
GONE_CHECK_BYTES = 256_000
#: Bytes of the largest one-shot answer when the handler is given no limit (the default frame limit).
DEFAULT_MAX_ANSWER_SIZE = DEFAULT_MAX_FRAME_SIZE

#: Every method name of the service (the IDL's, including the aliases).
IDL_METHODS = frozenset(name for name in dir(HqlService.Iface) if not name.startswith("_"))


@lru_cache(maxsize=512)
def parse_schema(text: str) -> TableSchema:
    """Return the :class:`TableSchema` of a table's stored schema JSON, parsed once per distinct text.

    The cache is safe because a schema change stores new text; callers only read the result.

    :param text: ``TableRow.schema``, as :meth:`TableSchema.to_json` wrote it.
    :returns: the schema, shared by every caller with the same text.
    """
    return TableSchema.from_json(text)


def _path(name: Optional[str]) -> str:
    """Normalise a namespace name relative to the root: no leading or trailing '/'."""
    return (name or "").strip("/")


class Handler(CellOperations):
    """The service one client connection talks to.

    Every method answers failures as ``ClientException(code, "<text> - <detail>")``
    with the codes of :ref:`error-codes`: an unknown id is
    THRIFTBROKER_BAD_{NAMESPACE,SCANNER,MUTATOR}_ID, a missing table
    TABLE_NOT_FOUND, a bad cell BAD_KEY, a bad ScanSpec BAD_SCAN_SPEC; the
    per-cause list is the table in ``tests/test_broker_errors.py``.

    :param context: state shared by the whole broker process.
    :param peer: ``host:port`` of the client, for log messages.
    :param max_answer_size: bytes of the largest ``get_cells``-style answer.
    :param client_gone: returns True once the client has closed its
        connection; called while long answers are built.
    """

    def __init__(self, context: BrokerContext, peer: str = "", *, max_answer_size: int = DEFAULT_MAX_ANSWER_SIZE,
                 client_gone: Callable[[], bool] = lambda: False) -> None:
        self.context = context
        self.store = context.store
        self.peer = peer
        self.max_answer_size = max_answer_size
        self.client_gone = client_gone
        self._namespaces: dict[int, str] = {}
        self._scanners: dict[int, Scanner] = {}
        self._mutators: dict[int, Mutator] = {}

    def close(self) -> None:
        """Flush this connection's mutators and release all its ids (:ref:`broker-methods`)."""
        for mid, mutator in list(self._mutators.items()):
            self.context.flusher.discard(mutator)
            try:
                mutator.flush()
            except Exception as exc:  # logged and swallowed, as the broker does
                log.error("%s: flushing mutator %d at disconnect failed: %s", self.peer, mid, exc)
        if self._scanners or self._mutators:
            log.info("%s: released %d scanners and %d mutators at disconnect", self.peer,
                     len(self._scanners), len(self._mutators))
        self._scanners.clear()
        self._mutators.clear()
        self._namespaces.clear()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        """Answer NOT_IMPLEMENTED for IDL methods the stand-in lacks; AttributeError otherwise."""
        if name not in IDL_METHODS:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

        def not_implemented(*args: Any, **kwargs: Any) -> None:
            raise client_error(codes.NOT_IMPLEMENTED, f"{name}: the htcluster stand-in broker does not implement "
                                                      "this method (futures, asynchronous scanners and mutators, "
                                                      "create_cell_unique and shutdown are left out)")
        not_implemented.__name__ = name
        return not_implemented

    # ---------------------------------------------------------------- ids

    def _new_id(self, bits: int) -> int:
        """Return a random non-zero id of ``bits`` bits that no id of this connection uses."""
        while True:
            new = random.getrandbits(bits)
            if new and new not in self._namespaces and new not in self._scanners and new not in self._mutators:
                return new

    def namespace_name(self, ns: int) -> str:
        """Return the path of open namespace ``ns`` ('' for the root, 'a/b' nested).

        :raises ClientException: THRIFTBROKER_BAD_NAMESPACE_ID.
        """
        try:
            return self._namespaces[ns]
        except (KeyError, TypeError):
            raise client_error(codes.THRIFTBROKER_BAD_NAMESPACE_ID, f"Invalid namespace id: {ns}") from None

    def _resolve(self, ns: int, name: Optional[str]) -> tuple[str, str]:
        """Return ``(namespace path, table name)`` of a table name relative to ``ns``."""
        base = self.namespace_name(ns)
        name = name or ""
        path = name.strip("/") if name.startswith("/") else join_path(base, name.rstrip("/"))
        return split_path(path)

    def _table(self, ns: int, name: str, cached: bool = False) -> tuple[TableRow, TableSchema]:
        """Return the table and its schema.

        :param cached: the lookup may come from the store's cache
            (:meth:`~.store.CellStore.cached_table`): the caller's next write or
            row fetch then raises ``StaleTable`` if it no longer holds.
        :raises ClientException: BAD_NAMESPACE_ID, TABLE_NOT_FOUND.
        """
        namespace, base = self._resolve(ns, name)
        table = self.store.cached_table(namespace, base) if cached else self.store.table(namespace, base)
        if table is None:
            raise client_error(codes.TABLE_NOT_FOUND, f"table '{join_path(namespace, base)}' does not exist")
        return table, parse_schema(table.schema)

    def _table_by_id(self, table_id: int) -> tuple[TableRow, TableSchema]:
        table = self.store.table_by_id(table_id)
        if table is None:
            raise client_error(codes.TABLE_NOT_FOUND, f"the table (id {table_id}) was dropped")
        return table, parse_schema(table.schema)

    # --------------------------------------------------------- namespaces

    def namespace_create(self, ns: str) -> None:
        """Create namespace ``ns`` (relative to the root; its parent must exist)."""
        path = _path(ns)
        if not path:
            raise client_error(codes.NAMESPACE_EXISTS, "the root namespace always exists")
        self.store.create_namespace(path)

    def namespace_exists(self, ns: str) -> bool:
        """Return whether namespace ``ns`` exists (a table of that name is not one)."""
        return self.store.namespace_id(_path(ns)) is not None

    def namespace_open(self, ns: str) -> int:
        """Return a new random non-zero 32-bit id for namespace ``ns`` (:ref:`broker-methods`).

        ``''`` and ``'/'`` name the root; an absent name (``None``) is refused
        rather than taken for the root.

        :raises ClientException: INVALID_ARGUMENT (no name), NAMESPACE_DOES_NOT_EXIST.
        """
        if ns is None:
            raise client_error(codes.INVALID_ARGUMENT, "namespace_open: no namespace name given; "
                                                       "give '/' to open the root namespace")
        path = _path(ns)
        if self.store.namespace_id(path) is None:
            raise client_error(codes.NAMESPACE_DOES_NOT_EXIST, f"namespace '{path}' does not exist; create it first")
        new = self._new_id(32)
        self._namespaces[new] = path
        return new

    def namespace_close(self, ns: int) -> None:
        """Forget namespace id ``ns`` (its scanners and mutators stay open)."""
        self.namespace_name(ns)
        del self._namespaces[ns]

    def namespace_drop(self, ns: str, if_exists: bool = True) -> None:
        """Drop the empty namespace ``ns``; ``sys`` and ``tmp`` cannot be dropped."""
        self.store.drop_namespace(_path(ns), bool(if_exists))

    def namespace_get_listing(self, ns: int) -> list[NamespaceListing]:
        """Return the tables and sub-namespaces directly inside ``ns``, sorted by name."""
        return [NamespaceListing(name=name, is_namespace=is_ns)
                for name, is_ns in self.store.listing(self.namespace_name(ns))]

    def get_tables(self, ns: int) -> list[str]:
        """Return the names of the tables in ``ns``, sorted."""
        return self.store.table_names(self.namespace_name(ns))

    # ------------------------------------------------------------- tables

    def table_create(self, ns: int, table_name: str, schema: Schema) -> None:
        """Create a table from a Thrift ``Schema`` (:ref:`hql`)."""
        namespace, base = self._resolve(ns, table_name)
        if not base or base.startswith("^"):
            raise client_error(codes.SYNTAX_ERROR, f"bad table name {table_name!r}: it must be non-empty "
                                                   "and must not start with '^'")
        self.store.create_table(namespace, base, TableSchema.from_thrift(schema).to_json())

    def table_alter(self, ns: int, table_name: str, schema: Schema) -> None:
        """Replace a table's schema; families missing from it are dropped with their cells."""
        table, old = self._table(ns, table_name)
        new = TableSchema.from_thrift(schema, previous=old)
        dropped = [fid for fid in old.by_id if fid not in new.by_id]
        self.store.set_schema(table.id, new.to_json(), dropped)

    def refresh_table(self, ns: int, table_name: str) -> None:
        """Do nothing but check that the table exists (schemas are never cached stale here)."""
        self._table(ns, table_name)

    def table_exists(self, ns: int, name: str) -> bool:
        """Return whether table ``name`` exists in ``ns``."""
        namespace, base = self._resolve(ns, name)
        return self.store.table(namespace, base) is not None

    def table_get_id(self, ns: int, table_name: str) -> str:
        """Return the table id as ``'<namespace id>/<table number>'``."""
        table, _ = self._table(ns, table_name)
        return f"{self.store.namespace_id(table.namespace)}/{table.id}"

    def table_get_schema_str(self, ns: int, table_name: str) -> str:
        """Return the schema as XML (:ref:`hql`)."""
        return self._table(ns, table_name)[1].to_xml()

    def table_get_schema_str_with_ids(self, ns: int, table_name: str) -> str:
        """Return the schema as XML with generations and family ids."""
        return self._table(ns, table_name)[1].to_xml(with_ids=True)

    def table_get_schema(self, ns: int, table_name: str) -> Schema:
        """Return the Thrift ``Schema``, only set fields present."""
        return self._table(ns, table_name)[1].to_thrift()

    def table_get_splits(self, ns: int, table_name: str) -> list[TableSplit]:
        """Return one split covering the whole table, served by this host."""
        self._table(ns, table_name)
        return [TableSplit(location="rs1", ip_address="127.0.0.1", hostname=socket.gethostname())]

    def table_rename(self, ns: int, name: str, new_name: str) -> None:
        """Rename a table; a new name with a path (``other/t``, ``/other/t``) moves it to that namespace.

        Codes as upstream's ``Namespace::rename_table`` and Master
        ``OperationRenameTable``: a name starting with ``^`` is SYNTAX_ERROR,
        a new name taken by a table or a namespace is NAME_ALREADY_IN_USE.
        Upstream moves only the name of a table renamed across namespaces
        (its listing stays in the old one, inferred from ``NameIdMapper::rename``);
        the stand-in moves the table whole.

        :param name: the table, relative to ``ns`` unless it starts with '/'.
        :param new_name: its new name, resolved the same way; the namespace must exist.
        :raises ClientException: THRIFTBROKER_BAD_NAMESPACE_ID, TABLE_NOT_FOUND,
            SYNTAX_ERROR, NAMESPACE_DOES_NOT_EXIST, NAME_ALREADY_IN_USE.
        """
        namespace, base = self._resolve(ns, new_name)
        if not base or base.startswith("^") or split_path((name or "").rstrip("/"))[1].startswith("^"):
            raise client_error(codes.SYNTAX_ERROR, f"cannot rename {name!r} to {new_name!r}: table names must be "
                                                   "non-empty and must not start with '^'")
        table, _ = self._table(ns, name)
        self.store.rename_table(table.id, namespace, base)

    def table_drop(self, ns: int, name: str, if_exists: bool = True) -> None:
        """Drop a table and its cells; a missing one is TABLE_NOT_FOUND unless ``if_exists``."""
        namespace, base = self._resolve(ns, name)
        table = self.store.table(namespace, base)
        if table is None:
            if if_exists:
                return
            raise client_error(codes.TABLE_NOT_FOUND, f"table '{join_path(namespace, base)}' does not exist")
        self.store.drop_table(table.id)

    # ------------------------------------------------------------- reads

    def get_cells(self, ns: int, table_name: str, scan_spec: ScanSpec) -> list[Cell]:
        """Return every cell ``scan_spec`` selects, all versions unless limited (:ref:`broker-types`).

        :raises ClientException: the scan's errors (see :func:`.cell_filter.scan`);
            INVALID_OPERATION when the answer would pass ``max_answer_size`` bytes.
        :raises ClientGone: the client closed its connection meanwhile.
        """
        from_cache = [False]
        try:
            try:
                return self._get_cells(ns, table_name, scan_spec, from_cache)
            except StaleTable:  # the cached lookup no longer holds: nothing was read
                pass
            except ClientException:
                if not from_cache[0]:
                    raise
                # refused against a cached schema that may have changed since: read again after a
                # fresh lookup (a read changes nothing)
            self.store.forget_check()
            return self._get_cells(ns, table_name, scan_spec, None)
        finally:
            self.store.forget_check()

    def _get_cells(self, ns: int, table_name: str, scan_spec: ScanSpec, from_cache: Optional[list[bool]]
                   ) -> list[Cell]:
        """``get_cells``; with ``from_cache``, the lookup may be cached and ``from_cache[0]`` says whether it was."""
        table, schema = self._table(ns, table_name, from_cache is not None)
        if from_cache is not None:
            from_cache[0] = self.store.has_check()
        out: list[Cell] = []
        size, check_at, limit = 0, GONE_CHECK_BYTES, self.max_answer_size
        for found in scan(self.store, table.id, schema, scan_spec):
            out.append(found)
            size += cell_size(found)
            if size > limit:
                raise client_error(codes.INVALID_OPERATION,
                                   f"the answer would pass {limit} bytes, the broker's largest one-shot answer "
                                   f"(--max-answer-size); read it with a scanner (scanner_open, or HQL SELECT "
                                   f"with unbuffered=True) or narrow the scan (cell_limit, row intervals)")
            if size >= check_at:
                check_at += GONE_CHECK_BYTES
                if self.client_gone():
                    raise ClientGone(self.peer, "get_cells")
        return out

    # --------------------------------------------------------------- HQL

    def hql_exec(self, ns: int, command: str, noflush: bool = False, unbuffered: bool = False) -> HqlResult:
        """Run one HQL statement in namespace ``ns`` (:ref:`hql`; :func:`.hql_run.execute`)."""
        from . import hql_run  # imports lark: loaded by the first statement, or by the server's warm-up

        return hql_run.execute(self, ns, command, noflush=bool(noflush), unbuffered=bool(unbuffered))

    def hql_query(self, ns: int, command: str) -> HqlResult:
        """Run one HQL statement, buffered and flushed (``hql_exec`` with both flags false)."""
        return self.hql_exec(ns, command, False, False)

    def hql_exec2(self, ns: int, command: str, noflush: bool = False, unbuffered: bool = False) -> HqlResult2:
        """``hql_exec`` with cells as ``[row, cf, cq, value, timestamp]`` arrays."""
        return _as_arrays(HqlResult2, self.hql_exec(ns, command, noflush, unbuffered))

    def hql_query2(self, ns: int, command: str) -> HqlResult2:
        """``hql_query`` with cells as arrays."""
        return self.hql_exec2(ns, command, False, False)

    def hql_exec_as_arrays(self, ns: int, command: str, noflush: bool = False,
                           unbuffered: bool = False) -> HqlResultAsArrays:
        """``hql_exec`` with cells as arrays (same shape as ``hql_exec2``)."""
        return _as_arrays(HqlResultAsArrays, self.hql_exec(ns, command, noflush, unbuffered))

    def hql_query_as_arrays(self, ns: int, command: str) -> HqlResultAsArrays:
        """``hql_query`` with cells as arrays."""
        return self.hql_exec_as_arrays(ns, command, False, False)

    # -------------------------------------------------------------- misc

    def status(self) -> Status:
        """Return ``Status(code=0, text='')``, as the broker always does (:ref:`broker-methods`)."""
        return Status(code=0, text="")

    def error_get_text(self, error_code: int) -> str:
        """Return the text of a Hypertable error code, or ``'ERROR NOT REGISTERED'``."""
        return codes.text(error_code)

    def generate_guid(self) -> str:
        """Return a new 36-character GUID."""
        return str(uuid.uuid4())


def _as_arrays(kind: type, result: HqlResult) -> Any:
    cells = None if result.cells is None else [cell_as_array(c) for c in result.cells]
    return kind(results=result.results, cells=cells, scanner=result.scanner, mutator=result.mutator)


for _alias, _canonical in ALIASES.items():
    if hasattr(Handler, _canonical):
        setattr(Handler, _alias, getattr(Handler, _canonical))
