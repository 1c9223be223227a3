"""Replicas: several ThriftBrokers in front of the same Hypertable data.

:class:`Replicas` sends writes to the first healthy host in the order given
and fails over sequentially; it balances reads over every healthy host.
Retrying never duplicates a write: cells written with ``set_cell(s)`` and
``mutator_set_cell(s)`` get a client-side timestamp (:func:`next_timestamp`)
when they have none, so a retried write stores the same versions again, and
the reads of :class:`Replicas` collapse such repeats (:func:`collapse`,
protocol.md appendix C).  HQL ``INSERT`` and ``DELETE`` are sent the same way
(:func:`hql_write_cells`).  Other writes are retried only when the request
never left, else they raise :class:`~htcluster.errors.WriteOutcomeUnknown`.
One exception: a cell of a ``COUNTER`` family is an increment, and a repeated
increment adds again even with the same timestamp (as on Hypertable); send
counter writes with ``retry=False`` Replicas, or read back before repeating.
Client timestamps come from this machine's clock: keep it in
step (NTP) with the brokers' if other writers leave timestamps to the broker.
:meth:`Replicas.scan` resumes a scan on another replica after the last
complete row it delivered.
"""
from __future__ import annotations

import copy
import threading
import time
from typing import Any, Callable, ContextManager, Iterable, Iterator, Optional, Sequence, Union

from .errors import BrokerUnavailable, DeadlineExceeded
from .failover import Failover
from .hosts import HostLike
from . import hql
from .policy import hql_is_read, is_write
from .resource import Resource, scan_cells
from .resources import Resources
from .types import Cell, ClientException, HqlResult, HqlResult2, HqlResultAsArrays, Key, KeyFlag, RowInterval, ScanSpec

__all__ = ["COLLAPSED_METHODS", "HQL_WRITE_ANSWERS", "STAMPED_METHODS", "Replicas", "collapse", "hql_write_cells",
           "next_timestamp", "stamp_cells", "widen_versions"]

#: Writes whose cells get a client-side timestamp; their last argument is a Cell or a list of them.
STAMPED_METHODS = frozenset({"set_cell", "set_cells", "mutator_set_cell", "mutator_set_cells"})
#: Reads whose cells are collapsed (a list of Cells, or an HqlResult with ``cells``).
COLLAPSED_METHODS = frozenset({"get_cells", "get_row", "hql_query", "hql_exec"})

_stamp_lock = threading.Lock()
_last_stamp = 0


def next_timestamp() -> int:
    """Return nanoseconds since the epoch, strictly increasing across all threads of this process."""
    global _last_stamp
    with _stamp_lock:
        _last_stamp = max(time.time_ns(), _last_stamp + 1)
        return _last_stamp


def stamp_cells(cells: Union[Cell, Sequence[Cell]]) -> Union[Cell, list[Cell]]:
    """Return ``cells`` with a timestamp on each cell that has none (:func:`next_timestamp`).

    Stamped cells are copies; the caller's objects are never changed.  A cell
    without a key is left as it is (the broker refuses it with BAD_KEY).

    :param cells: one :class:`~htcluster.types.Cell` or a sequence of them.
    :returns: a Cell, or a new list of Cells.
    """
    if isinstance(cells, Cell):
        return _stamped(cells)
    return [_stamped(cell) for cell in cells]


def _stamped(cell: Cell) -> Cell:
    key = cell.key
    if key is None or key.timestamp is not None:
        return cell
    # built field by field: a third of the cost of copy.copy on these Thrift structs
    return Cell(Key(key.row, key.column_family, key.column_qualifier, next_timestamp(), key.revision, key.flag),
                cell.value)


#: HQL methods whose INSERT and DELETE :class:`Replicas` sends as stamped ``set_cells``, with the
#: (empty) answer the broker gives such a statement through each.
HQL_WRITE_ANSWERS: dict[str, Callable[[], Any]] = {
    "hql_query": HqlResult, "hql_exec": HqlResult, "hql_query2": HqlResult2, "hql_exec2": HqlResult2,
    "hql_query_as_arrays": HqlResultAsArrays, "hql_exec_as_arrays": HqlResultAsArrays,
}


