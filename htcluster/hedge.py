"""Hedged requests: a call with no answer after ``hedge`` seconds is also sent to another host.

:func:`hedged_call` runs one idempotent call (a read, or a ``Replicas`` write
whose cells all carry timestamps) the way :class:`~htcluster.failover.Failover`
does, but on non-blocking connections in the calling thread:

1. a connection to the first host is checked out, the request encoded
   completely and sent (``Connection.start`` + ``send_some``);
2. if no answer came after ``hedge`` seconds, and the router's hedge cap and
   retry budget allow it, the same request goes to the next healthy host (a
   :class:`~htcluster.events.Hedged` event);
3. the first answer wins (a broker error such as ``ClientException`` is an
   answer too); every other connection still waiting is tainted (closed,
   never pooled with a reply pending) and its host *lags*: it ranks below the
   other hosts for a while (:meth:`HostHealth.lagged <htcluster.policy.HostHealth.lagged>`),
   without being marked dead;
4. a connection failure is reported to the host health and the call fails
   over as usual (within the ``Retry`` and the retry budget).

Each connection's ``socket_timeout`` and the call's deadline still bound
every exchange.  So a stopped or slow host costs a hedged call about
``hedge`` seconds, not the socket timeout.  Calls that lost a hedge are not
counted in their pool's ``calls``/``latency`` (their connection's close is:
``connection_closed``, reason ``failed``).
"""
from __future__ import annotations

import logging
import selectors
import time
from typing import Any, Optional, Sequence

from . import events as ev
from .errors import BrokerUnavailable, DeadlineExceeded, NoHostAvailable, PoolTimeout
from .failover import Failover
from .policy import ANSWERS
from .pool import _Entry
from .resource import CODECS, Resource, decode, encode

__all__ = ["hedged_call"]

log = logging.getLogger(__name__)


class _Leg:
    """One host's copy of the call: its checked-out connection and where the exchange is."""

    __slots__ = ("host", "entry", "reused", "resource", "opening", "started", "end", "sock", "attempt")

    def __init__(self, host: str, entry: _Entry, reused: bool, attempt: int) -> None:
        self.host, self.entry, self.reused, self.attempt = host, entry, reused, attempt
        self.resource: Resource = entry.resource
        self.opening = False  # the namespace is being opened first
        self.started = time.monotonic()
        self.end = 0.0
        self.sock: Any = None


