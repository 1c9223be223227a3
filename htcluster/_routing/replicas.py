"""Replicas: several ThriftBrokers in front of the same Hypertable data.

:class:`Replicas` sends writes to the first healthy host in the order given
and fails over sequentially; it balances reads over every healthy host.
Retrying never duplicates a write: cells written with ``set_cell(s)`` and
``mutator_set_cell(s)`` get a client-side timestamp (:func:`next_timestamp`)
when they have none, so a retried write stores the same versions again, and
the reads of :class:`Replicas` collapse such repeats (:func:`collapse`,
:ref:`cell-flags`).  HQL ``INSERT`` and ``DELETE`` are sent the same way
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

from typing import Any, Iterator, Optional

from .._policy.classify import is_write
from .._policy.hql_writes import HQL_WRITE_ANSWERS, all_stamped, hql_write_cells
from .._policy.batches import DEFAULT_MAX_BYTES, DEFAULT_MAX_CELLS
from .._policy.plans import Plan
from .._policy.steps import Steps, drive, stream
from .._policy.resume import scan_units
from .._policy.stamps import next_timestamp, stamp_batch, stamp_cells
from .._policy.versions import COLLAPSED_METHODS, collapse, widen_versions
from ..errors import ConfigError
from ..hosts import HostLike
from ..types import Cell, ScanSpec
from .base import Connection, Routed
from .mutator import Mutator, replicas_mutator
from .scan_all import resumable_scan_steps
from .typed import BrokerCalls, NamespaceCalls

__all__ = ["STAMPED_METHODS", "Replicas", "next_timestamp", "stamp_cells"]

#: Writes whose cells get a client-side timestamp; their last argument is a Cell or a list of them.
STAMPED_METHODS = frozenset({"set_cell", "set_cells", "mutator_set_cell", "mutator_set_cells"})

class Replicas(Routed):
    """Brokers that serve the same data: writes to the first healthy host, reads balanced.

    :param hosts: the brokers, in write preference order.
    :param options: as for every routing class (``retry``, ``backoff``,
        ``socket_timeout``, ``probe_timeout``, ``hedge`` ... in seconds; see
        :class:`~htcluster._routing.base.Routed`).  With ``hedge``, a read or a
        write whose cells all carry timestamps (every ``set_cell(s)``, once
        stamped) that has no answer after ``hedge`` seconds also goes to the next
        healthy replica; the first answer wins.

    Example::

        replicas = Replicas('ht1,ht2,ht3', socket_timeout=10.0)
        replicas.call('set_cells', 'logs', cells, namespace='web')   # ht1, else ht2 ...
        replicas.call('hql_query', 'SELECT * FROM logs', namespace='web')  # any live host
    """

    @property
    def order(self) -> tuple[str, ...]:
        """The write order: the hosts as given (by the constructor, or the last ``set_hosts``)."""
        return self.hosts

    def call(self, method: str, *args: Any, namespace: Optional[str] = None, write: Optional[bool] = None,
             timeout: Optional[float] = None, hedge: Optional[float] = None) -> Any:
        """Call ``method`` on a write host or on any read host, failing over as it is safe.

        :param method: a broker method (:ref:`broker-methods`).
        :param namespace: a namespace name whose per-connection id is put before ``args``.
        :param write: route as a write (``True``) or a read (``False``); default
            from the method and, for HQL, its verb (:func:`htcluster._policy.health.is_write`).
            An HQL ``INSERT`` or ``DELETE`` is sent as the equivalent stamped
            ``set_cells`` (:func:`hql_write_cells`), so it fails over safely and
            answers an empty result as the broker would.
        :param timeout: seconds for the whole call: pool waits, every attempt and
            failover (default :attr:`call_timeout`).
        :param hedge: seconds without an answer after which a read, or a write whose
            cells all carry timestamps, is also sent to the next healthy host
            (default :attr:`hedge`; 0: not hedged; see :mod:`htcluster._routing.hedge`).
        :returns: the broker's answer; cells of reads collapsed by :func:`collapse`
            (``get_cells`` with ``versions`` >= 2 asks for more, see :func:`widen_versions`;
            an HQL ``MAX_VERSIONS n`` >= 2 may show fewer than n after a retried write).
        :raises NoHostAvailable: no host could serve the call (each host's cause inside).
        :raises WriteOutcomeUnknown: a write that cannot be safely repeated failed after it was sent.
        :raises DeadlineExceeded: ``timeout`` ran out.
        :raises InvalidRequest: an argument cannot be encoded (no host is blamed).
        :raises ClientException: the broker refused the call.
        """
        return drive(self.call_steps(method, args, namespace, write, timeout, hedge))

    def call_steps(self, method: str, args: tuple[Any, ...], namespace: Optional[str] = None,
                   write: Optional[bool] = None, timeout: Optional[float] = None,
                   hedge: Optional[float] = None) -> Steps[Any]:
        """:meth:`call` as a generator of its waits (:mod:`htcluster._policy.steps`), for every I/O flavour."""
        namespace = self.namespace_for(method, namespace)
        converted = hql_write_cells(method, args)
        if converted is not None:  # fails over like any stamped write: it cannot apply twice
            yield from self.call_steps("set_cells", converted, namespace, True, timeout)
            return HQL_WRITE_ANSWERS[method]()
        writes = is_write(method, args)
        write = writes if write is None else write
        idempotent = not writes
        keep = 0
        if method in STAMPED_METHODS and args:
            args = (*args[:-1], stamp_batch(args[-1]))
            idempotent = all_stamped(args[-1])
        elif method == "get_cells" and args and isinstance(args[-1], ScanSpec):
            spec, keep = widen_versions(args[-1], len(self.order))
            args = (*args[:-1], spec)
        result = yield from self.router.call_steps(Plan(self.order, write, idempotent), method, args, namespace,
                                                   timeout, hedge)
        if method in COLLAPSED_METHODS:
            if isinstance(result, list):
                return collapse(result, keep)
            if getattr(result, "cells", None) is not None:
                result.cells = collapse(result.cells)
        return result

    def namespace(self, name: Optional[str] = None) -> NamespaceCalls:
        """Return the broker methods of namespace ``name``, typed, each a :meth:`call`.

        Writes go to the first healthy replica and are stamped, reads are balanced,
        as for :meth:`call`.

        :param name: a namespace name (``None``: the default namespace).
        :returns: a :class:`~htcluster._routing.typed.NamespaceCalls`, e.g.
            ``replicas.namespace("logs").set_cells("LogDb", cells)``.
        :raises ConfigError: no name and no default namespace.
        """
        return NamespaceCalls(self.call, self.scan_namespace(name))

    @property
    def broker(self) -> BrokerCalls:
        """The broker methods that take no namespace, typed, each a :meth:`call` (``replicas.broker.status()``)."""
        return BrokerCalls(self.call)

    def connection(self, host: Optional[HostLike] = None, *, write: bool = True) -> Connection:
        """Check out one connection: to ``host``, else to the write host (``write``) or to any read host.

        Use ``htcluster.stamp_cells`` on cells written through a mutator so that they
        carry their own timestamps.

        :param host: this host only (it must be one of the replicas).
        :param write: without ``host``: ``True``, the first healthy host in order;
            ``False``, balanced like a read.
        :returns: a context manager giving a :class:`~htcluster.Resource`.
        :raises ConfigError: ``host`` is not one of the replicas, or ``write`` is not a bool
            (e.g. a host given positionally in its place).
        :raises NoHostAvailable: no host could be connected to.
        """
        if not isinstance(write, bool):
            raise ConfigError(f"write must be True or False, got {write!r}; name the host as host=...")
        if host is not None:
            return self.connect(Plan((self.host_key(host),), True))
        return self.connect(Plan(self.order, write))

    def mutator(self, table: str, *, namespace: Optional[str] = None, flush_interval: Optional[float] = None,
                max_cells: int = DEFAULT_MAX_CELLS, max_bytes: int = DEFAULT_MAX_BYTES, block: bool = True,
                timeout: Optional[float] = None) -> Mutator:
        """Return a buffered mutator of ``table``: each flush is a stamped ``set_cells`` that fails over in order.

        See :class:`~htcluster.Mutator` (``set_cell``, ``set_cells``, ``flush``,
        ``close``, ``stats``; a context manager that flushes on leaving).

        :param table: the table name.
        :param namespace: the namespace name (default: the routing object's).
        :param flush_interval: seconds between flushes by a timer thread (``None``: none).
        :param max_cells: buffered cells at which the writer flushes (int >= 1).
        :param max_bytes: buffered bytes at which the writer flushes (int >= 1).
        :param block: a writer finding the buffer full while a flush is in flight
            waits (``True``) or gets :class:`~htcluster.errors.MutatorFull`.
        :param timeout: seconds each flush may take, failovers included (``None``: ``call_timeout``).
        :returns: a :class:`~htcluster.Mutator`.
        :raises ConfigError: no namespace, or an invalid option.
        """
        return replicas_mutator(self, table, namespace, flush_interval=flush_interval, max_cells=max_cells,
                                max_bytes=max_bytes, block=block, timeout=timeout)

    def scan(self, table: str, scan_spec: Optional[ScanSpec] = None, *, namespace: Optional[str] = None,
             host: Optional[HostLike] = None, timeout: Optional[float] = None) -> Iterator[Cell]:
        """Yield the cells of ``table``; when the broker dies mid-scan, resume on another replica.

        Cells are delivered a whole row at a time (one row is buffered), so a
        resumed scan starts just after the last complete row delivered, with
        ``row_limit``/``cell_limit`` reduced by what was delivered.  Several row
        intervals are scanned one after the other, as the broker does (limits
        apply per interval, :ref:`broker-types`).  Repeated versions are collapsed
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
        for cells in stream(self.scan_steps(table, scan_spec, namespace, host, timeout)):
            yield from cells

    def scan_steps(self, table: str, scan_spec: Optional[ScanSpec] = None, namespace: Optional[str] = None,
                   host: Optional[HostLike] = None, timeout: Optional[float] = None) -> Steps[None]:
        """:meth:`scan` as a streaming engine generator (:mod:`htcluster._policy.steps`), for every I/O
        flavour: delivers lists of cells, whole rows at a time."""
        namespace = self.scan_namespace(namespace)
        spec, keep = widen_versions(scan_spec if scan_spec is not None else ScanSpec(), len(self.order))
        first = (self.host_key(host),) if host is not None else ()
        plan = Plan(first + tuple(h for h in self.order if h not in first), bool(first))
        for unit in scan_units(spec):
            yield from resumable_scan_steps(self, plan.hosts, table, unit, namespace, keep, timeout, plan)
