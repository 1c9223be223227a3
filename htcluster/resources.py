"""Resources: many ThriftBrokers, one :class:`~htcluster.pool.Pool` each.

:class:`Resources` is a ``dict`` ``'host:port' -> Pool`` that decides which
host a call goes to, fails over to another one when a connection fails, and
broadcasts a call to many hosts in parallel.  Host health (dead hosts, backoff,
trial calls) is :class:`~htcluster.policy.HostHealth`'s business; the number of
other hosts one call may try is a :class:`~htcluster.policy.Retry`.

Choosing a host: its priority is the number of idle connections in its pool
(warm connections first), ``None`` while it is dead; ties are broken at random.
When every host is dead, the one whose backoff ends first is tried anyway.
"""
from __future__ import annotations

import concurrent.futures
import inspect
import logging
import random
import threading
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, TypeVar, Union

from thrift.Thrift import TApplicationException

from .errors import BroadcastError, BrokerUnavailable, ClientException, ConfigError, NoHostAvailable
from .hosts import Host, HostLike, parse_hosts
from .policy import Backoff, Clock, HostHealth, Retry, is_write
from .pool import Pool
from .resource import Resource, scan_cells
from .types import Cell, ScanSpec

__all__ = ["DEFAULT_MAX_WORKERS", "ERROR_MODES", "Resources"]

log = logging.getLogger(__name__)

#: Threads a broadcast uses at most, shared by all broadcasts of one Resources.
DEFAULT_MAX_WORKERS = 16
#: What ``broadcast(errors=...)`` accepts.
ERROR_MODES = ("raise", "return")
#: Keyword arguments passed through to every Pool.
POOL_OPTIONS = frozenset(inspect.signature(Pool).parameters) - {"host"}
#: Exceptions that are the broker's answer: the host is alive (protocol.md 1.1).
ANSWERS = (ClientException, TApplicationException)

T = TypeVar("T")


