"""What htcluster did, as events: :class:`Event` subclasses and :class:`Listeners`.

(:class:`~htcluster._policy.latency.LatencyWindow`, the recent-latency recorder of
``stats()``, is importable from here too.)

A *listener* is any callable taking one :class:`Event`, or an object with
``on_<kind>`` methods (``on_call_succeeded(event)``, ...), in the spirit of
pymongo's command and pool listeners.  Register one for the whole process
with :func:`register`, or for one routing object on its ``listeners``
registry (``Replicas(...).listeners.register(fn)``); the per-object
registry passes every event on to the process-wide one too.

The call path pays nothing while nobody listens: it tests ``if listeners:``
(two tuple checks) and builds an event object only when that is true.  A
listener that raises is logged on the ``htcluster.events`` logger, with its
traceback, and the call goes on as if it had not been there.

Every duration is in seconds (float, from ``time.monotonic``); every host is
the ``'host:port'`` text of :class:`~htcluster.hosts.Host`.  Events are
emitted on the thread that did the work, synchronously: a listener that
blocks delays that call, so hand slow work (network export) to a queue.

Example::

    import htcluster, htcluster.events as events

    @events.register
    def log_slow(event):
        if isinstance(event, events.CallSucceeded) and event.duration > 0.5:
            print("slow", event.method, "on", event.host, event.duration)

    htcluster.Replicas(["ht1", "ht2"]).call("status")
"""
from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional, Union

from .errors import ConfigError
from ._policy.latency import DEFAULT_WINDOW, LatencyWindow

__all__ = [
    "DEFAULT_WINDOW",
    "EVENT_KINDS",
    "BudgetExhausted",
    "CallFailed",
    "CallStarted",
    "CallSucceeded",
    "ConnectionClosed",
    "ConnectionOpened",
    "ConnectionReplaced",
    "Event",
    "FailedOver",
    "Hedged",
    "HostDown",
    "HostEjected",
    "HostUp",
    "LatencyWindow",
    "Listener",
    "Listeners",
    "MembershipChanged",
    "PoolCheckedIn",
    "PoolCheckedOut",
    "PoolTimedOut",
    "listeners",
    "register",
    "unregister",
]

log = logging.getLogger(__name__)

# slots=True needs Python 3.10; on 3.9 the events are plain frozen dataclasses.
_SLOTS: dict[str, bool] = {"slots": True} if sys.version_info >= (3, 10) else {}


# -- the events ---------------------------------------------------------------

@dataclass(frozen=True, **_SLOTS)
class Event:
    """Base class of every event; ``kind`` names the event (``'call_started'``, ...)."""

    kind: ClassVar[str] = "event"


@dataclass(frozen=True, **_SLOTS)
class CallStarted(Event):
    """A broker call is about to be sent to ``host`` (one per attempt).

    It is followed, on the same thread, by one :class:`CallSucceeded` or
    :class:`CallFailed` with the same ``host``, ``method`` and ``attempt``.

    :param host: ``'host:port'``.
    :param method: the broker method name (:ref:`broker-methods`), e.g. ``'hql_query'``.
    :param namespace: the namespace name the call runs in, or ``None``.
    :param attempt: 1 for the first try of this call on this pool, 2 for its retry.
    :param args: the method's arguments after the namespace id (not copied: do not mutate).
    """

    kind: ClassVar[str] = "call_started"
    host: str
    method: str
    namespace: Optional[str]
    attempt: int
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, **_SLOTS)
class CallSucceeded(Event):
    """The broker answered a call; ``duration`` is seconds from send to answer (float)."""

    kind: ClassVar[str] = "call_succeeded"
    host: str
    method: str
    namespace: Optional[str]
    attempt: int
    duration: float
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, **_SLOTS)
class CallFailed(Event):
    """A call raised ``error`` (a broker ``ClientException``, ``BrokerUnavailable``, ...)
    after ``duration`` seconds (float)."""

    kind: ClassVar[str] = "call_failed"
    host: str
    method: str
    namespace: Optional[str]
    attempt: int
    duration: float
    error: BaseException
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, **_SLOTS)
class FailedOver(Event):
    """Work described by ``what`` (e.g. ``'call status'``) moved away from ``host`` after ``error``."""

    kind: ClassVar[str] = "failed_over"
    host: str
    what: str
    error: BaseException


@dataclass(frozen=True, **_SLOTS)
class HostDown(Event):
    """``host`` is skipped for ``backoff`` seconds after ``failures`` consecutive failures.

    :param error: the failure that marked it down, or ``None`` (marked by hand).
    """

    kind: ClassVar[str] = "host_down"
    host: str
    error: Optional[BaseException]
    failures: int
    backoff: float


@dataclass(frozen=True, **_SLOTS)
class HostUp(Event):
    """``host``, down before, answered again."""

    kind: ClassVar[str] = "host_up"
    host: str


