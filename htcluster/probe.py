"""Probes: a short ``status()`` round trip that decides whether a failed host may serve calls again.

When a host's backoff ends, :class:`~htcluster.resources.Resources` does not
hand the next user call to it: the caller that claims its trial first sends
one ``status()`` on a fresh connection, bounded by ``probe_timeout`` seconds
(default :data:`DEFAULT_PROBE_TIMEOUT`).  Only a probe that answers makes the
host live again; one that fails (refused, reset, or silent: a broker that
accepts connections but is stopped or hung) starts a longer backoff, and the
user's call goes on to another host having lost at most ``probe_timeout``,
never the socket timeout.

Where it runs: inline, in the thread of the call that claims the host (no
background thread, so nothing runs when nobody calls, forks need no care, and
tests drive it with a manual clock).  Many hosts are probed at once, in one
thread, with :func:`~htcluster.multiplex.exchange_all` (a broadcast probes
every host whose backoff ended in one ``probe_timeout``).

Probes are not calls: they do not count in the pools' ``calls``/``errors``
nor emit call events; their verdict goes to
:class:`~htcluster.policy.HostHealth` (``HostUp``/``HostDown``).  A probe
connection that answered is checked in, warm, for the next call.
"""
from __future__ import annotations

import time
from typing import Mapping, Optional, Sequence

from thrift.transport.TTransport import TTransportException

from .errors import BrokerUnavailable, DeadlineExceeded, PoolTimeout
from .multiplex import Exchange, exchange_all
from .pool import Pool, _Entry

__all__ = ["DEFAULT_PROBE_TIMEOUT", "probe_many"]

#: Seconds a probe's ``status()`` may take, connecting included.
DEFAULT_PROBE_TIMEOUT = 0.25


def probe_many(pools: Mapping[str, Pool], hosts: Sequence[str], timeout: float) -> dict[str, Optional[BaseException]]:
    """Send ``status()`` to every host of ``hosts`` at once, on fresh connections, within ``timeout`` seconds.

    :param pools: ``{host: Pool}``.
    :param hosts: the hosts to probe, each once.
    :param timeout: seconds (float) for the whole probe, connecting included.
    :returns: ``{host: None}`` for a host that answered, ``{host: BrokerUnavailable}`` for
        one that did not (``sent=False``: no user request was involved), ``{host: PoolTimeout}``
        when its pool had no free slot (nothing learnt about the host).
    """
    deadline = time.monotonic() + timeout
    verdict: dict[str, Optional[BaseException]] = {}
    entries: dict[str, _Entry] = {}
    try:
        for host in hosts:
            try:
                entries[host] = pools[host]._checkout(None, True, deadline)[0]
            except PoolTimeout as exc:
                verdict[host] = exc
            except (BrokerUnavailable, DeadlineExceeded) as exc:
                verdict[host] = _failure(host, timeout, exc)
        calls = {host: Exchange(entry.resource, "status", ()) for host, entry in entries.items()}
        exchange_all(list(calls.values()), deadline)
        for host, call in calls.items():
            verdict[host] = None if call.ok else _failure(host, timeout, call.result)
    finally:
        for host, entry in entries.items():
            pools[host]._checkin(entry)
    return verdict


def _failure(host: str, timeout: float, exc: BaseException) -> BaseException:
    """Describe a failed probe as the host's error (a ``BrokerUnavailable`` that names the probe)."""
    if isinstance(exc, DeadlineExceeded) or (isinstance(exc, BrokerUnavailable)
                                              and exc.type == TTransportException.TIMED_OUT):
        error = BrokerUnavailable(f"ThriftBroker {host} did not answer a status() probe within {timeout:g} s "
                                  "(stopped, hung or overloaded)", host=host, sent=False,
                                  type=TTransportException.TIMED_OUT)
    elif isinstance(exc, BrokerUnavailable):
        error = BrokerUnavailable(f"status() probe of {host} failed: {exc}", host=host, sent=False, type=exc.type)
    else:  # an answer that is not a status (a broker error): the host answers, so it is not down
        return exc
    error.__cause__ = exc
    return error
