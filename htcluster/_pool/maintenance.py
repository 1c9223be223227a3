"""The one maintenance thread of a process: it keeps pools with a ``min_size`` warm and their idle connections fresh.

A pool given ``min_size=N`` or ``max_idle_time=S`` registers here (held weakly);
one daemon thread per process, started on the first registration, visits the
registered pools every :data:`INTERVAL` seconds (jittered) and has each close
the idle connections that cannot serve any more (the broker closed them, or
they outlived ``max_idle_time`` or ``max_age``:
:meth:`ConnectionPool.sweep <htcluster._pool.pool.ConnectionPool.sweep>`), then
open what it lacks
(:meth:`ConnectionPool.top_up <htcluster._pool.pool.ConnectionPool.top_up>`):
connections for the minimum are never opened by user calls, and never more
than ``max_connecting`` at once.  A pool whose top-up failed is left alone
for a jittered, growing backoff (a broker that is down is not hammered).

The thread ends by itself once no pool is registered (every one was closed
or collected) and is started again by the next registration.  After
``os.fork`` the child has no such thread: the maintainer is renewed through
:func:`htcluster._policy.forks.renew_after_fork` and starts a thread of its
own for the pools the child inherited (they start empty, as every pool does
in a child).
"""
from __future__ import annotations

import logging
import random
import threading
import weakref
from typing import Any, Optional

from .._policy.forks import renew_after_fork

__all__ = ["INTERVAL", "Maintainer", "maintainer"]

log = logging.getLogger("htcluster.pool")

#: Seconds between two visits of the registered pools (less a random jitter of up to a fifth).
INTERVAL = 0.5


class Maintainer:
    """The registry of pools to keep warm, and its thread.

    :param interval: seconds between visits.
    """

    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self._pools: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self.after_fork()
        renew_after_fork(self)

    def after_fork(self) -> None:
        """In a forked child: new lock, no thread (the parent's did not come along); start one if pools are kept."""
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._wake = threading.Event()
        self._rng = random.Random()
        if len(self._pools):
            self._start()

    @property
    def running(self) -> bool:
        """True while the maintenance thread runs."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def watch(self, pool: Any) -> None:
        """Keep ``pool`` at its ``min_size`` from now on (it is held weakly); start the thread if needed."""
        with self._lock:
            self._pools.add(pool)
            if self._thread is None:
                self._start()
        self._wake.set()  # a new pool: visit it now

    def forget(self, pool: Any) -> None:
        """Stop keeping ``pool`` warm (it was closed); the thread ends when no pool is left."""
        with self._lock:
            self._pools.discard(pool)
        self._wake.set()

    def _start(self) -> None:
        """Start the thread (the lock held, or in a forked child before any other thread)."""
        thread = threading.Thread(target=self._run, name="htcluster-pool-maintenance", daemon=True)
        self._thread = thread
        thread.start()

    def _run(self) -> None:
        while True:
            # the first wait also lets a forked child finish renewing its pools before any is visited
            self._wake.wait(self.interval * (1.0 - 0.2 * self._rng.random()))
            self._wake.clear()
            with self._lock:
                pools = list(self._pools)
                if not pools:
                    self._thread = None
                    return
            for pool in pools:
                try:
                    pool.sweep()
                    pool.top_up()
                except Exception:  # noqa: BLE001 - the thread must outlive any one pool's trouble
                    log.debug("keeping %r warm failed", pool, exc_info=True)
            del pools


#: The process's maintainer.
maintainer = Maintainer()
