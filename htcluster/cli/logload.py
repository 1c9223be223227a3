"""Write Apache log entries into LogDb through a mutator of Replicas or Shards, or any ``call``.

:func:`ensure_logdb` creates the namespace and the table when missing;
:func:`mutator_writer` (over ``Replicas.mutator`` / ``Shards.mutator``) and
:func:`call_writer` (over any routing layer's ``call``) turn a target into a
function that writes one batch of entries and returns once it is
acknowledged; :func:`load` drives a writer over a stream of entries and
reports what it did.

Example::

    with open_log("access.log.gz") as lines:
        stats = LogStats()
        replicas = Replicas("127.0.0.1:15867")
        ensure_logdb(functools.partial(replicas.call, write=True), "logs")
        with replicas.mutator("LogDb", namespace="logs") as mutator:
            report = load(iter_entries(lines, stats), mutator_writer(mutator), stats=stats)
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

from .. import codes
from ..errors import ConfigError
from ..types import Cell, ClientException, Schema
from .weblog import TABLE, LogEntry, LogStats, schema

if TYPE_CHECKING:  # pragma: no cover
    from .. import Mutator

__all__ = ["DEFAULT_BATCH", "LoadReport", "Writer", "call_writer", "ensure_logdb", "ensure_table", "load",
           "mutator_writer", "row_client"]

#: Requests per ``set_cells`` call (seven cells each).
DEFAULT_BATCH = 200

#: Writes one batch of entries; returns the number of cells acknowledged.  An entry is a
#: :class:`~htcluster.cli.weblog.LogEntry` or anything else with a ``row`` and a ``cells()``
#: method (a :class:`~htcluster.cli.tsv.TsvRecord`).
Writer = Callable[[list[Any]], int]
#: ``call(method, *args, namespace=None)``, the call shape of every routing layer.
Call = Callable[..., Any]


@dataclass
class LoadReport:
    """What :func:`load` did.

    :ivar lines: input lines read.
    :ivar malformed: lines skipped as malformed.
    :ivar rows: requests written (one row each).
    :ivar cells: cells acknowledged by the brokers.
    :ivar seconds: wall time of the load.
    """

    lines: int = 0
    malformed: int = 0
    rows: int = 0
    cells: int = 0
    seconds: float = 0.0

    @property
    def cells_per_s(self) -> float:
        """Return the write rate in cells per second."""
        return self.cells / self.seconds if self.seconds > 0 else 0.0


def ensure_logdb(call: Call, namespace: str, table: str = TABLE) -> None:
    """Create ``namespace`` and ``table`` (the LogDb schema) unless they exist.

    Creating something another client created meanwhile is not an error.

    :param call: a routing layer's ``call(method, *args, namespace=None)``
        (``Pool.call``, ``Replicas.call``, ...).
    :param namespace: namespace name, e.g. ``"logs"``.
    :param table: table name.
    :raises ConfigError: the table exists without some LogDb column families.
    :raises ClientException: the broker refused (e.g. the parent namespace is missing).
    """
    ensure_table(call, namespace, table, schema(), "LogDb")


def ensure_table(call: Call, namespace: str, table: str, wanted: Schema, kind: str) -> None:
    """Create ``namespace`` and ``table`` with schema ``wanted`` unless they exist.

    :param call: a routing layer's ``call(method, *args, namespace=None)``.
    :param namespace: namespace name.
    :param table: table name.
    :param wanted: the :class:`~htcluster.types.Schema` to create; an existing
        table must have at least its column families.
    :param kind: what the schema is called in the error (``"LogDb"``, ``"freebase"``).
    :raises ConfigError: the table exists without some of the families.
    :raises ClientException: the broker refused.
    """
    if not call("namespace_exists", namespace):
        try:
            call("namespace_create", namespace)
        except ClientException as exc:
            if exc.code != codes.NAMESPACE_EXISTS:
                raise
    if not call("table_exists", table, namespace=namespace):
        try:
            call("table_create", table, wanted, namespace=namespace)
            return
        except ClientException as exc:
            if exc.code not in (codes.MASTER_TABLE_EXISTS, codes.NAME_ALREADY_IN_USE):
                raise
    families = call("table_get_schema", table, namespace=namespace).column_families or {}
    missing = [f for f in (wanted.column_families or {}) if f not in families]
    if missing:
        raise ConfigError(f"table {namespace}/{table} exists without the {kind} column families "
                          f"{', '.join(missing)}; choose another table name or drop it")


def _cells(entries: Iterable[LogEntry]) -> list[Cell]:
    return [cell for entry in entries for cell in entry.cells()]


def call_writer(call: Call, namespace: str, table: str = TABLE) -> Writer:
    """Return a writer sending each batch with one ``call("set_cells", ...)``.

    :param call: a routing layer's ``call(method, *args, namespace=None)``
        (``Pool.call``, the Flask extension's ``ht.call``, ...).
    :param namespace: namespace name, e.g. ``"logs"``.
    :param table: table name.
    :returns: a :data:`Writer`: batch of entries -> cells acknowledged.
    """
    def write(entries: list[LogEntry]) -> int:
        cells = _cells(entries)
        call("set_cells", table, cells, namespace=namespace)
        return len(cells)
    return write


def mutator_writer(mutator: "Mutator") -> Writer:
    """Return a writer that puts each batch's cells into ``mutator`` and flushes it.

    Every flush is a stamped ``set_cells`` per destination, failed over by the
    routing object (``Replicas.mutator``: the first healthy replica;
    ``Shards.mutator``: every shard at once), so a batch that returned is
    acknowledged.

    :param mutator: a :class:`~htcluster.Mutator` (from ``Replicas.mutator``
        or ``Shards.mutator``); make its ``max_cells`` at least a batch's cells
        to send each batch in one flush.
    :returns: a :data:`Writer`: batch of entries -> cells acknowledged.
    :raises FlushError: a flush left cells unacknowledged (they are in the error).
    """
    def write(entries: list[Any]) -> int:
        before = mutator.stats()["acknowledged"]
        mutator.set_cells(_cells(entries))
        mutator.flush()
        return mutator.stats()["acknowledged"] - before
    return write


def row_client(row: str) -> str:
    """Return the client address a LogDb row key starts with (see :func:`~htcluster.cli.weblog.row_key`)."""
    return row.split(" ", 1)[0]


def load(entries: Iterable[LogEntry], write: Writer, batch: int = DEFAULT_BATCH,
         stats: Optional[LogStats] = None,
         on_batch: Optional[Callable[[LoadReport], None]] = None,
         report: Optional[LoadReport] = None) -> LoadReport:
    """Write ``entries`` in batches of ``batch`` requests and count what was acknowledged.

    :param entries: parsed requests, e.g. :func:`~htcluster.cli.weblog.iter_entries`.
    :param write: a writer from this module.
    :param batch: requests per ``set_cells`` call, >= 1.
    :param stats: the :class:`~htcluster.cli.weblog.LogStats` the entries are
        counted in, copied into the report's ``lines`` and ``malformed``.
    :param on_batch: called after each acknowledged batch with the report so far.
    :param report: a :class:`LoadReport` to fill in as batches are acknowledged,
        so that the caller still has the counts when a write fails midway.
    :returns: the :class:`LoadReport`.
    :raises ConfigError: ``batch`` is below 1.
    """
    if batch < 1:
        raise ConfigError(f"batch must be at least 1 request, got {batch}")
    report = report if report is not None else LoadReport()
    start = time.perf_counter()

    def update() -> None:
        report.seconds = time.perf_counter() - start
        if stats is not None:
            report.lines, report.malformed = stats.lines, stats.malformed

    source = iter(entries)
    while pending := list(itertools.islice(source, batch)):
        report.cells += write(pending)
        report.rows += len(pending)
        update()
        if on_batch is not None:
            on_batch(report)
    update()
    return report
