"""Failover of one call: the hosts it tried, and whether it may try another.

A :class:`Failover` walks one call of :class:`~htcluster.resources.Resources`
(or of its subclass ``Replicas``) through its candidate hosts: it claims a
host, runs the call under :meth:`HostHealth.watch
<htcluster.policy.HostHealth.watch>`, and after a connection failure moves
on while the ``Retry`` allows it, or raises ``NoHostAvailable`` naming each
host's cause.  Choosing and claiming hosts stays with ``Resources``; the
retry loop lives here (the node pool / transport split of elastic-transport).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence, TypeVar

from .errors import BrokerUnavailable, NoHostAvailable

if TYPE_CHECKING:  # pragma: no cover
    from .resources import Resources

__all__ = ["Failover"]

T = TypeVar("T")


class Failover:
    """One call's way through ``hosts``: the failures so far and the retries left.

    :param resources: the :class:`~htcluster.resources.Resources` that claims
        hosts; its ``retry`` is the budget and its ``failovers`` the count.
    :param what: the call, for log lines and errors (e.g. ``'get_cell'``).
    :param hosts: the candidate ``'host:port'`` keys.
    :param ordered: take the first usable host in order, rather than by priority.
    """

    def __init__(self, resources: "Resources", what: str, hosts: Sequence[str], ordered: bool = False) -> None:
        self.resources, self.what, self.hosts, self.ordered = resources, what, hosts, ordered
        self.retry = resources.retry
        self.errors: dict[str, BaseException] = {}

    def run(self, fn: Callable[[str], T], *, idempotent: bool, hold: bool = False) -> T:
        """Run ``fn(host)`` on one host after another until one does not fail to connect.

        :param fn: the call, given the claimed ``'host:port'``.
        :param idempotent: a call that may have reached a broker (``sent=True``)
            is repeated elsewhere only when this is true.
        :param hold: keep the successful host's claim (see :meth:`HostHealth.watch
            <htcluster.policy.HostHealth.watch>`).
        :returns: what ``fn`` returned.
        :raises NoHostAvailable: every host allowed by the retry failed.
        :raises BrokerUnavailable: a non-idempotent call failed after it was sent.
        """
        health = self.resources.health
        while True:
            host = self.next_host()
            try:
                with health.watch(host, hold):
                    return fn(host)
            except BrokerUnavailable as exc:
                if exc.sent and not idempotent:
                    raise  # it may have been applied: repeating it could apply it twice
                self.failed(host, exc)

    def next_host(self) -> str:
        """Claim a host not tried yet; the caller reports how the call ended through ``health.watch``.

        :returns: the ``'host:port'`` claimed.
        :raises NoHostAvailable: every host was tried.
        """
        host = self.resources._acquire(self.hosts, self.errors, self.ordered)
        if host is None:
            raise self._no_host()
        return host

    def failed(self, host: str, exc: BrokerUnavailable) -> None:
        """Record that ``host`` failed to connect, and count the move to another host.

        :param host: the host that failed.
        :param exc: its failure.
        :raises NoHostAvailable: the retry allows no other host (raised ``from exc``).
        """
        self.errors[host] = exc
        self.retry = self.retry.increment(host)
        if self.retry.exhausted:
            raise self._no_host() from exc
        self.resources._failed_over(self.what, host, exc)

    def _no_host(self) -> NoHostAvailable:
        """Build the error naming each host and why it was not usable."""
        causes = dict(self.errors)
        for host in self.hosts:
            error = self.resources.health.state(host).error
            if host not in causes and error is not None:
                causes[host] = error
        return NoHostAvailable(f"no broker could serve {self.what} ({len(self.hosts)} host(s))", causes)