class _Hedged:
    """The state of one hedged call (see :func:`hedged_call`)."""

    def __init__(self, router: Any, failover: Failover, method: str, args: Sequence[Any],
                 namespace: Optional[str], delay: float) -> None:
        self.router, self.failover, self.method, self.args = router, failover, method, tuple(args)
        self.namespace, self.delay, self.deadline = namespace, delay, failover.deadline
        self.health = router.health
        self.legs: list[_Leg] = []
        self.selector = selectors.DefaultSelector()
        self.hedged = False
        self.hedge_at = 0.0  # when the one leg in flight gets its hedge

    # ------------------------------------------------------------ legs

    def start(self, host: str, fresh: bool = False, attempt: int = 1, hedge: bool = False) -> None:
        """Check out a connection to ``host`` (claimed) and send the request (or the namespace opening) on it.

        :param hedge: this is the hedge: take an idle or free slot only, never wait for
            one (a full pool gives up the hedge; the first host may still answer).
        """
        pool = self.router[host]
        try:
            entry, reused = pool._checkout(0.0 if hedge else None, fresh, self.deadline)
        except PoolTimeout:
            self.health.release(host)
            if hedge:
                return
            raise
        except BrokerUnavailable as exc:
            self.lost(host, exc)
            return
        except DeadlineExceeded as exc:
            self.health.release(host)
            raise self.failover.deadline_exceeded(exc.sent) from exc
        except BaseException:
            self.health.release(host)
            raise
        leg = _Leg(host, entry, reused, attempt)
        self.legs.append(leg)
        if len(self.legs) == 1:
            self.hedge_at = leg.started + self.delay
        if pool.listeners:
            pool.listeners.emit(ev.CallStarted(host, self.method, self.namespace, attempt, self.args))
        if self.namespace is not None and self.namespace not in leg.resource.mns:
            leg.opening = True
            self.send(leg, "namespace_open", (self.namespace,))
        else:
            self.send_call(leg)

    def send_call(self, leg: _Leg) -> None:
        args = self.args if self.namespace is None else (leg.resource.mns[self.namespace], *self.args)
        self.send(leg, self.method, args)

    def send(self, leg: _Leg, method: str, args: Sequence[Any]) -> None:
        """Encode and start sending ``method(*args)`` on ``leg``; InvalidRequest propagates (nothing sent)."""
        conn = leg.resource._conn
        encode(leg.resource, method, CODECS[method][0], tuple(args))
        leg.end = conn.start(self.deadline)
        if leg.sock is None:
            leg.sock = conn.sock
            self.selector.register(leg.sock, selectors.EVENT_WRITE, leg)
        else:
            self.selector.modify(leg.sock, selectors.EVENT_WRITE, leg)
        self.step(leg, selectors.EVENT_WRITE)

    def step(self, leg: _Leg, mask: int) -> Optional[tuple[bool, Any]]:
        """Move ``leg``'s exchange on; return ``(ok, answer or exception)`` once it has an answer."""
        conn = leg.resource._conn
        try:
            if mask & selectors.EVENT_WRITE:
                if conn.send_some():
                    self.selector.modify(leg.sock, selectors.EVENT_READ, leg)
                return None
            if not conn.recv_some():
                return None
            method = "namespace_open" if leg.opening else self.method
            result = decode(leg.resource, CODECS[method][1])
        except BrokerUnavailable as exc:
            self.drop(leg, exc)
            return None
        except ANSWERS as exc:
            return False, exc
        if leg.opening:
            leg.opening = False
            leg.resource.mns.remember(str(self.namespace), result)
            self.send_call(leg)
            return None
        return True, result

    def drop(self, leg: _Leg, exc: BrokerUnavailable) -> None:
        """End a leg whose connection failed: check it in, count it, report it, fail over if it was the last."""
        self.forget(leg)
        pool = self.router[leg.host]
        took = time.monotonic() - leg.started
        pool._count(took, True)
        if pool.listeners:
            pool.listeners.emit(ev.CallFailed(leg.host, self.method, self.namespace, leg.attempt, took, exc,
                                              self.args))
        if leg.reused and not exc.sent and leg.attempt == 1:
            log.info("retrying %s on a fresh connection to %s: %s", self.method, leg.host, exc)
            self.start(leg.host, fresh=True, attempt=2)  # a reused connection broke before sending
            return
        self.lost(leg.host, exc)

    def lost(self, host: str, exc: BrokerUnavailable) -> None:
        """``host`` failed: mark it down; with no other leg left, fail over to another host."""
        delay = self.health.failed(host, exc)
        log.warning("%s marked down for %.2f s: %s", host, delay, exc)
        if self.legs:
            self.failover.errors[host] = exc
            return
        self.failover.failed(host, exc)  # raises NoHostAvailable when the retry or the budget is spent
        self.start(self.failover.next_host(probe_limit=self.delay))

    def forget(self, leg: _Leg) -> None:
        """Stop watching ``leg`` and give its connection back (closed if it failed or is mid-exchange)."""
        if leg in self.legs:
            self.legs.remove(leg)
        if leg.sock is not None:
            try:
                self.selector.unregister(leg.sock)
            except (KeyError, ValueError):
                pass
        if leg.resource._conn.pending:
            leg.resource._conn.taint()  # a reply may still come: never pooled out of step
        self.router[leg.host]._checkin(leg.entry)

    # ------------------------------------------------------------ the call

    def hedge(self) -> None:
        """Send the call to one more host, if the cap, the budget and a free host allow it."""
        self.hedged = True
        try:
            host = self.failover.next_host(exclude=[leg.host for leg in self.legs], probe_limit=self.delay,
                                           force=False)
        except NoHostAvailable:
            return  # no other usable host: nothing spent
        if not self.router.spend_hedge(self.method):
            self.health.release(host)
            return
        before = len(self.legs)
        self.start(host, hedge=True)
        if len(self.legs) > before:
            log.debug("hedged %s on %s after %.3f s", self.method, host, self.delay)
            self.router.hedges_sent(host)
            if self.router.listeners:
                self.router.listeners.emit(ev.Hedged(host, self.method, self.delay))

    def run(self) -> Any:
        self.start(self.failover.next_host(probe_limit=self.delay))
        while True:
            now = time.monotonic()
            if self.deadline is not None and now >= self.deadline:
                raise self.failover.deadline_exceeded(sent=True)
            for leg in [leg for leg in self.legs if leg.end <= now]:
                exc = leg.resource._conn.expire()
                if isinstance(exc, DeadlineExceeded):
                    raise self.failover.deadline_exceeded(sent=True) from exc
                self.drop(leg, exc)  # type: ignore[arg-type]
            if not self.hedged and len(self.legs) == 1 and now >= self.hedge_at:
                self.hedge()
                continue
            if not self.legs:  # defensive: a failed leg always starts the next one or raises
                self.start(self.failover.next_host(probe_limit=self.delay))
                continue
            ends = [leg.end for leg in self.legs]
            if not self.hedged and len(self.legs) == 1:
                ends.append(self.hedge_at)
            if self.deadline is not None:
                ends.append(self.deadline)
            for key, mask in self.selector.select(max(0.0, min(ends) - time.monotonic())):
                leg = key.data
                if leg not in self.legs:
                    continue
                outcome = self.step(leg, mask)
                if outcome is not None:
                    return self.settle(leg, *outcome)

    def settle(self, winner: _Leg, ok: bool, result: Any) -> Any:
        """The first answer: taint every other leg, report health, count the call; return or raise it."""
        for leg in list(self.legs):
            if leg is not winner:
                self.forget(leg)
                self.health.release(leg.host)
                lag = self.health.lagged(leg.host)
                log.info("%s lost a hedge of %s; ranked last for %.2f s", leg.host, self.method, lag)
        self.forget(winner)
        pool = self.router[winner.host]
        took = time.monotonic() - winner.started
        pool._count(took, not ok)
        if pool.listeners:
            pool.listeners.emit(
                ev.CallSucceeded(winner.host, self.method, self.namespace, winner.attempt, took, self.args) if ok
                else ev.CallFailed(winner.host, self.method, self.namespace, winner.attempt, took, result, self.args))
        self.health.succeeded(winner.host)
        if not ok:
            raise result
        return result

    def close(self) -> None:
        """Give back every connection still out (tainted: its reply is pending) and release its claim."""
        for leg in list(self.legs):
            self.forget(leg)
            self.health.release(leg.host)
        self.selector.close()


def hedged_call(router: Any, failover: Failover, method: str, args: Sequence[Any], namespace: Optional[str],
                delay: float) -> Any:
    """Run ``method(*args)`` through ``failover``'s hosts, hedging after ``delay`` seconds.

    :param router: the ``Resources`` (pools by host, ``health``, ``listeners``,
        ``spend_hedge(method) -> bool``, ``hedges_sent(host)``).
    :param failover: the call's :class:`~htcluster.failover.Failover` (hosts, order, deadline, retry).
    :param method: a broker method that is safe to repeat (a read, or stamped cells).
    :param args: its arguments after the namespace id.
    :param namespace: a namespace name whose per-connection id goes before ``args``.
    :param delay: seconds (float > 0) without an answer before the hedge is sent.
    :returns: the first answer.
    :raises NoHostAvailable: every host allowed by the retry (or the budget) failed.
    :raises DeadlineExceeded: the call's deadline passed.
    :raises InvalidRequest: an argument does not encode (nothing sent, no host blamed).
    :raises ClientException: the first answer was the broker's error.
    """
    call = _Hedged(router, failover, method, args, namespace, delay)
    try:
        return call.run()
    finally:
        call.close()