@dataclass(frozen=True, **_SLOTS)
class HostEjected(Event):
    """``host`` answered transient broker errors in a row and is set aside for ``ejected_for`` seconds
    (outlier ejection; it is not down, and still serves past the ``max_ejection`` cap).

    :param error: the last of those answers (a ``ClientException``).
    """

    kind: ClassVar[str] = "host_ejected"
    host: str
    error: Optional[BaseException]
    ejected_for: float


@dataclass(frozen=True, **_SLOTS)
class MembershipChanged(Event):
    """The hosts of a routing object changed (``add``, ``remove``, ``set_hosts``).

    :param added: the hosts added, ``'host:port'``.
    :param removed: the hosts removed (draining, or shut at once without ``drain``).
    :param hosts: every host now, in order (for ``Replicas``, the write order).
    :param drain: whether removed hosts finish their calls in flight.
    """

    kind: ClassVar[str] = "membership_changed"
    added: tuple[str, ...]
    removed: tuple[str, ...]
    hosts: tuple[str, ...]
    drain: bool


@dataclass(frozen=True, **_SLOTS)
class PoolCheckedOut(Event):
    """A connection to ``host`` was handed out after waiting ``wait`` seconds (float) for it."""

    kind: ClassVar[str] = "pool_checked_out"
    host: str
    wait: float


@dataclass(frozen=True, **_SLOTS)
class PoolCheckedIn(Event):
    """A connection to ``host`` came back to its pool (emitted before a
    :class:`ConnectionClosed` when the pool then discards it)."""

    kind: ClassVar[str] = "pool_checked_in"
    host: str


@dataclass(frozen=True, **_SLOTS)
class PoolTimedOut(Event):
    """No connection to ``host`` became free within ``waited`` seconds (``PoolTimeout`` follows)."""

    kind: ClassVar[str] = "pool_timed_out"
    host: str
    waited: float


@dataclass(frozen=True, **_SLOTS)
class ConnectionOpened(Event):
    """A new connection to ``host`` was opened (it is idle until checked out)."""

    kind: ClassVar[str] = "connection_opened"
    host: str


@dataclass(frozen=True, **_SLOTS)
class ConnectionClosed(Event):
    """A connection to ``host`` was closed; ``reason`` says why (``'failed'``,
    ``'max_age'``, ``'overflow'``, ``'pool closed'``, ...).

    A checked-out connection is first checked in (:class:`PoolCheckedIn`), so
    the closed one always counts as idle: opened - closed - replaced is the
    number of connections open, checked-out - checked-in those in use.
    """

    kind: ClassVar[str] = "connection_closed"
    host: str
    reason: str


@dataclass(frozen=True, **_SLOTS)
class ConnectionReplaced(Event):
    """An idle connection to ``host`` was found unusable at checkout (``reason``:
    ``'stale'``, ``'max_age'``, ``'idle ping'``, ...) and closed, in place of
    a :class:`ConnectionClosed`; the new connection that replaces it comes
    with its own :class:`ConnectionOpened`."""

    kind: ClassVar[str] = "connection_replaced"
    host: str
    reason: str


@dataclass(frozen=True, **_SLOTS)
class Hedged(Event):
    """A hedge (speculative copy) of ``method`` was sent to ``host`` ``after``
    seconds (float) without an answer from the first host."""

    kind: ClassVar[str] = "hedged"
    host: str
    method: str
    after: float


@dataclass(frozen=True, **_SLOTS)
class BudgetExhausted(Event):
    """A retry or hedge of ``what`` was not sent: the retry budget is spent."""

    kind: ClassVar[str] = "budget_exhausted"
    what: str


#: ``{kind: event class}`` of every event htcluster emits.
EVENT_KINDS: dict[str, type[Event]] = {
    cls.kind: cls for cls in (
        CallStarted, CallSucceeded, CallFailed, FailedOver, HostDown, HostUp, HostEjected,
        PoolCheckedOut, PoolCheckedIn, PoolTimedOut, ConnectionOpened, ConnectionClosed,
        ConnectionReplaced, Hedged, BudgetExhausted, MembershipChanged)
}


# -- listeners ----------------------------------------------------------------

#: A listener: a callable taking one :class:`Event`, or an object with ``on_<kind>`` methods.
Listener = Union[Callable[[Event], Any], object]


class _MethodAdapter:
    """Call ``obj.on_<event.kind>(event)`` when ``obj`` has that method."""

    __slots__ = ("obj",)

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __call__(self, event: Event) -> None:
        method = getattr(self.obj, "on_" + event.kind, None)
        if method is not None:
            method(event)

    def __repr__(self) -> str:
        return f"<on_* adapter of {self.obj!r}>"


