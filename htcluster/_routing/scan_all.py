"""Scans that resume on another host, and the scan of every shard merged in row-key order.

:func:`resumable_scan` reads one interval of a table on one host of a group
(the replicas of ``Replicas``, the hosts of one shard), and when that host
fails, goes on on another one just after the last complete row it delivered
(:class:`~htcluster._policy.resume.ScanProgress`).  ``Replicas.scan`` runs it
for each interval.

:func:`scan_all` (``Shards.scan_all``) runs one such scan per shard, each in
a thread of its own that keeps up to :data:`AHEAD` batches ready, and merges
the shards' streams by row key (:func:`heapq.merge`; a row lives on one
shard, and each stream is in row order).  Leaving the merged generator early
stops every thread and closes every scanner.
"""
from __future__ import annotations

import heapq
import queue
import threading
from typing import TYPE_CHECKING, Generator, Iterator, Optional, Sequence, Union, cast

from .._call.attempt import Hold
from .._io.resource import NamespaceId, scan_steps
from .._policy.steps import Deliver, Steps, stream
from .._validate import seconds
from .._policy.plans import Plan
from .._policy.resume import ScanProgress, scan_units
from .._policy.versions import widen_versions
from .._policy.classify import is_transient
from ..errors import BrokerUnavailable, ClientException, DeadlineExceeded
from ..types import Cell, ScanSpec
from .router import Failover

if TYPE_CHECKING:  # pragma: no cover
    from .base import Routed
    from .shards import Shards

__all__ = ["AHEAD", "resumable_scan", "resumable_scan_steps", "scan_all", "shard_scan_steps"]

#: Batches (one ``scanner_get_cells`` round trip each) a shard's thread reads ahead of the merge.
AHEAD = 4
#: Seconds between a blocked reader thread's checks that the merge was closed.
_POLL = 0.1


def resumable_scan(routed: "Routed", hosts: Sequence[str], table: str, spec: ScanSpec, namespace: str, keep: int,
                   timeout: Optional[float], plan: Optional[Plan] = None) -> Generator[list[Cell], None, None]:
    """Scan one interval of ``table`` on a host of ``hosts``, resuming on another after a failure
    (a connection failure, or a transient broker error: ``REQUEST_TIMEOUT``, ``COMM_*``).

    :param routed: the routing object owning the hosts' pools and health.
    :param hosts: the candidate hosts (balanced, unless ``plan`` says otherwise).
    :param spec: one interval's scan (see :func:`~htcluster._policy.resume.scan_units`).
    :param keep: versions per column kept by the collapse (0: all).
    :param timeout: seconds each round trip may take.
    :param plan: the plan to walk (default: ``hosts``, balanced).
    :returns: a generator of lists of cells, each of whole rows, collapsed.
    :raises NoHostAvailable: every host failed.
    """
    yield from stream(resumable_scan_steps(routed, hosts, table, spec, namespace, keep, timeout, plan))


def resumable_scan_steps(routed: "Routed", hosts: Sequence[str], table: str, spec: ScanSpec, namespace: str,
                         keep: int, timeout: Optional[float], plan: Optional[Plan] = None) -> Steps[None]:
    """:func:`resumable_scan` as a streaming engine generator (:mod:`htcluster._policy.steps`), for every
    I/O flavour: delivers lists of cells, each of whole rows."""
    progress = ScanProgress(spec, keep)
    failover = Failover(routed.router, f"scan of {table}", plan or Plan(tuple(hosts), False))
    limit = None if timeout is None else seconds("timeout", timeout)

    def feed(batch: list[Cell]) -> list[Cell]:
        return list(progress.feed(batch))

    while progress.spec is not None:
        name = yield from failover.next_host_steps()
        hold = Hold(routed[name], routed.health, name)
        try:
            r = yield from hold.begin_steps()
        except BrokerUnavailable as exc:  # reported by the hold
            failover.failed(name, exc)
            continue
        try:
            ns = yield NamespaceId(r, namespace, None)
            yield from scan_steps(r, ns, table, progress.spec, limit, feed)
            cells = list(progress.finish())
            if cells:
                yield Deliver(cells)
        except (BrokerUnavailable, DeadlineExceeded) as exc:
            hold.end(exc)
            failover.failed(name, exc)
            progress.resume()
            continue
        except ClientException as exc:
            hold.end(exc)
            if not is_transient(exc):
                raise  # a semantic error (no such table ...): final
            failover.answered_transient(name, exc)  # the broker could not reach the cluster: another host
            progress.resume()
            continue
        except BaseException as exc:
            hold.end(exc)
            raise
        hold.end(None)
        return


def shard_scan_steps(shards: "Shards", key: object, table: str, spec: ScanSpec, namespace: str,
                     timeout: Optional[float]) -> Steps[None]:
    """One shard's part of :func:`scan_all` as a streaming engine generator (:mod:`htcluster._policy.steps`):
    every interval of ``spec`` on a host of the shard, resuming on another after a failure; delivers lists
    of cells, each of whole rows, collapsed.  A thread streams it for ``Shards.scan_all``, a task for
    ``AsyncShards.scan_all``."""
    hosts = tuple(sorted(shards[key]))
    wide, keep = widen_versions(spec, len(hosts))
    for unit in scan_units(wide):
        yield from resumable_scan_steps(shards.resources, hosts, table, unit, namespace, keep, timeout)


class _Failure:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


class _ShardReader(threading.Thread):
    """Reads one shard's scan into a bounded queue, in a thread of its own."""

    def __init__(self, shards: "Shards", key: object, table: str, spec: ScanSpec, namespace: str,
                 timeout: Optional[float]) -> None:
        super().__init__(name=f"htcluster-scan-{table}-{key}", daemon=True)
        self.shards, self.key, self.table, self.spec = shards, key, table, spec
        self.namespace, self.timeout = namespace, timeout
        self.queue: queue.Queue[Union[list[Cell], _Failure, object]] = queue.Queue(AHEAD)
        self.stopped = threading.Event()

    def run(self) -> None:
        steps = shard_scan_steps(self.shards, self.key, self.table, self.spec, self.namespace, self.timeout)
        scan = cast(Generator[list[Cell], None, None], stream(steps))  # stream() is a generator: it has close()
        try:
            for cells in scan:
                if not self._put(cells):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the merge, which raises it
            self._put(_Failure(exc))
        finally:
            scan.close()  # the scanner and the connection, also when the merge stopped early

    def _put(self, item: object) -> bool:
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def cells(self) -> Iterator[Cell]:
        """Yield the shard's cells as the thread reads them; raise its error."""
        get = self.queue.get
        while True:
            item = get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield from item  # type: ignore[misc]

    def stop(self) -> None:
        self.stopped.set()
        try:
            while True:
                self.queue.get_nowait()
        except queue.Empty:
            pass


def _row(cell: Cell) -> str:
    return cell.key.row  # type: ignore[no-any-return]


def scan_all(shards: "Shards", table: str, scan_spec: Optional[ScanSpec], namespace: str,
             timeout: Optional[float]) -> Iterator[Cell]:
    """Yield the cells of ``table`` from every shard, merged in row-key order (see ``Shards.scan_all``)."""
    spec = scan_spec if scan_spec is not None else ScanSpec()
    readers = [_ShardReader(shards, key, table, spec, namespace, timeout) for key in shards]
    try:
        for reader in readers:
            reader.start()
        yield from heapq.merge(*(reader.cells() for reader in readers), key=_row)
    finally:
        for reader in readers:
            reader.stop()
        for reader in readers:
            if reader.is_alive():
                reader.join()