def hql_write_cells(method: str, args: Sequence[Any]) -> Optional[tuple[Any, ...]]:
    """Turn an HQL ``INSERT`` or ``DELETE`` call into the arguments of the equivalent ``set_cells``.

    The statement is parsed with the broker's own grammar (:mod:`htcluster.hql`),
    so the cells are the ones the broker's INSERT would write (quoting,
    escapes, 3- and 4-tuples, ``GUID()`` evaluated once, here); DELETE gives
    its delete markers.  ``hql_exec`` with ``noflush`` is left alone (it leaves
    a mutator open on the connection), and so is anything that does not parse:
    the broker answers it as before.

    :param method: the broker method, e.g. ``'hql_query'``.
    :param args: its arguments (the namespace id, if given, then the statement, then the flags).
    :returns: ``(*leading args, table, cells)`` for ``set_cells``, or ``None``.
    """
    if method not in HQL_WRITE_ANSWERS:
        return None
    at = next((i for i, a in enumerate(args) if isinstance(a, str)), None)
    if at is None or (method.startswith("hql_exec") and len(args) > at + 1 and args[at + 1]):
        return None
    command = args[at]
    if hql_is_read(command):
        return None
    try:
        statement = hql.parse(command)
    except ClientException:
        return None
    if not isinstance(statement, (hql.Insert, hql.Delete)) or not statement.cells:
        return None
    return (*args[:at], statement.table, list(statement.cells))


def _all_stamped(cells: Union[Cell, Sequence[Cell]]) -> bool:
    cells = [cells] if isinstance(cells, Cell) else cells
    return all(c.key is not None and c.key.timestamp is not None for c in cells)