def _as_callable(listener: Listener) -> Callable[[Event], Any]:
    """The callable to run for ``listener``; :class:`ConfigError` if it is neither kind."""
    if callable(listener):
        return listener
    if any(name.startswith("on_") and callable(getattr(listener, name, None))
           for name in dir(listener)):
        return _MethodAdapter(listener)
    raise ConfigError(
        f"a listener must be a callable taking one event, or an object with on_<kind> methods "
        f"(e.g. on_call_succeeded); got {listener!r}")


# Registration is rare: one lock serves every registry.  A child process gets
# fresh locks, in case another thread of the parent held one at fork time.
_registration_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _registration_lock
    _registration_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _same(a: object, b: object) -> bool:
    """Identity, or equality for bound methods (``obj.on_event`` is a new object each time)."""
    return a is b or (hasattr(a, "__self__") and hasattr(b, "__self__") and a == b)


_GLOBAL = object()  # the default of Listeners(parent=...): the process-wide registry


class Listeners:
    """A registry of listeners; :meth:`emit` runs its own, then its parent's.

    ``Listeners()`` is a per-object registry whose parent is the process-wide
    :data:`listeners`; ``Listeners(parent=None)`` stands alone.  Registration
    is copy-on-write under a lock, so listeners may be added or removed from
    any thread, also while another thread emits (that emission sees the set
    as it was when it began).

    ``bool(registry)`` is true when it or a parent has a listener: the call
    path tests it before building an event.
    """

    __slots__ = ("__weakref__", "_calls", "_origins", "parent")

    def __init__(self, parent: Any = _GLOBAL) -> None:
        """Make a registry.

        :param parent: a :class:`Listeners` that also receives every event, or
            ``None``; by default the process-wide :data:`listeners`.
        """
        if parent is _GLOBAL:
            parent = listeners
        if parent is not None and not isinstance(parent, Listeners):
            raise ConfigError(f"parent must be a Listeners registry or None, got {parent!r}")
        self.parent: Optional[Listeners] = parent
        self._calls: tuple[Callable[[Event], Any], ...] = ()
        self._origins: tuple[object, ...] = ()

    def __bool__(self) -> bool:
        if self._calls:
            return True
        parent = self.parent
        while parent is not None:
            if parent._calls:
                return True
            parent = parent.parent
        return False

    def __len__(self) -> int:
        """The number of listeners registered here (not counting the parent's)."""
        return len(self._calls)

    def __contains__(self, listener: object) -> bool:
        return any(_same(o, listener) for o in self._origins)

    def __repr__(self) -> str:
        scope = "global" if self is listeners else "local"
        return f"<Listeners {scope} [{len(self._calls)} listeners]>"

    def register(self, listener: Listener) -> Listener:
        """Add ``listener`` (after those already registered); a no-op if it is already here.

        Usable as a decorator: it returns ``listener`` unchanged.

        :param listener: a callable taking one :class:`Event`, or an object
            with ``on_<kind>`` methods (only those it has are called).  A
            callable object is called, whatever ``on_*`` methods it also has.
        :returns: ``listener``.
        :raises ConfigError: ``listener`` is neither.
        """
        call = _as_callable(listener)
        with _registration_lock:
            if listener not in self:
                self._origins = self._origins + (listener,)
                self._calls = self._calls + (call,)
        return listener

    def unregister(self, listener: Listener) -> None:
        """Remove ``listener``; a no-op if it is not registered here.

        Emissions already under way on other threads may still call it once.
        """
        with _registration_lock:
            for i, origin in enumerate(self._origins):
                if _same(origin, listener):
                    self._origins = self._origins[:i] + self._origins[i + 1:]
                    self._calls = self._calls[:i] + self._calls[i + 1:]
                    return

    def clear(self) -> None:
        """Remove every listener registered here (not the parent's)."""
        with _registration_lock:
            self._origins = ()
            self._calls = ()

    def emit(self, event: Event) -> None:
        """Call every listener of this registry, then of each parent, with ``event``.

        An ``Exception`` a listener raises is logged (``htcluster.events``
        logger, ``ERROR`` with traceback) and the next listener runs;
        ``KeyboardInterrupt`` and ``SystemExit`` pass through.
        """
        registry: Optional[Listeners] = self
        while registry is not None:
            for call in registry._calls:
                try:
                    call(event)
                except Exception:
                    log.exception("htcluster event listener %r failed on %s", call, event.kind)
            registry = registry.parent


#: The process-wide registry: every per-object registry passes its events on to it.
listeners = Listeners(parent=None)


def register(listener: Listener) -> Listener:
    """Register ``listener`` process-wide (see :meth:`Listeners.register`); usable as a decorator."""
    return listeners.register(listener)


def unregister(listener: Listener) -> None:
    """Remove a process-wide ``listener`` (see :meth:`Listeners.unregister`)."""
    listeners.unregister(listener)