class Resources(dict):
    """Pools to many brokers: pick one, fail over, or broadcast to all.

    :param hosts: ``'host[:port],...'`` or an iterable of hosts (see :mod:`htcluster.hosts`).
    :param retry: other hosts one call may try after a connection failure
        (a :class:`~htcluster.policy.Retry`, an int, a bool or ``None`` = every host once).
    :param backoff: how long a failed host is left alone (a :class:`~htcluster.policy.Backoff`,
        its base in seconds, or ``None`` = 1 s doubling to 30 s).
    :param clock: callable returning seconds, for the backoff (``time.monotonic``).
    :param rng: ``random.Random`` used for choices and jitter.
    :param max_workers: threads of the broadcast pool, >= 1.
    :param pool_options: passed to every :class:`~htcluster.pool.Pool` (``size``,
        ``timeout``, ``socket_timeout``, ``connect_timeout``, ...; seconds).
    :raises ConfigError: no hosts, a malformed host or option.

    Example::

        rs = Resources('ht1,ht2,ht3', socket_timeout=10.0)
        rs.unicast('hql_query', 'SELECT * FROM t', namespace='test')
        rs.broadcast('status')   # {'ht1:15867': Status(...), ...}
    """

    def __init__(self, hosts: Union[str, Iterable[HostLike]], *, retry: Union[Retry, int, bool, None] = None,
                 backoff: Union[Backoff, float, None] = None, clock: Optional[Clock] = None,
                 rng: Optional[random.Random] = None, max_workers: int = DEFAULT_MAX_WORKERS,
                 **pool_options: Any) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ConfigError(f"max_workers must be an int >= 1, got {max_workers!r}")
        unknown = set(pool_options) - POOL_OPTIONS
        if unknown:
            raise ConfigError(f"unknown option(s) {sorted(unknown)}; Resources takes retry, backoff, clock, rng, "
                              f"max_workers and the Pool options {sorted(POOL_OPTIONS)}")
        parsed = parse_hosts(hosts)
        super().__init__()
        self.retry = Retry.from_int(retry)
        self.rng = rng or random.Random()
        self.health = HostHealth([str(h) for h in parsed], backoff, clock, self.rng)
        self.max_workers = max_workers
        self._executor: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._lock = threading.Lock()
        try:
            for host in parsed:
                self[str(host)] = Pool(host, **pool_options)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ choosing

    def host_key(self, host: HostLike) -> str:
        """Return the ``'host:port'`` key of ``host`` (any spelling :class:`Host` parses).

        :raises ConfigError: ``host`` is malformed or not one of these hosts.
        """
        name = str(Host.parse(host))
        if name not in self:
            raise ConfigError(f"{name} is not one of the hosts here ({', '.join(self)})")
        return name

    def _keys(self, hosts: Iterable[HostLike]) -> list[str]:
        """Normalise a host subset; the empty subset means every host."""
        names = list(dict.fromkeys(self.host_key(h) for h in hosts))
        return names or list(self)

    def priority(self, host: str) -> Optional[int]:
        """Return the number of idle connections of ``host``'s pool, or ``None`` while it is dead."""
        return self[host].idle if self.health.usable(host) else None

    def choice(self, hosts: Iterable[str]) -> Optional[str]:
        """Return one of ``hosts``: at random among those of highest priority.

        When every host is dead, return the one whose backoff ends first;
        ``None`` when ``hosts`` is empty.
        """
        hosts = list(hosts)
        best = self._best(hosts)
        return self.rng.choice(best) if best else self.health.soonest(hosts)

    def _best(self, hosts: Iterable[str]) -> list[str]:
        """Return the usable hosts of highest priority (empty when all are dead)."""
        ranked = [(p, h) for h in hosts if (p := self.priority(h)) is not None]
        top = max((p for p, _ in ranked), default=None)
        return [h for p, h in ranked if p == top]

    def _acquire(self, hosts: Sequence[str], tried: Iterable[str], ordered: bool) -> Optional[str]:
        """Claim a host not yet ``tried`` for one call: the first usable one if ``ordered``,
        else by :meth:`choice`; when none is usable, the dead one that comes back soonest.

        :returns: the claimed host, or ``None`` when every host was tried.
        """
        pending = [h for h in hosts if h not in tried]
        remaining = list(pending)
        while pending:
            if ordered:
                host = next((h for h in pending if self.health.usable(h)), None)
            else:
                best = self._best(pending)
                host = self.rng.choice(best) if best else None
            if host is None:
                break
            if self.health.claim(host):
                return host
            pending.remove(host)  # another caller took its trial meanwhile
        host = self.health.soonest(remaining)
        if host is not None:
            self.health.claim(host, force=True)
        return host

    def _watch(self, host: str, hold: bool = False) -> "_Outcome":
        """Return a context manager that reports the outcome of a claimed call to the host's health.

        :param hold: on success report nothing: the claim lives on (a checked-out
            connection), and a later ``_watch`` reports for it.
        """
        return _Outcome(self.health, host, hold)

    def _no_host(self, what: str, hosts: Sequence[str], errors: dict[str, BaseException]) -> NoHostAvailable:
        """Build the error naming each host and why it was not usable."""
        causes = dict(errors)
        for host in hosts:
            state = self.health.state(host)
            if host not in causes and state.error is not None:
                causes[host] = state.error
        return NoHostAvailable(f"no broker could serve {what} ({len(hosts)} host(s))", causes)

    def _failover(self, what: str, hosts: Sequence[str], fn: Callable[[str], T], *,
                  idempotent: bool, ordered: bool = False, hold: bool = False) -> T:
        """Run ``fn(host)`` on one host after another until one does not fail to connect.

        :param idempotent: a call that may have reached a broker (``sent=True``)
            is repeated elsewhere only when this is true.
        :param ordered: try hosts in the given order instead of by priority.
        :param hold: keep the successful host's claim (see :meth:`_watch`).
        :raises NoHostAvailable: every host allowed by the retry failed.
        :raises BrokerUnavailable: a non-idempotent call failed after it was sent.
        """
        retry, errors = self.retry, {}
        while True:
            host = self._acquire(hosts, errors, ordered)
            if host is None:
                raise self._no_host(what, hosts, errors)
            try:
                with self._watch(host, hold):
                    return fn(host)
            except BrokerUnavailable as exc:
                errors[host] = exc
                if exc.sent and not idempotent:
                    raise  # it may have been applied: repeating it could apply it twice
                retry = retry.increment(host)
                if retry.exhausted:
                    raise self._no_host(what, hosts, errors) from exc
                log.info("%s failed on %s, trying another host: %s", what, host, exc)

    # ------------------------------------------------------------ calling

    def unicast(self, method: str, *args: Any, namespace: Optional[str] = None, hosts: Iterable[HostLike] = (),
                idempotent: Optional[bool] = None) -> Any:
        """Call ``method`` on one host, failing over to another when the connection fails.

        :param method: a broker method (protocol.md section 2).
        :param namespace: a namespace name whose per-connection id is put before ``args``.
        :param hosts: the subset of hosts to use (default: all).
        :param idempotent: whether the call may be repeated on another host after
            it was sent; default: true for reads (:func:`htcluster.policy.is_write`).
            A call that was never sent is always retried.
        :returns: the broker's answer.
        :raises NoHostAvailable: no host could be reached (each host's cause inside).
        :raises BrokerUnavailable: a non-idempotent call failed after being sent.
        :raises ClientException: the broker refused the call.
        """
        if idempotent is None:
            idempotent = not is_write(method, args)
        return self._failover(method, self._keys(hosts),
                              lambda host: self[host].call(method, *args, namespace=namespace),
                              idempotent=idempotent)

    def _executor_for(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    self.max_workers, thread_name_prefix="htcluster-broadcast")
            return self._executor

    def broadcast(self, method: str, *args: Any, namespace: Optional[str] = None, hosts: Iterable[HostLike] = (),
                  errors: str = "raise") -> Any:
        """Call ``method`` on every host in parallel (at most ``max_workers`` at once).

        A host in its backoff is not called: its error is the reason it is down.
        When every host is down, every one is tried anyway.

        :param hosts: the subset of hosts (default: all).
        :param errors: ``'raise'``: return ``{host: result}``, or raise
            :class:`~htcluster.errors.BroadcastError` (with ``.results`` and
            ``.errors``) if any host failed.  ``'return'``: return the pair
            ``({host: result}, {host: exception})``; both dicts follow host order.
        :raises ConfigError: ``errors`` is not one of :data:`ERROR_MODES`.
        :raises BroadcastError: some host failed and ``errors='raise'``.
        """
        if errors not in ERROR_MODES:
            raise ConfigError(f"errors must be one of {ERROR_MODES}, got {errors!r}")
        targets = self._keys(hosts)
        claimed = [h for h in targets if self.health.claim(h)]
        if not claimed:
            claimed = [h for h in targets if self.health.claim(h, force=True)]
        failures: dict[str, BaseException] = {
            h: BrokerUnavailable(self.health.describe(h), host=h, sent=False) for h in targets if h not in claimed}

        def run(host: str) -> Any:
            with self._watch(host):
                return self[host].call(method, *args, namespace=namespace)

        outcomes: dict[str, Any] = {}
        if len(claimed) == 1:  # no thread hop for a single host
            futures = {claimed[0]: _completed(run, claimed[0])}
        else:
            executor = self._executor_for()
            futures = {h: executor.submit(run, h) for h in claimed}
        for host, future in futures.items():
            try:
                outcomes[host] = future.result()
            except Exception as exc:
                failures[host] = exc
        results = {h: outcomes[h] for h in targets if h in outcomes}
        failures = {h: failures[h] for h in targets if h in failures}
        if errors == "return":
            return results, failures
        if failures:
            raise BroadcastError(f"{method} failed on {len(failures)} of {len(targets)} host(s)", results, failures)
        return results

    def connection(self, host: Optional[HostLike] = None, *, hosts: Iterable[HostLike] = (),
                   ordered: bool = False) -> "_Connection":
        """Check out one connection, for calls that must share it (scanners, mutators).

        Failing to connect moves on to another host (nothing was sent yet);
        failures inside the block are the caller's, and mark the host's health.

        :param host: this host only (default: one chosen among ``hosts``).
        :param hosts: the candidates (default: all).
        :param ordered: take the first usable candidate instead of by priority.
        :returns: a context manager giving a :class:`~htcluster.resource.Resource`.
        :raises NoHostAvailable: no candidate could be connected to.
        """
        candidates = [self.host_key(host)] if host is not None else self._keys(hosts)
        return _Connection(self, candidates, ordered)

    def scan(self, table: str, scan_spec: Optional[ScanSpec] = None, *, namespace: str,
             host: Optional[HostLike] = None) -> Iterator[Cell]:
        """Yield the cells of ``table`` from one host (scanner opened and always closed).

        :param scan_spec: what to read (``None``: everything).
        :param namespace: the namespace name.
        :param host: the host to read from (default: chosen by priority).
        :returns: a generator of :class:`~htcluster.types.Cell`.
        :raises NoHostAvailable: no host could be connected to.
        """
        with self.connection(host) as resource:
            yield from scan_cells(resource, resource.mns[namespace], table, scan_spec)

    def close(self) -> None:
        """Close every pool and stop the broadcast threads; idempotent."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        for pool in self.values():
            pool.close()

    def __enter__(self) -> "Resources":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        down = len(self.health.down())
        return f"<{type(self).__name__} {len(self)} hosts, {down} down: {', '.join(self)}>"


class _Outcome:
    """Report how a claimed call ended to :class:`~htcluster.policy.HostHealth`.

    A class, not ``contextlib.contextmanager``: that one sets ``__traceback__``
    on the exception it re-raises, which Thrift's immutable ``ClientException`` refuses.
    """

    __slots__ = ("health", "host", "hold")

    def __init__(self, health: HostHealth, host: str, hold: bool = False) -> None:
        self.health, self.host, self.hold = health, host, hold

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException], tb: object) -> None:
        if exc_type is None:
            if not self.hold:
                self.health.succeeded(self.host)
        elif issubclass(exc_type, BrokerUnavailable):
            delay = self.health.failed(self.host, exc)
            log.warning("%s marked down for %.2f s: %s", self.host, delay, exc)
        elif issubclass(exc_type, ANSWERS):
            self.health.succeeded(self.host)
        else:  # PoolTimeout, a bad argument, GeneratorExit: nothing learnt about the host
            self.health.release(self.host)


class _Connection:
    """The context manager of :meth:`Resources.connection`: failover at checkout, health report at the end."""

    def __init__(self, resources: Resources, candidates: list[str], ordered: bool) -> None:
        self.resources, self.candidates, self.ordered = resources, candidates, ordered
        self.host: Optional[str] = None
        self.checkout: Any = None

    def __enter__(self) -> Resource:
        if self.checkout is not None:
            raise RuntimeError("this connection() is already in use; call connection() again")

        def checkout(host: str) -> tuple[str, Any, Resource]:
            cm = self.resources[host].connection()
            return host, cm, cm.__enter__()

        self.host, self.checkout, resource = self.resources._failover(
            "connection", self.candidates, checkout, idempotent=True, ordered=self.ordered, hold=True)
        return resource

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException], tb: object) -> None:
        checkout, self.checkout = self.checkout, None
        try:
            checkout.__exit__(exc_type, exc, tb)  # back to the pool (closed if it failed)
        finally:
            _Outcome(self.resources.health, str(self.host)).__exit__(exc_type, exc, tb)


def _completed(fn: Callable[[str], Any], host: str) -> concurrent.futures.Future:
    """Run ``fn(host)`` now, in this thread, and return its outcome as a finished Future."""
    future: concurrent.futures.Future = concurrent.futures.Future()
    try:
        future.set_result(fn(host))
    except Exception as exc:
        future.set_exception(exc)
    return future
