"""Hedged requests: a call with no answer after ``hedge`` seconds is also sent to another host.

:func:`hedged_call` runs one idempotent call (a read, or a ``Replicas`` write
whose cells all carry timestamps) through its :class:`~htcluster._routing.router.Failover`
on the multiplexing loop (:mod:`htcluster._call.loop`), in the calling thread:

1. an attempt starts on the first host the plan gives;
2. if no answer came after ``hedge`` seconds, and the router's hedge cap and
   retry budget allow it, an attempt on the next healthy host starts too (a
   :class:`~htcluster.events.Hedged` event); it never waits for a pool slot;
3. the first answer wins (a broker error such as ``ClientException`` is an
   answer too); every other attempt is abandoned: its connection closed (a
   reply may still come), its host *lags* (ranks below the others for a
   while) without being marked dead;
4. an attempt that fails in transport, or answers a transient broker error
   (``REQUEST_TIMEOUT``, ``COMM_*``), is reported like any other; the other
   leg, if any, may still win, else the call fails over as usual (within the
   ``Retry`` and the retry budget).

Each connection's ``socket_timeout`` and the call's deadline still bound
every exchange, so a stopped or slow host costs a hedged call about
``hedge`` seconds, not the socket timeout.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Optional

from .._call.attempt import Attempt
from .._call.loop import Loop, LoopWait, NewLoop
from .._policy.steps import Steps, drive
from .._policy.classify import ANSWERED, is_transient, verdict
from ..errors import BrokerUnavailable, ClientException, DeadlineExceeded, NoHostAvailable, PoolTimeout
from ..events import Hedged

if TYPE_CHECKING:
    from .router import Failover, Router

__all__ = ["hedged_call", "hedged_steps"]

log = logging.getLogger("htcluster.hedge")


def hedged_call(router: "Router", failover: "Failover", method: str, args: tuple[Any, ...],
                namespace: Optional[str], delay: float) -> Any:
    """Run ``method(*args)`` through ``failover``'s hosts, hedging after ``delay`` seconds.

    :param router: the routing object's router (pools, health, budgets, listeners).
    :param failover: the call's :class:`~htcluster._routing.router.Failover` (plan, deadline, retry).
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
    return drive(hedged_steps(router, failover, method, args, namespace, delay))


def hedged_steps(router: "Router", failover: "Failover", method: str, args: tuple[Any, ...],
                 namespace: Optional[str], delay: float) -> Steps[Any]:
    """:func:`hedged_call` as a generator of its waits (:mod:`htcluster._policy.steps`), for every I/O flavour."""
    loop: Loop = yield NewLoop()
    legs: list[Attempt] = []  # in flight
    begun: list[Attempt] = []  # every attempt made: cancel() ends any still holding a connection
    deadline = failover.deadline

    def start(host: str, hedge: bool = False) -> Steps[bool]:
        attempt = Attempt(router.pools[host], method, args, namespace, deadline, router.health, host)
        begun.append(attempt)
        try:
            yield from attempt.begin_steps(connect=False)  # (a hedge takes a free slot only: PoolTimeout below)
        except PoolTimeout:
            if hedge:
                return False
            raise
        except BrokerUnavailable as exc:
            yield from lost(host, exc)
            return True
        except DeadlineExceeded as exc:
            raise failover.deadline_exceeded(exc.sent) from exc
        legs.append(attempt)
        loop.add(attempt)
        return True

    def lost(host: str, exc: BaseException) -> Steps[None]:
        """``host`` failed (already reported by its attempt): fail over when no other leg is left."""
        if legs:
            failover.errors[host] = exc
            return
        if isinstance(exc, ClientException):
            failover.answered_transient(host, exc)  # raises it when the retry or the budget is spent
        else:
            failover.failed(host, exc)  # raises when the retry or the budget is spent
        yield from start((yield from failover.next_host_steps(probe_limit=delay)))

    def hedge_now() -> Steps[None]:
        try:
            host = yield from failover.next_host_steps(exclude=[leg.host for leg in legs], force=False,
                                                       probe_limit=delay)
        except NoHostAvailable:
            return  # no other usable host: nothing spent
        if not router.spend_hedge(method):
            router.unclaim(host)
            return
        if (yield from start(host, hedge=True)):  # (a full pool: nothing learnt reported, its claim is back)
            log.debug("hedged %s on %s after %.3f s", method, host, delay)
            router.hedge_sent(host)
            if router.listeners:
                router.listeners.emit(Hedged(host, method, delay))

    try:
        yield from start((yield from failover.next_host_steps(probe_limit=delay)))
        hedge_at = time.monotonic() + delay
        hedged = False
        while True:
            if not legs:  # defensive: a failed leg always starts the next one or raises
                yield from start((yield from failover.next_host_steps(probe_limit=delay)))
                continue
            until = hedge_at if not hedged and len(legs) == 1 else deadline
            done: list[Attempt] = yield LoopWait(loop, until)
            for attempt in done:
                legs.remove(attempt)
                error = attempt.error
                if verdict(error) is ANSWERED and isinstance(error, ClientException) and is_transient(error):
                    attempt.finish(error)  # the broker could not reach the cluster: another leg or host may
                    yield from lost(attempt.host, error)
                    continue
                if verdict(error) is ANSWERED:
                    for other in legs:
                        loop.remove(other)
                        other.abandon()
                    legs.clear()
                    attempt.finish(error)
                    if error is not None:
                        raise error
                    return attempt.result
                if attempt.finish(error):  # a reused connection broke before sending: once more, fresh
                    yield from attempt.begin_steps(connect=False)
                    legs.append(attempt)
                    loop.add(attempt)
                    continue
                if isinstance(error, DeadlineExceeded):
                    failover.errors[attempt.host] = error
                    raise failover.deadline_exceeded(sent=True) from error
                if not isinstance(error, BrokerUnavailable):
                    raise error  # type: ignore[misc]  # InvalidRequest, ClientResourceError: the caller's
                yield from lost(attempt.host, error)
            now = time.monotonic()
            if deadline is not None and now >= deadline and legs:
                raise failover.deadline_exceeded(sent=True)
            if not hedged and len(legs) == 1 and now >= hedge_at:
                hedged = True
                yield from hedge_now()
    except BaseException as exc:
        loop.abort()
        for attempt in begun:
            attempt.cancel(exc)
        raise
