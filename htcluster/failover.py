"""Failover of one call: the hosts it tried, whether it may try another, and its deadline.

A :class:`Failover` walks one routed call through its candidate hosts: it
claims a host from a :class:`Router`, runs the call, reports the outcome to
the router's :class:`~htcluster.policy.HostHealth`, and after a connection
failure moves on while the :class:`~htcluster.policy.Retry` and the deadline
allow it.  It raises :class:`~htcluster.errors.NoHostAvailable` naming each
host's cause, :class:`~htcluster.errors.DeadlineExceeded` when the call's
budget ran out, and :class:`~htcluster.errors.WriteOutcomeUnknown` when a call
that is not safe to repeat failed after it was sent.

Choosing and claiming hosts stays with the router (``Resources``); the retry
loop lives here (the node pool / transport split of elastic-transport).  The
router is a small explicit interface, so this module depends on the policy
values only, never on ``resources``.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Container, Iterable, Optional, Protocol, Sequence, TypeVar

from .errors import BrokerUnavailable, DeadlineExceeded, NoHostAvailable, WriteOutcomeUnknown
from .policy import ANSWERS, HostHealth, Retry

__all__ = ["Failover", "Router"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Router(Protocol):
    """What a :class:`Failover` needs from the object that routes calls (``Resources`` is one)."""

    health: HostHealth
    retry: Retry

    def claim(self, hosts: Sequence[str], tried: Container[str], ordered: bool,
              probe_limit: Optional[float] = None, force: bool = True) -> Optional[str]:
        """Claim a host of ``hosts`` not in ``tried`` (see ``Resources.claim``); ``None`` when none is left.

        A host whose backoff ended is probed first (at most ``probe_limit`` seconds when given);
        with ``force``, a dead host is probed when no other is usable.
        """

    def failed_over(self, what: str, host: str, exc: BaseException) -> None:
        """Count and report that ``what`` moved on from ``host`` after ``exc``."""

    def routed(self) -> None:
        """Count one routed call (a deposit into the retry budget)."""

    def spend_retry(self, what: str) -> bool:
        """Take one retry of ``what`` from the retry budget; False (and a ``BudgetExhausted`` event) when spent."""


class Failover:
    """One call's way through ``hosts``: the failures so far, the retries left, its deadline.

    :param router: claims hosts; its ``retry`` is the budget of other hosts.
    :param what: the call, for log lines and errors (e.g. ``'get_cell'``).
    :param hosts: the candidate ``'host:port'`` keys.
    :param ordered: take the first usable host in order, rather than by priority.
    :param deadline: ``time.monotonic()`` time after which no attempt starts
        (``None``: attempts are bounded by their own timeouts only).
    """

    __slots__ = ("router", "what", "hosts", "ordered", "deadline", "retry", "errors")

    def __init__(self, router: Router, what: str, hosts: Sequence[str], ordered: bool = False,
                 deadline: Optional[float] = None) -> None:
        self.router, self.what, self.hosts, self.ordered, self.deadline = router, what, hosts, ordered, deadline
        self.retry = router.retry
        self.errors: dict[str, BaseException] = {}
        router.routed()

    def run(self, fn: Callable[[str], T], *, idempotent: bool, hold: bool = False) -> T:
        """Run ``fn(host)`` on one host after another until one does not fail to connect.

        :param fn: the call, given the claimed ``'host:port'``.
        :param idempotent: a call that may have reached a broker (``sent=True``)
            is repeated elsewhere only when this is true.
        :param hold: on success keep the host's claim (a checked-out connection
            whose end is reported later through ``health.watch``).
        :returns: what ``fn`` returned.
        :raises NoHostAvailable: every host allowed by the retry failed.
        :raises DeadlineExceeded: the deadline passed (the attempts so far inside).
        :raises WriteOutcomeUnknown: a non-idempotent call failed after it was sent.
        """
        health = self.router.health
        while True:
            host = self.next_host()
            try:
                result = fn(host)
            except BrokerUnavailable as exc:
                delay = health.failed(host, exc)
                log.warning("%s marked down for %.2f s: %s", host, delay, exc)
                if exc.sent and not idempotent:
                    raise WriteOutcomeUnknown(
                        f"{self.what} failed on {host} after it was sent, and repeating it elsewhere could apply "
                        f"it twice: it may or may not have been applied; read back before repeating it ({exc})",
                        host=host, sent=True, type=exc.type) from exc
                self.failed(host, exc)
                continue
            except DeadlineExceeded as exc:
                health.release(host)
                self.errors[host] = exc
                raise self.deadline_exceeded(exc.sent) from exc
            except ANSWERS:
                health.succeeded(host)
                raise
            except BaseException:
                health.release(host)
                raise
            if not hold:
                health.succeeded(host)
            return result

    def next_host(self, exclude: Iterable[str] = (), probe_limit: Optional[float] = None,
                  force: bool = True) -> str:
        """Claim a host not tried yet; the caller reports how the call ended to the router's health.

        :param exclude: hosts not to claim either (e.g. those a hedged call is waiting on).
        :param probe_limit: seconds a probe of a host whose backoff ended may take, at
            most (``None``: the router's ``probe_timeout``).
        :param force: when no host is usable, probe the dead one that comes back
            soonest (False: raise ``NoHostAvailable`` instead, e.g. for a hedge).
        :returns: the ``'host:port'`` claimed.
        :raises DeadlineExceeded: the deadline passed.
        :raises NoHostAvailable: every host was tried (or probed without an answer).
        """
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise self.deadline_exceeded(sent=bool(self.errors))
        skip = self.errors.keys() | set(exclude) if exclude else self.errors
        host = self.router.claim(self.hosts, skip, self.ordered, probe_limit, force)
        if host is None:
            raise self._no_host()
        return host

    def failed(self, host: str, exc: BaseException) -> None:
        """Record that ``host`` failed to connect, and count the move to another host.

        :param host: the host that failed.
        :param exc: its failure.
        :raises NoHostAvailable: the retry allows no other host, or the router's retry
            budget is spent (raised ``from exc``).
        """
        self.errors[host] = exc
        self.retry = self.retry.increment(host)
        if self.retry.exhausted:
            raise self._no_host() from exc
        if not self.router.spend_retry(self.what):
            raise self._no_host("the retry budget is spent: too many calls failed over recently") from exc
        self.router.failed_over(self.what, host, exc)

    def deadline_exceeded(self, sent: bool) -> DeadlineExceeded:
        """Build the error of a call whose deadline passed, naming the hosts it tried."""
        return DeadlineExceeded(f"{self.what} ran out of its timeout after {len(self.errors)} attempt(s)",
                                self.errors, sent=sent)

    def _no_host(self, why: str = "") -> NoHostAvailable:
        """Build the error naming each host and why it was not usable."""
        causes = dict(self.errors)
        health = self.router.health
        for host in self.hosts:
            error = health.state(host).error
            if host not in causes and error is not None:
                causes[host] = error
        suffix = f"; {why}" if why else ""
        return NoHostAvailable(f"no broker could serve {self.what} ({len(self.hosts)} host(s)){suffix}", causes)
