"""Scatter: one batch of cells per destination, all sent at once, each failing over within its own hosts.

A mutator's flush hands :func:`scatter` one batch per destination (one for
``Replicas``, one per shard key for ``Shards``), each with the
:class:`~htcluster._policy.plans.Plan` of its hosts.  Every round claims one
host per pending destination (``Failover.next_host``: probes, backoffs, the
retry and the retry budget, the deadline), merges the batches that landed on
the same host into one ``set_cells``, and runs every host's call at once on
the multiplexing loop (:func:`~htcluster._call.loop.run_all`): one round trip
for all shards.  A destination whose host failed (``BrokerUnavailable``)
goes again in the next round to another host of its plan; an answer (a
``ClientException``), a deadline or an exhausted retry is final for it.

Batches are stamped (:mod:`htcluster._policy.batches`), so a batch sent
again after its host failed mid-call stores the same versions: plans are
idempotent.  Acknowledgements are recorded as they arrive, so a
``KeyboardInterrupt`` (or, on the event loop, a cancellation) leaves the
caller knowing which batches were answered.  The rounds are written once, as
a generator of steps (:meth:`Scatter.run_steps`): :meth:`Scatter.run` makes
them blocking, ``htcluster._aio`` awaits them.
"""
from __future__ import annotations

from typing import Any, Hashable, Mapping, Optional

from .._call.attempt import Attempt
from .._call.loop import run_all_steps
from .._policy.plans import Plan
from .._policy.steps import Steps, drive
from ..errors import BrokerUnavailable, DeadlineExceeded, NoHostAvailable, WriteOutcomeUnknown
from ..types import Cell
from .router import Failover, Router

__all__ = ["Scatter"]


class Scatter:
    """One flush's batches in flight: :meth:`run` sends them; :attr:`acked` and :attr:`errors` say how it went.

    :param router: the routing object's router (pools, health, retry, budgets).
    :param table: the table written.
    :param namespace: the namespace name.
    :param batches: ``{destination key: cells}`` (stamped).
    :param plans: ``{destination key: Plan}`` of the hosts that may take each batch.
    :param deadline: ``time.monotonic()`` time by which the flush ends (``None``: none).
    """

    def __init__(self, router: Router, table: str, namespace: str, batches: Mapping[Hashable, list[Cell]],
                 plans: Mapping[Hashable, Plan], deadline: Optional[float]) -> None:
        self.router, self.table, self.namespace, self.deadline = router, table, namespace, deadline
        self.batches = batches
        self.failover = {key: Failover(router, f"set_cells of {len(cells):,} cells into {table}"
                                       + ("" if key is None else f" (shard {key})"), plans[key], deadline)
                         for key, cells in batches.items()}
        #: Destinations whose batch was answered.
        self.acked: set[Hashable] = set()
        #: ``{key: exception}`` of the destinations that failed for good.
        self.errors: dict[Hashable, BaseException] = {}
        #: ``{key: moves to another host}``.
        self.failovers: dict[Hashable, int] = {}

    def run(self) -> None:
        """Send every batch, round after round, until each is acknowledged or failed for good.

        :raises BaseException: an interrupt; :attr:`acked` holds what was answered before it.
        """
        drive(self.run_steps())

    def run_steps(self) -> Steps[None]:
        """:meth:`run` as a generator of its waits (:mod:`htcluster._policy.steps`), for every I/O flavour
        (``htcluster._aio`` drives it on the event loop; a cancellation acts as an interrupt)."""
        pending = list(self.batches)
        while pending:
            pending = yield from self._round(pending)

    def _round(self, keys: list[Hashable]) -> Steps[list[Hashable]]:
        """Send the batches of ``keys`` once, at once; return the keys to send again (elsewhere)."""
        router = self.router
        hosts: dict[str, list[Hashable]] = {}
        for key in keys:
            try:
                host = yield from self.failover[key].next_host_steps()
            except (NoHostAvailable, DeadlineExceeded) as exc:
                self.errors[key] = exc
                continue
            hosts.setdefault(host, []).append(key)
        attempts: dict[str, Attempt] = {}
        for host, group in hosts.items():
            cells = self.batches[group[0]] if len(group) == 1 else \
                [cell for key in group for cell in self.batches[key]]
            args: tuple[Any, ...] = (self.table, cells)
            attempts[host] = Attempt(router.pools[host], "set_cells", args, self.namespace, self.deadline,
                                     router.health, host)

        def judge(attempt: Attempt) -> None:  # as each answer arrives: an interrupt later keeps it
            if attempt.error is None:
                self.acked.update(hosts[attempt.host])

        yield from run_all_steps(list(attempts.values()), judge)
        again: list[Hashable] = []
        for host, attempt in attempts.items():
            error = attempt.error
            if error is None:
                continue
            for key in hosts[host]:
                if not isinstance(error, BrokerUnavailable):
                    self.errors[key] = error  # an answer, a deadline, a bad argument: final
                    continue
                try:
                    self.failover[key].failed(host, error)
                except (NoHostAvailable, WriteOutcomeUnknown) as exc:
                    self.errors[key] = exc
                    continue
                self.failovers[key] = self.failovers.get(key, 0) + 1
                again.append(key)
        return again