def collapse(cells: Iterable[Cell], versions: int = 0) -> list[Cell]:
    """Keep one cell per (row, family, qualifier, timestamp, flag): the newest revision.

    A write retried with the same timestamps is stored twice, as two
    revisions (protocol.md appendix C); readers should see it once.  Order
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
    (protocol.md appendix C), so asking for ``versions * copies`` and keeping
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


class Replicas(Resources):
    """Brokers that serve the same data: writes to the first healthy host, reads balanced.

    :param hosts: the brokers, in write preference order.
    :param options: as for :class:`~htcluster.resources.Resources` (``retry``,
        ``backoff``, ``socket_timeout``, ``probe_timeout``, ``hedge`` ... in seconds).
        With ``hedge``, a read or a write whose cells all carry timestamps (every
        ``set_cell(s)``, once stamped) that has no answer after ``hedge`` seconds
        also goes to the next healthy replica; the first answer wins.

    Example::

        replicas = Replicas('ht1,ht2,ht3', socket_timeout=10.0)
        replicas.call('set_cells', 'logs', cells, namespace='web')   # ht1, else ht2 ...
        replicas.call('hql_query', 'SELECT * FROM logs', namespace='web')  # any live host
    """

    def __init__(self, hosts: Union[str, Iterable[HostLike]], **options: Any) -> None:
        super().__init__(hosts, **options)
        self.order = list(self)

    def call(self, method: str, *args: Any, namespace: Optional[str] = None, write: Optional[bool] = None,
             timeout: Optional[float] = None, hedge: Optional[float] = None) -> Any:
        """Call ``method`` on a write host or on any read host, failing over as it is safe.

        :param method: a broker method (protocol.md section 2).
        :param namespace: a namespace name whose per-connection id is put before ``args``.
        :param write: route as a write (``True``) or a read (``False``); default
            from the method and, for HQL, its verb (:func:`htcluster.policy.is_write`).
            An HQL ``INSERT`` or ``DELETE`` is sent as the equivalent stamped
            ``set_cells`` (:func:`hql_write_cells`), so it fails over safely and
            answers an empty result as the broker would.
        :param timeout: seconds for the whole call: pool waits, every attempt and
            failover (default :attr:`call_timeout`).
        :param hedge: seconds without an answer after which a read, or a write whose
            cells all carry timestamps, is also sent to the next healthy host
            (default :attr:`hedge`; 0: not hedged; see :mod:`htcluster.hedge`).
        :returns: the broker's answer; cells of reads collapsed by :func:`collapse`
            (``get_cells`` with ``versions`` >= 2 asks for more, see :func:`widen_versions`;
            an HQL ``MAX_VERSIONS n`` >= 2 may show fewer than n after a retried write).
        :raises NoHostAvailable: no host could serve the call (each host's cause inside).
        :raises WriteOutcomeUnknown: a write that cannot be safely repeated failed after it was sent.
        :raises DeadlineExceeded: ``timeout`` ran out.
        :raises InvalidRequest: an argument cannot be encoded (no host is blamed).
        :raises ClientException: the broker refused the call.
        """
        converted = hql_write_cells(method, args)
        if converted is not None:  # fails over like any stamped write: it cannot apply twice
            self.call("set_cells", *converted, namespace=namespace, write=True, timeout=timeout)
            return HQL_WRITE_ANSWERS[method]()
        writes = is_write(method, args)
        write = writes if write is None else write
        idempotent = not writes
        keep = 0
        if method in STAMPED_METHODS and args:
            args = (*args[:-1], stamp_cells(args[-1]))
            idempotent = _all_stamped(args[-1])
        elif method == "get_cells" and args and isinstance(args[-1], ScanSpec):
            spec, keep = widen_versions(args[-1], len(self.order))
            args = (*args[:-1], spec)
        result = self._route(method, args, namespace, write, idempotent, timeout, hedge)
        if method in COLLAPSED_METHODS:
            if isinstance(result, list):
                return collapse(result, keep)
            if getattr(result, "cells", None) is not None:
                result.cells = collapse(result.cells)
        return result

    def _route(self, method: str, args: tuple[Any, ...], namespace: Optional[str], write: bool,
               idempotent: bool, timeout: Optional[float], hedge: Optional[float]) -> Any:
        """Send one call to the write host in order (``write``) or to a read host, failing over; hedged
        when ``hedge`` (or :attr:`hedge`) is set and the call is safe to repeat (``idempotent``)."""
        return self.routed_call(method, args, namespace, self.order, write, idempotent, timeout, hedge)

    def connection(self, write: bool = True, *,  # type: ignore[override]
                   host: Optional[HostLike] = None) -> "ContextManager[Resource]":
        """Check out one connection: to the write host (``write=True``) or to any read host.

        Use :func:`stamp_cells` on cells written through a mutator so that they
        carry their own timestamps.

        :param write: ``True``: the first healthy host in order; ``False``: by priority.
        :param host: this host only.
        :returns: a context manager giving a :class:`~htcluster.resource.Resource`.
        :raises NoHostAvailable: no host could be connected to.
        """
        return super().connection(host, hosts=self.order, ordered=write)

    def scan(self, table: str, scan_spec: Optional[ScanSpec] = None, *, namespace: str,
             host: Optional[HostLike] = None, timeout: Optional[float] = None) -> Iterator[Cell]:
        """Yield the cells of ``table``; when the broker dies mid-scan, resume on another replica.

        Cells are delivered a whole row at a time (one row is buffered), so a
        resumed scan starts just after the last complete row delivered, with
        ``row_limit``/``cell_limit`` reduced by what was delivered.  Several row
        intervals are scanned one after the other, as the broker does (limits
        apply per interval, protocol.md 5.2).  Repeated versions are collapsed
        (with ``versions`` >= 2, more are asked for: :func:`widen_versions`).

        :param table: the table name.
        :param scan_spec: what to read (``None``: everything); never modified.
        :param namespace: the namespace name.
        :param host: start on this host (default: chosen by priority).
        :param timeout: seconds each round trip (opening, each batch) may take;
            a replica that does not answer in time is left for the next one.
        :returns: a generator of :class:`~htcluster.types.Cell`.
        :raises NoHostAvailable: every replica failed.
        :raises ClientException: e.g. the table does not exist.
        """
        spec, keep = widen_versions(scan_spec if scan_spec is not None else ScanSpec(), len(self.order))
        for unit in _units(spec):
            yield from self._scan_unit(table, unit, namespace, host, keep, timeout)

    def _scan_unit(self, table: str, spec: ScanSpec, namespace: str, host: Optional[HostLike],
                   keep: int, timeout: Optional[float]) -> Iterator[Cell]:
        progress = _Progress(spec, keep)
        first = [self.host_key(host)] if host is not None else []
        hosts = first + [h for h in self if h not in first]
        attempts = Failover(self, f"scan of {table}", hosts, ordered=bool(first))
        while progress.spec is not None:
            name = attempts.next_host()
            try:
                with self.health.watch(name), self[name].connection() as r:
                    for batch in scan_cells(r, r.mns[namespace], table, progress.spec, batch=True, timeout=timeout):
                        yield from progress.feed(batch)
                    yield from progress.finish()
                    return
            except (BrokerUnavailable, DeadlineExceeded) as exc:
                attempts.failed(name, exc)
                progress.resume()


def _units(spec: ScanSpec) -> list[ScanSpec]:
    """Split a spec with several row (or cell) intervals into one spec per interval.

    The broker scans intervals one after the other with limits per interval
    (protocol.md 5.2), so this changes nothing but makes resuming simple.
    ``scan_and_filter_rows`` specs are kept whole: they are one pass.
    """
    if spec.scan_and_filter_rows:
        return [spec]
    for field in ("row_intervals", "cell_intervals"):
        intervals = getattr(spec, field) or []
        if len(intervals) > 1:
            units = []
            for interval in intervals:
                unit = copy.copy(spec)
                setattr(unit, field, [interval])
                units.append(unit)
            return units
    return [spec]


class _Progress:
    """What a scan delivered so far, and the spec that continues it on another host.

    Cells are held back until their row is complete (the next row starts, or
    the scan ends), so that a resumed scan can start after a whole row.
    """

    def __init__(self, spec: ScanSpec, keep: int = 0) -> None:
        self.original = spec
        self.keep = keep  # versions per column kept by collapse (0: all)
        self.spec: Optional[ScanSpec] = spec
        self.buffer: list[Cell] = []
        self.last_row: Optional[str] = None   # last complete row delivered
        self.skip_through: Optional[str] = None  # rows <= this were delivered by an earlier attempt
        self.rows = 0    # complete rows delivered
        self.cells = 0   # raw cells (before collapse) of those rows

    def feed(self, batch: Iterable[Cell]) -> Iterator[Cell]:
        for cell in batch:
            row = cell.key.row
            if self.skip_through is not None and row <= self.skip_through:
                continue
            if self.buffer and row != self.buffer[0].key.row:
                yield from self._deliver()
            self.buffer.append(cell)

    def finish(self) -> Iterator[Cell]:
        if self.buffer:
            yield from self._deliver()
        self.spec = None

    def _deliver(self) -> Iterator[Cell]:
        row_cells, self.buffer = self.buffer, []
        self.last_row = row_cells[0].key.row
        self.rows += 1
        self.cells += len(row_cells)
        yield from collapse(row_cells, self.keep)

    def resume(self) -> None:
        """Set :attr:`spec` to the scan of what is left (``None``: nothing is)."""
        self.buffer = []
        spec = self.original
        if self.last_row is None:
            self.spec = spec
            return
        if spec.cell_intervals or spec.scan_and_filter_rows:
            # no interval starts "after row R" here: run the same scan again, skip what was delivered
            self.spec, self.skip_through = spec, self.last_row
            return
        rest = copy.copy(spec)
        interval = copy.copy(spec.row_intervals[0]) if spec.row_intervals else RowInterval()
        interval.start_row, interval.start_row_binary, interval.start_inclusive = self.last_row, None, False
        rest.row_intervals = [interval]
        rest.row_offset = rest.cell_offset = 0  # consumed before the first delivered row
        for limit, used in (("row_limit", self.rows), ("cell_limit", self.cells)):
            if getattr(spec, limit):
                left = getattr(spec, limit) - used
                if left <= 0:
                    self.spec = None
                    return
                setattr(rest, limit, left)
        self.spec = rest
