"""The cell methods of :class:`~htcluster.broker.handler.Handler`: reads, writes, scanners, mutators.

One-shot writes (``set_cell*``) are validated as a whole and written in one
transaction before they return; mutators buffer until ``mutator_flush``,
``mutator_close``, their flush interval, or the end of the connection;
shared mutators are broker-wide and flushed every ``MutateSpec.flush_interval``
milliseconds (:ref:`broker-methods`, 5.3).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Optional

from thrift.Thrift import TApplicationException

from .. import codes
from .._thrift.ttypes import Cell, CellInterval, ClientException, KeyFlag, MutateSpec, RowInterval, ScanSpec
from . import serialized
from ._errors import client_error
from .cells import array_to_write, cell_as_array, cell_to_write, to_write
from .objects import Mutator, Scanner
from .cell_filter import scan
from .table_schema import TableSchema, parse_counter
from .store import StaleTable, WriteCell

if TYPE_CHECKING:  # pragma: no cover
    from .objects import BrokerContext
    from .store import CellStore, TableRow

__all__ = ["CellOperations"]

CellAsArray = list[str]


class CellOperations:
    """Mixin of the cell-level ``ClientService`` methods.

    The state and helpers declared below are the :class:`~htcluster.broker.handler.Handler`'s
    (the one class this is mixed into); the declarations let each method be type-checked here.
    """

    context: "BrokerContext"
    store: "CellStore"
    _scanners: dict[int, Scanner]
    _mutators: dict[int, Mutator]

    if TYPE_CHECKING:  # pragma: no cover
        def _new_id(self, bits: int) -> int: ...
        def _table(self, ns: int, name: str, cached: bool = False) -> tuple[TableRow, TableSchema]: ...
        def _table_by_id(self, table_id: int) -> tuple[TableRow, TableSchema]: ...

    # ------------------------------------------------------------- reads

    def get_cells(self, ns: int, table_name: str, scan_spec: ScanSpec) -> list[Cell]:
        """Return every cell ``scan_spec`` selects, all versions unless limited (:ref:`broker-types`)."""
        table, schema = self._table(ns, table_name)
        return list(scan(self.store, table.id, schema, scan_spec))

    def get_cells_as_arrays(self, ns: int, name: str, scan_spec: ScanSpec) -> list[CellAsArray]:
        """``get_cells`` with cells as ``[row, cf, cq, value, timestamp]``."""
        return [cell_as_array(c) for c in self.get_cells(ns, name, scan_spec)]

    def get_row(self, ns: int, table_name: str, row: str) -> list[Cell]:
        """Return the newest version of every cell of ``row``."""
        if not row:
            raise client_error(codes.BAD_KEY, "get_row needs a non-empty row key")
        if "\0" in row:
            raise client_error(codes.BAD_KEY, f"get_row: the row {row!r} holds a NUL byte; keys are C strings "
                                              "upstream, so NUL cannot be part of one")
        spec = ScanSpec(row_intervals=[RowInterval(row, True, row, True)], versions=1)
        return self.get_cells(ns, table_name, spec)

    def get_row_as_arrays(self, ns: int, name: str, row: str) -> list[CellAsArray]:
        """``get_row`` with cells as arrays."""
        return [cell_as_array(c) for c in self.get_row(ns, name, row)]

    def get_cell(self, ns: int, table_name: str, row: str, column: str) -> bytes:
        """Return the newest value of ``row``/``column`` ('cf' or 'cf:q'), ``b''`` when there is none.

        An empty row fails outside the declared exceptions, as a
        ``TApplicationException`` (:ref:`calling-methods`).
        """
        if not row:
            raise TApplicationException(TApplicationException.UNKNOWN, f"{codes.text(codes.BAD_KEY)} - empty row")
        if "\0" in row:
            raise client_error(codes.BAD_KEY, f"get_cell: the row {row!r} holds a NUL byte; keys are C strings "
                                              "upstream, so NUL cannot be part of one")
        spec = ScanSpec(cell_intervals=[CellInterval(row, column, True, row, column, True)], columns=[column],
                        versions=1, cell_limit=1)
        cells = self.get_cells(ns, table_name, spec)
        return (cells[0].value or b"") if cells else b""

    def get_cells_serialized(self, ns: int, name: str, scan_spec: ScanSpec) -> bytes:
        """``get_cells`` as one serialized-cells buffer (:ref:`cells-serialized`)."""
        return serialized.encode(self.get_cells(ns, name, scan_spec), finished=True)

    def get_row_serialized(self, ns: int, table_name: str, row: str) -> bytes:
        """``get_row`` as a serialized-cells buffer."""
        return serialized.encode(self.get_row(ns, table_name, row), finished=True)

    # ------------------------------------------------------------ writes

    def _write(self, ns: int, table_name: str, convert: Callable[[TableSchema], list[WriteCell]]) -> None:
        """Write the cells ``convert(schema)`` returns, in one transaction, looking the table up in the cache first.

        The write checks the cached lookup in its own transaction; when it no
        longer holds (``StaleTable``: nothing was written), the table is looked
        up again and the cells converted again with its current schema.  Cells
        refused against a cached schema are checked again against a fresh one
        before the refusal is answered.
        """
        try:
            for cached in (True, False):
                table, schema = self._table(ns, table_name, cached)
                from_cache = self.store.has_check()
                try:
                    rows = _counted(convert(schema), schema)
                except ClientException:
                    if from_cache:  # perhaps refused by a schema changed since: ask again
                        continue
                    raise
                try:
                    self.store.write(table.id, rows)
                    return
                except StaleTable:
                    if not from_cache:  # pragma: no cover - a fresh lookup carries no check
                        raise
        finally:
            self.store.forget_check()

    def set_cells(self, ns: int, table_name: str, cells: list[Cell]) -> None:
        """Write ``cells`` and flush before returning (all or nothing)."""
        self._write(ns, table_name, lambda schema: [cell_to_write(c, schema) for c in cells or ()])

    def set_cell(self, ns: int, table_name: str, cell: Cell) -> None:
        """Write one cell and flush."""
        self.set_cells(ns, table_name, [cell])

    def set_cells_as_arrays(self, ns: int, table_name: str, cells: list[CellAsArray]) -> None:
        """Write ``[row, cf, cq, value, ts, rev, flag]`` arrays (1-7 items each) and flush."""
        self._write(ns, table_name, lambda schema: [array_to_write(c, schema) for c in cells or ()])

    def set_cell_as_array(self, ns: int, table_name: str, cell: CellAsArray) -> None:
        """Write one array cell and flush."""
        self.set_cells_as_arrays(ns, table_name, [cell])

    def set_cells_serialized(self, ns: int, table_name: str, cells: bytes) -> None:
        """Write a serialized-cells buffer and flush (:ref:`cells-serialized`)."""
        self._write(ns, table_name, lambda schema: [_from_parsed(c, schema) for c in serialized.decode(cells)[0]])

    # ---------------------------------------------------------- scanners

    def scanner_open(self, ns: int, table_name: str, scan_spec: ScanSpec) -> int:
        """Open a scanner; errors of the scan itself come with the first fetch (:ref:`broker-types`)."""
        table, schema = self._table(ns, table_name)
        cells = scan(self.store, table.id, schema, scan_spec)
        sid = self._new_id(62)
        self._scanners[sid] = Scanner(cells)
        return sid

    def _scanner(self, scanner: int) -> Scanner:
        try:
            return self._scanners[scanner]
        except (KeyError, TypeError):
            raise client_error(codes.THRIFTBROKER_BAD_SCANNER_ID, f"Invalid scanner id: {scanner}") from None

    def scanner_get_cells(self, scanner: int) -> list[Cell]:
        """Return the next batch (about 512,000 bytes); ``[]`` at the end."""
        return self._scanner(scanner).next_cells()

    def scanner_get_cells_as_arrays(self, scanner: int) -> list[CellAsArray]:
        """``scanner_get_cells`` with cells as arrays."""
        return [cell_as_array(c) for c in self.scanner_get_cells(scanner)]

    def scanner_get_cells_serialized(self, scanner: int) -> bytes:
        """``scanner_get_cells`` as a serialized buffer; EOS marks the last one."""
        found = self._scanner(scanner)
        cells = found.next_cells()
        return serialized.encode(cells, finished=found.exhausted())

    def scanner_get_row_serialized(self, scanner: int) -> bytes:
        """``scanner_get_row`` as a serialized buffer; EOS marks the last one."""
        found = self._scanner(scanner)
        cells = found.next_row()
        return serialized.encode(cells, finished=found.exhausted())

    def scanner_get_row(self, scanner: int) -> list[Cell]:
        """Return the cells of the next row; ``[]`` at the end."""
        return self._scanner(scanner).next_row()

    def scanner_get_row_as_arrays(self, scanner: int) -> list[CellAsArray]:
        """``scanner_get_row`` with cells as arrays."""
        return [cell_as_array(c) for c in self.scanner_get_row(scanner)]

    def scanner_close(self, scanner: int) -> None:
        """Close a scanner."""
        self._scanner(scanner)
        del self._scanners[scanner]

    # ---------------------------------------------------------- mutators

    def mutator_open(self, ns: int, table_name: str, flags: int = 0, flush_interval: int = 0) -> int:
        """Open a mutator; ``flush_interval`` (milliseconds, 0 for none) flushes it periodically."""
        table, _ = self._table(ns, table_name)
        interval = max(flush_interval or 0, 0) / 1000.0
        mutator = Mutator(self.store, table.id, interval)
        if interval:
            self.context.flusher.add(mutator)
        mid = self._new_id(62)
        self._mutators[mid] = mutator
        return mid

    def _mutator(self, mutator: int) -> Mutator:
        try:
            return self._mutators[mutator]
        except (KeyError, TypeError):
            raise client_error(codes.THRIFTBROKER_BAD_MUTATOR_ID, f"Invalid mutator id: {mutator}") from None

    def _buffer(self, mutator: Mutator, cells: Iterable, convert: Callable[..., WriteCell]) -> None:
        _, schema = self._table_by_id(mutator.table_id)
        mutator.add(_counted([convert(c, schema) for c in cells or ()], schema))

    def mutator_set_cells(self, mutator: int, cells: list[Cell]) -> None:
        """Buffer cells; they become visible when the mutator is flushed."""
        self._buffer(self._mutator(mutator), cells, cell_to_write)

    def mutator_set_cell(self, mutator: int, cell: Cell) -> None:
        """Buffer one cell."""
        self.mutator_set_cells(mutator, [cell])

    def mutator_set_cells_as_arrays(self, mutator: int, cells: list[CellAsArray]) -> None:
        """Buffer array cells."""
        self._buffer(self._mutator(mutator), cells, array_to_write)

    def mutator_set_cell_as_array(self, mutator: int, cell: CellAsArray) -> None:
        """Buffer one array cell."""
        self.mutator_set_cells_as_arrays(mutator, [cell])

    def mutator_set_cells_serialized(self, mutator: int, cells: bytes, flush: bool = False) -> None:
        """Buffer a serialized-cells buffer; flush if ``flush`` or its end byte asks for it."""
        found = self._mutator(mutator)
        parsed, flush_requested = serialized.decode(cells)
        self._buffer(found, parsed, _from_parsed)
        if flush or flush_requested:
            found.flush()

    def mutator_flush(self, mutator: int) -> None:
        """Write the buffered cells; the mutator stays open."""
        self._mutator(mutator).flush()

    def mutator_close(self, mutator: int) -> None:
        """Flush, then close; if the flush fails the mutator stays open (:ref:`broker-methods`)."""
        found = self._mutator(mutator)
        found.flush()
        self.context.flusher.discard(found)
        del self._mutators[mutator]

    # --------------------------------------------------- shared mutators

    def _offer(self, ns: int, table_name: str, spec: Optional[MutateSpec], cells: Iterable,
               convert: Callable[..., WriteCell]) -> None:
        table, schema = self._table(ns, table_name)
        rows = _counted([convert(c, schema) for c in cells or ()], schema)
        key, interval = _shared_key(table.id, spec)
        mutator = self.context.shared.get(key, lambda: Mutator(self.store, table.id, interval))
        mutator.add(rows)
        if interval <= 0:
            mutator.flush()

    def shared_mutator_set_cells(self, ns: int, table_name: str, mutate_spec: MutateSpec,
                                 cells: list[Cell]) -> None:
        """Add cells to the broker-wide mutator of (table, appname, interval, flags); no durability at return."""
        self._offer(ns, table_name, mutate_spec, cells, cell_to_write)

    def shared_mutator_set_cell(self, ns: int, table_name: str, mutate_spec: MutateSpec,
                                cell: Cell) -> None:
        """Add one cell to a shared mutator."""
        self._offer(ns, table_name, mutate_spec, [cell], cell_to_write)

    def shared_mutator_set_cells_as_arrays(self, ns: int, table_name: str, mutate_spec: MutateSpec,
                                           cells: list[CellAsArray]) -> None:
        """Add array cells to a shared mutator."""
        self._offer(ns, table_name, mutate_spec, cells, array_to_write)

    def shared_mutator_set_cell_as_array(self, ns: int, table_name: str, mutate_spec: MutateSpec,
                                         cell: CellAsArray) -> None:
        """Add one array cell to a shared mutator."""
        self._offer(ns, table_name, mutate_spec, [cell], array_to_write)

    def shared_mutator_refresh(self, ns: int, table_name: str, mutate_spec: MutateSpec) -> None:
        """Flush and forget the shared mutator of this spec; the next write starts a new one."""
        table, _ = self._table(ns, table_name)
        self.context.shared.refresh(_shared_key(table.id, mutate_spec)[0])


def _counted(cells: list[WriteCell], schema: TableSchema) -> list[WriteCell]:
    """Return ``cells`` once every insert into a COUNTER family holds a counter write.

    :raises ClientException: INVALID_ARGUMENT naming the row, family and value
        (the protocol names no code for it; the stand-in's choice), before
        anything is written or buffered.
    """
    if schema.counter_ids:
        for c in cells:
            if c.flag == KeyFlag.INSERT and c.family in schema.counter_ids and parse_counter(c.value) is None:
                shown = c.value[:40].decode("utf-8", "replace")
                raise client_error(codes.INVALID_ARGUMENT,
                                   f"row {c.row!r}: column family '{schema.by_id[c.family].name}' is a "
                                   f"COUNTER; its value must be a signed 64-bit integer to add ('5', "
                                   f"'-2') or '=N' to reset, not '{shown}'")
    return cells


def _from_parsed(cell: serialized.Parsed, schema: TableSchema) -> WriteCell:
    return to_write(schema, cell.row, cell.family, cell.qualifier, cell.value, cell.ts, cell.rev, cell.flag)


def _shared_key(table_id: int, spec: Optional[MutateSpec]) -> tuple[tuple, float]:
    """Return the registry key of a shared mutator and its flush interval in seconds."""
    spec = spec or MutateSpec()
    interval = 1000 if spec.flush_interval is None else spec.flush_interval
    return (table_id, spec.appname or "", interval, spec.flags), max(interval, 0) / 1000.0
