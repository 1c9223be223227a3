"""One call on many pools at once: check out a connection per host, multiplex, check in.

:func:`call_many` is the I/O half of ``Resources.broadcast`` and
``Shards.multicast``; deciding which hosts to call and recording their health
stays with the routing layer.  With requests encoded up front and replies
read as they arrive (:func:`~htcluster.multiplex.exchange_all`), a broadcast
to 256 brokers costs about one round trip, in the calling thread.
"""
from __future__ import annotations

import time
from typing import Any, Mapping, Optional, Sequence

from . import events as ev
from .errors import BrokerUnavailable
from .multiplex import Exchange, exchange_all
from .pool import Pool, _Entry

__all__ = ["call_many"]


def call_many(pools: Mapping[str, Pool], hosts: Sequence[str], method: str, args: Sequence[Any],
              namespace: Optional[str] = None,
              deadline: Optional[float] = None) -> tuple[dict[str, Any], dict[str, BaseException]]:
    """Call ``method(*args)`` on one pooled connection of each host of ``hosts``, all at once.

    A namespace not yet open on a connection is opened first, for all such
    connections at once.  A reused connection that fails before its request
    left (``sent=False``, e.g. the broker restarted since) is retried once on a
    fresh connection, as :meth:`Pool.call <htcluster.pool.Pool.call>` does.

    :param pools: ``{host: Pool}``.
    :param hosts: the hosts to call, each once.
    :param method: a broker method (protocol.md section 2).
    :param args: its arguments after the namespace id.
    :param namespace: a namespace name whose per-connection id goes before ``args``.
    :param deadline: ``time.monotonic()`` time by which every exchange ends.
    :returns: ``({host: answer}, {host: exception})``; a host is in exactly one.
    """
    results: dict[str, Any] = {}
    failures: dict[str, BaseException] = {}
    todo = list(hosts)
    for fresh in (False, True):
        entries: dict[str, tuple[_Entry, bool]] = {}
        try:
            for host in todo:
                try:
                    entries[host] = pools[host]._checkout(None, fresh, deadline)
                except Exception as exc:
                    failures[host] = exc
            ready = _open_namespace(entries, namespace, deadline, failures) if namespace is not None else entries
            calls = {host: Exchange(entry.resource, method,
                                    (entry.resource.mns[namespace], *args) if namespace is not None else args)
                     for host, (entry, _) in ready.items()}
            attempt = 2 if fresh else 1
            for host in calls:
                if pools[host].listeners:
                    pools[host].listeners.emit(ev.CallStarted(host, method, namespace, attempt, tuple(args)))
            start = time.monotonic()
            exchange_all(list(calls.values()), deadline)
            took = time.monotonic() - start
            for host, call in calls.items():
                pool = pools[host]
                pool._count(took, not call.ok)
                if pool.listeners:
                    pool.listeners.emit(
                        ev.CallSucceeded(host, method, namespace, attempt, took, tuple(args)) if call.ok else
                        ev.CallFailed(host, method, namespace, attempt, took, call.result, tuple(args)))
        finally:
            for host, (entry, _) in entries.items():
                pools[host]._checkin(entry)
        todo = []
        for host, call in calls.items():
            if call.ok:
                results[host] = call.result
            elif (not fresh and entries[host][1] and isinstance(call.result, BrokerUnavailable)
                  and not call.result.sent):
                todo.append(host)  # a reused connection that broke before sending: once more, fresh
            else:
                failures[host] = call.result
        if not todo:
            break
    return results, failures


def _open_namespace(entries: dict[str, tuple[_Entry, bool]], namespace: str, deadline: Optional[float],
                    failures: dict[str, BaseException]) -> dict[str, tuple[_Entry, bool]]:
    """Open ``namespace`` on every connection of ``entries`` that has not yet; return those that have it."""
    opening = {host: Exchange(entry.resource, "namespace_open", (namespace,))
               for host, (entry, _) in entries.items() if namespace not in entry.resource.mns}
    exchange_all(list(opening.values()), deadline)
    for host, call in opening.items():
        if call.ok:
            call.resource.mns.remember(namespace, call.result)
        else:
            failures[host] = call.result
    return {host: pair for host, pair in entries.items() if host not in failures}
