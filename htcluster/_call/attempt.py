"""One attempt: one call on one host, from lease to release, reported once.

:class:`Attempt` is the one place where a call meets a host.  It

1. leases a connection from the host's pool (:meth:`ConnectionPool.acquire
   <htcluster._pool.pool.ConnectionPool.acquire>`);
2. has the exchange made: blocking (:meth:`Attempt.run`), or stepped by the
   multiplexing loop (:mod:`htcluster._call.loop`) for broadcasts, hedges and
   probes;
3. classifies how it ended, once (:func:`~htcluster._policy.classify.verdict`:
   answered, failed, or nothing learnt);
4. reports that to the host's :class:`~htcluster._policy.health.HostHealth`
   (the only caller of its verbs) and to the pool's listeners and counters;
5. releases the lease (the connection is closed if it is out of step).

A reused connection that failed before the request left (``sent=False``,
e.g. the broker restarted since) is retried once on a fresh connection to the
same host within the attempt (events number it attempt 2).

:class:`Pool` is :class:`~htcluster._pool.pool.ConnectionPool` plus
``call`` and ``scan``: an attempt with no host health behind it.
:class:`Hold` is an attempt whose exchanges are the caller's own block
(``Resources.connection()``: scanners, mutators).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Iterator, NamedTuple, Optional, Union

from .. import events as ev
from .._io.resource import Exchange, NamespaceId, Resource, scan_cells
from .._policy.classify import ANSWERED, FAILED, NOTHING, is_transient, verdict
from .._policy.health import HostHealth
from .._policy.steps import Steps, drive
from .._pool.pool import ConnectionPool, Lease
from .._validate import seconds
from .scope import earliest
from ..errors import BrokerUnavailable
from ..types import Cell, ScanSpec

__all__ = ["Attempt", "Hold", "Pool", "Run", "call_deadline"]

log = logging.getLogger("htcluster.attempt")


class Attempt:
    """One call on one host: lease, exchange, classify, report, release.

    :param pool: the host's pool.
    :param method: a broker method name.
    :param args: its arguments after the namespace id.
    :param namespace: a namespace name whose id on the connection goes first, or ``None``.
    :param deadline: ``time.monotonic()`` time by which the attempt must end, or ``None``.
    :param health: the routing object's host health, told the verdict; ``None`` for a bare pool.
    :param host: the key of the host in ``health`` (``pool.address`` by default).
    :param probe: a probe: a fresh connection, no call events or counts, and an answer
        revives the host (``HostHealth.succeeded(host, probe=True)``).

    After the exchange the loop sets :attr:`result` or :attr:`error`; :meth:`finish` reports.
    """

    __slots__ = ("pool", "host", "method", "args", "namespace", "deadline", "health", "probe", "number", "fresh",
                 "lease", "started", "took", "result", "error", "opening", "end", "fd", "phase", "generation")

    def __init__(self, pool: ConnectionPool, method: str, args: tuple[Any, ...], namespace: Optional[str] = None,
                 deadline: Optional[float] = None, health: Optional[HostHealth] = None, host: Optional[str] = None,
                 probe: bool = False) -> None:
        self.pool, self.method, self.args, self.namespace = pool, method, args, namespace
        self.deadline, self.health, self.probe = deadline, health, probe
        self.host = pool.address if host is None else host
        self.number = 1
        self.fresh = probe
        self.lease: Optional[Lease] = None
        self.started = 0.0
        #: Seconds the last exchange took (set by :meth:`finish`).
        self.took = 0.0
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.opening = False  # the loop is opening the namespace first
        self.end = 0.0  # the loop: when the step in progress must end (time.monotonic())
        self.fd = -1  # the loop: the socket watched
        self.phase = 0  # the loop: 0 connecting, 1 sending, 2 receiving, 3 done
        self.generation = -1  # the pool generation of the connection used (a failure clears only that one)

    @property
    def resource(self) -> Resource:
        """The leased connection (only between :meth:`begin` and :meth:`finish`)."""
        assert self.lease is not None, "the attempt holds no connection"
        return self.lease.resource

    def begin(self, connect: bool = True) -> Resource:
        """Lease a connection and report the call as started.

        :param connect: open a new connection here, blocking (False: the loop opens it).
        :returns: the leased resource.
        :raises PoolTimeout, DeadlineExceeded, BrokerUnavailable, ClientResourceError: no
            connection could be had (reported to health before it is raised).
        """
        return drive(self.begin_steps(connect))

    def begin_steps(self, connect: bool = True) -> Steps[Resource]:
        """:meth:`begin` as a generator of its waits (:mod:`htcluster._policy.steps`), for every I/O flavour."""
        self.generation = self.pool.generation
        try:
            self.lease = lease = yield from self.pool.acquire_steps(self.deadline, None, self.fresh, connect)
        except BaseException as exc:
            self.report(exc)
            raise
        self.generation = lease.generation
        self.started = time.monotonic()
        self.result, self.error = None, None
        if not self.probe:
            listeners = self.pool.listeners
            if listeners:
                try:
                    listeners.emit(ev.CallStarted(self.host, self.method, self.namespace, self.number, self.args))
                except BaseException as exc:
                    self.lease = None
                    lease.release()
                    self.report(exc)
                    raise
        return lease.resource

    def run(self) -> Any:
        """Make the call blocking, on one connection; return the answer (see :meth:`Pool.call`)."""
        return drive(self.run_steps())

    def run_steps(self) -> Steps[Any]:
        """:meth:`run` as a generator of its waits (:mod:`htcluster._policy.steps`), for every I/O flavour:
        lease (connecting if needed), open the namespace if needed, one exchange, finish."""
        try:
            while True:
                resource = yield from self.begin_steps()
                try:
                    ns = self.namespace
                    if ns is None:
                        args = self.args
                    else:
                        mns = resource.mns
                        args = (mns.id_of(ns) if ns in mns else (yield NamespaceId(resource, ns, self.deadline)),
                                *self.args)
                    result = yield Exchange(resource, self.method, args, None, self.deadline)
                except BaseException as exc:
                    if self.finish(exc):
                        continue
                    raise
                self.finish(None)
                return result
        except BaseException as exc:
            if self.lease is not None:  # interrupted while finishing: give the connection back
                self.cancel(exc)
            raise

    def finish(self, error: Optional[BaseException]) -> bool:
        """End the exchange: release the connection, count and report it, tell health the verdict.

        :param error: how it ended (``None``: with an answer, a broker error being an answer too).
        :returns: True when the attempt is to be made again on a fresh connection (a
            reused one failed before the request left); :meth:`begin` it again then.
        """
        lease = self.lease
        assert lease is not None, "finish() without begin()"
        self.took = took = time.monotonic() - self.started
        again = (error is not None and self.number == 1 and lease.reused and isinstance(error, BrokerUnavailable)
                 and not error.sent and lease.resource.failed
                 and lease.generation == self.pool.generation)  # not when the pool was closed meanwhile
        lease.release()  # idempotent: a finish interrupted before this line is made again by cancel()
        self.lease = None
        try:
            if not self.probe:
                pool = self.pool
                pool.record(took, error is not None)
                health = self.health
                if health is not None and health.meter is not None and not again:
                    judged = verdict(error)
                    if judged is not NOTHING:  # the caller's deadline or mistake says nothing of the host's speed
                        health.measured(self.host, took, judged is FAILED or is_transient(error))
                listeners = pool.listeners
                if listeners:
                    listeners.emit(
                        ev.CallSucceeded(self.host, self.method, self.namespace, self.number, took, self.args)
                        if error is None else
                        ev.CallFailed(self.host, self.method, self.namespace, self.number, took, error, self.args))
        finally:
            if again:
                log.info("retrying %s on a fresh connection to %s: %s", self.method, self.host, error)
                self.number, self.fresh = 2, True
            else:
                self.report(error)
        return again

    def cancel(self, error: BaseException) -> None:
        """End an attempt the caller left mid-exchange (an interrupt, the call's deadline, a winner elsewhere).

        The connection is closed (a reply may still come), the call is counted and
        reported failed with ``error``, and host health learns nothing (the caller left,
        the host did not fail).
        """
        lease = self.lease
        if lease is None:
            return
        conn = lease.resource.connection
        if conn.pending or conn.connecting:
            conn.taint()
        health, self.health = self.health, None  # nothing learnt: release the claim only
        self.number = 2  # no retry on a fresh connection: the caller has left
        try:
            self.finish(error)
        finally:
            self.health = health
            if health is not None:
                health.release(self.host)

    def abandon(self) -> None:
        """End an attempt that lost a hedge: close its connection (a reply may still come), release it,
        and rank the host last for a while (``HostHealth.lagged``); nothing is counted."""
        lease = self.lease
        if lease is not None:
            conn = lease.resource.connection
            if conn.pending or conn.connecting:
                conn.taint()
            lease.release()
            self.lease = None
        if self.health is not None:
            self.health.release(self.host)
            if self.started:  # it took at least this long: a lower bound of its latency for the meter
                self.health.measured(self.host, time.monotonic() - self.started, False)
            lag = self.health.lagged(self.host)
            log.info("%s lost a hedge of %s; ranked last for %.2f s", self.host, self.method, lag)

    def report(self, error: Optional[BaseException]) -> None:
        """Tell host health what the attempt says about the host (once per attempt).

        A failure (a transport error: the host may have restarted) also clears
        the host's pool (:meth:`ConnectionPool.clear <htcluster._pool.pool.ConnectionPool.clear>`),
        with or without health behind it, unless the connection used was of an
        older generation already (a failure found by many calls at once starts one new generation).
        """
        health = self.health
        judged = verdict(error)
        if judged is FAILED and self.generation == self.pool.generation:
            self.pool.clear(f"{self.host} failed: {type(error).__name__}")
        if health is None:
            return
        if judged is ANSWERED:
            health.succeeded(self.host, probe=self.probe, transient=error if is_transient(error) else None)
        elif judged is FAILED:
            delay = health.failed(self.host, error)
            log.warning("%s marked down for %.2f s: %s", self.host, delay, error)
        else:
            health.release(self.host)

    def __repr__(self) -> str:
        state = "pending" if self.lease is not None else "error" if self.error is not None else "done"
        return f"<Attempt {self.method} on {self.host}: {state}>"


class Run(NamedTuple):
    """A step (:mod:`htcluster._policy.steps`): make ``attempt`` to its end; its answer, or its error raised."""

    attempt: Attempt

    def run(self) -> Any:
        """Blocking: :meth:`Attempt.run`."""
        return self.attempt.run()


class Hold:
    """An attempt whose exchanges are the caller's own ``with`` block on one leased connection.

    :meth:`begin` leases (a connect failure is reported and raised); :meth:`end`
    releases and reports how the block ended: no exception or a broker answer
    credit the host, a transport failure blames it, anything else is nothing learnt.
    """

    __slots__ = ("attempt",)

    def __init__(self, pool: ConnectionPool, health: Optional[HostHealth], host: str,
                 deadline: Optional[float] = None) -> None:
        self.attempt = Attempt(pool, "connection", (), None, deadline, health, host, probe=False)

    def begin(self) -> Resource:
        """Lease the connection (blocking connect); it reports the pool's calls while held."""
        return drive(self.begin_steps())

    def begin_steps(self) -> Steps[Resource]:
        """:meth:`begin` as a generator of its waits, for every I/O flavour."""
        attempt = self.attempt
        attempt.generation = attempt.pool.generation
        try:
            attempt.lease = lease = yield from attempt.pool.acquire_steps(attempt.deadline)
        except BaseException as exc:
            attempt.report(exc)
            raise
        attempt.generation = lease.generation
        lease.resource.listeners = attempt.pool.listeners
        return lease.resource

    def end(self, error: Optional[BaseException]) -> None:
        """Release the connection and report the block's outcome to health."""
        attempt = self.attempt
        lease = attempt.lease
        if lease is not None:
            lease.resource.listeners = None
            lease.release()
            attempt.lease = None
        attempt.report(error)


def call_deadline(timeout: Optional[float], deadline: Optional[float]) -> Optional[float]:
    """Return the deadline of a ``Pool.call``: the earliest of ``timeout`` seconds from now, ``deadline``
    and the enclosing ``htcluster.deadline()`` scope (``None``: none bounds it).

    :raises ConfigError: ``timeout`` is not a finite positive number of seconds.
    """
    if timeout is not None:
        end = time.monotonic() + seconds("timeout", timeout)
        deadline = end if deadline is None else min(deadline, end)
    return earliest(deadline)


class Pool(ConnectionPool):
    """Keep up to ``size`` idle connections to one broker, open up to ``max_overflow`` more under load, and call.

    The options are :class:`~htcluster._pool.pool.ConnectionPool`'s (``size``,
    ``max_overflow``, ``timeout`` for the checkout wait, ``socket_timeout``,
    ``connect_timeout``, ``idle_ping``, ``max_age``, ``max_frame_size``,
    ``listeners``; seconds).  :meth:`acquire` lends a connection as a
    :class:`~htcluster._pool.pool.Lease`; :meth:`connection` is its ``with`` form.

    Example::

        pool = Pool('localhost:15867', size=4)
        status = pool.call('status', timeout=2.0)
        with pool.connection() as r:
            cells = r.get_cells(r.mns['test'], 'logs', ScanSpec(row_limit=10))
    """

    def call(self, method: str, *args: Any, namespace: Optional[str] = None, timeout: Optional[float] = None,
             deadline: Optional[float] = None) -> Any:
        """Call broker ``method`` on a pooled connection (one :class:`Attempt`).

        When a reused idle connection fails before the request left
        (``BrokerUnavailable`` with ``sent=False``), the call is retried once on
        a fresh connection: the broker cannot have seen it.

        :param method: a broker method name, e.g. ``'get_cell'``.
        :param args: its arguments after the namespace id.
        :param namespace: a namespace name whose id on the connection goes before ``args``.
        :param timeout: seconds (float) for the whole call: the wait for a
            connection, connecting, and the exchange.  ``None``: the wait is
            bounded by the pool's ``timeout`` and the exchange by ``socket_timeout``.
        :param deadline: the same bound as a ``time.monotonic()`` time (used by
            the routing layers, which share one deadline across attempts).  An
            enclosing ``htcluster.deadline()`` scope bounds the call too.
        :returns: the broker's answer.
        :raises InvalidRequest: an argument cannot be encoded (nothing sent, connection kept).
        :raises BrokerUnavailable: the broker cannot be reached, or the
            connection broke after the request was sent.
        :raises DeadlineExceeded: ``timeout`` ran out.
        :raises PoolTimeout: no connection became free in time.
        :raises ClientResourceError: no descriptor left in this process for a connection.
        :raises ClientException: the broker refused the call.
        """
        return Attempt(self, method, args, namespace, call_deadline(timeout, deadline)).run()

    def scan(self, table: str, scan_spec: Optional[ScanSpec] = None, *, namespace: str,
             batch: bool = False, timeout: Optional[float] = None) -> Iterator[Union[Cell, list[Cell]]]:
        """Scan ``table`` of ``namespace`` on one pooled connection, yielding cells.

        The connection is held while the generator runs and returned (the
        scanner closed) when it ends, also when the consumer stops early.

        :param table: the table name.
        :param scan_spec: what to read; ``None`` reads everything.
        :param namespace: the namespace name.
        :param batch: yield lists of cells, one per ``scanner_get_cells`` round trip.
        :param timeout: seconds each round trip (opening, each batch) may take.
        :returns: a generator of :class:`~htcluster.types.Cell` (or of lists of them).
        :raises ClientException: e.g. the namespace or table does not exist.
        :raises BrokerUnavailable: the connection failed.
        :raises PoolTimeout: no connection became free in time.
        """
        with self.connection() as r:
            yield from scan_cells(r, r.mns[namespace], table, scan_spec, batch=batch, timeout=timeout)
