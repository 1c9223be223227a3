"""Resources: many ThriftBrokers, one pool each; a call goes to one host chosen at random, or to all.

:class:`Resources` is a read-only mapping ``'host:port' -> Pool``.  A
unicast goes to a host chosen at random among the healthy ones, biased by
cached (idle) connections (lupyne's policy; :mod:`htcluster._policy.plans`),
and fails over to another when the connection fails; a broadcast calls every
host at once.  Host health, retries, budgets, probes and hedging are the
router's (:mod:`htcluster._routing.router`); this class only builds plans.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Optional

from .._io.resource import scan_cells
from .._policy.classify import is_write
from .._policy.plans import Plan
from .._policy.steps import Steps, drive
from ..hosts import HostLike
from ..types import Cell, ScanSpec
from .base import Connection, Routed
from .typed import BrokerCalls, NamespaceCalls

__all__ = ["Resources"]


class Resources(Routed):
    """Pools to many brokers: pick one (failing over), or broadcast to all.

    The options are those of every routing class (``retry``, ``backoff``,
    ``call_timeout``, ``probe_timeout``, ``hedge``, ``hedge_ratio``,
    ``retry_budget``, ``listeners`` and the Pool options such as ``size``,
    ``timeout``, ``socket_timeout``, ``connect_timeout``; seconds): see
    :class:`~htcluster._routing.base.Routed`.

    :param hosts: ``'host[:port],...'`` or an iterable of hosts.
    :raises ConfigError: no hosts, a malformed host or option.

    Example::

        rs = Resources('ht1,ht2,ht3', socket_timeout=10.0)
        rs.unicast('hql_query', 'SELECT * FROM t', namespace='test')
        rs.broadcast('status')   # {'ht1:15867': Status(...), ...}
    """

    def unicast(self, method: str, *args: Any, namespace: Optional[str] = None, hosts: Iterable[HostLike] = (),
                idempotent: Optional[bool] = None, timeout: Optional[float] = None,
                hedge: Optional[float] = None) -> Any:
        """Call ``method`` on one host, failing over to another when the connection fails.

        :param method: a broker method.
        :param namespace: a namespace name whose per-connection id is put before ``args``.
        :param hosts: the subset of hosts to use (default: all).
        :param idempotent: whether the call may be repeated on another host after it
            was sent; default: true for reads (``is_write``).  A call that was never
            sent is always retried.
        :param timeout: seconds for the whole call: pool waits, every attempt and
            failover (default :attr:`call_timeout`; ``None`` there: each attempt is
            bounded by the pool's ``timeout`` and ``socket_timeout``).
        :param hedge: seconds without an answer after which an idempotent call is
            also sent to another host (default :attr:`hedge`; 0: not hedged).
        :returns: the broker's answer.
        :raises NoHostAvailable: no host could be reached (each host's cause inside),
            or the retry budget allows no failover.
        :raises DeadlineExceeded: ``timeout`` ran out (the attempts made inside).
        :raises WriteOutcomeUnknown: a non-idempotent call failed after being sent.
        :raises InvalidRequest: an argument cannot be encoded (no host is blamed).
        :raises ClientResourceError: this process is out of descriptors or memory (no host is blamed).
        :raises ClientException: the broker refused the call.
        """
        return drive(self.unicast_steps(method, args, namespace, hosts, idempotent, timeout, hedge))

    def unicast_steps(self, method: str, args: tuple[Any, ...], namespace: Optional[str] = None,
                      hosts: Iterable[HostLike] = (), idempotent: Optional[bool] = None,
                      timeout: Optional[float] = None, hedge: Optional[float] = None) -> Steps[Any]:
        """:meth:`unicast` as a generator of its waits (:mod:`htcluster._policy.steps`), for every I/O flavour."""
        if idempotent is None:
            idempotent = not is_write(method, args)
        plan = Plan(self.host_keys(hosts) if hosts else self.hosts, False, idempotent)
        return (yield from self.router.call_steps(plan, method, args, self.namespace_for(method, namespace),
                                                  timeout, hedge))

    def namespace(self, name: Optional[str] = None) -> NamespaceCalls:
        """Return the broker methods of namespace ``name``, typed, each a :meth:`unicast`.

        :param name: a namespace name (``None``: the default namespace).
        :returns: a :class:`~htcluster._routing.typed.NamespaceCalls`, e.g.
            ``rs.namespace("logs").get_cells("LogDb", spec) -> list[Cell]``.
        :raises ConfigError: no name and no default namespace.
        """
        return NamespaceCalls(self.unicast, self.scan_namespace(name))

    @property
    def broker(self) -> BrokerCalls:
        """The broker methods that take no namespace, typed, each a :meth:`unicast` (``rs.broker.status()``)."""
        return BrokerCalls(self.unicast)

    def connection(self, host: Optional[HostLike] = None, *, hosts: Iterable[HostLike] = (),
                   ordered: bool = False) -> Connection:
        """Check out one connection, for calls that must share it (scanners, mutators).

        Failing to connect moves on to another host (nothing was sent yet);
        how the block ends is reported to the host's health (a transport
        failure marks it down).

        :param host: this host only (default: one chosen among ``hosts``).
        :param hosts: the candidates (default: all).
        :param ordered: take the first usable candidate instead of balancing.
        :returns: a context manager giving a :class:`~htcluster.Resource`.
        :raises NoHostAvailable: no candidate could be connected to.
        :raises ConfigError: ``host`` is not one of these hosts.
        """
        candidates = (self.host_key(host),) if host is not None else self.host_keys(hosts)
        return self.connect(Plan(candidates, ordered))

    def scan(self, table: str, scan_spec: Optional[ScanSpec] = None, *, namespace: Optional[str] = None,
             host: Optional[HostLike] = None, timeout: Optional[float] = None) -> Iterator[Cell]:
        """Yield the cells of ``table`` from one host (scanner opened and always closed).

        :param table: the table name.
        :param scan_spec: what to read (``None``: everything).
        :param namespace: the namespace name.
        :param host: the host to read from (default: chosen like a unicast).
        :param timeout: seconds each round trip (opening, each batch) may take.
        :returns: a generator of :class:`~htcluster.types.Cell`.
        :raises NoHostAvailable: no host could be connected to.
        :raises DeadlineExceeded: a round trip took longer than ``timeout``.
        """
        name = self.scan_namespace(namespace)
        with self.connection(host) as resource:
            yield from scan_cells(resource, resource.mns[name], table, scan_spec, timeout=timeout)
