"""Retry budget: a ratio of recent calls plus a floor per second; a down cluster fails fast."""
from __future__ import annotations

import math
import socket
import threading

import pytest

from htcluster import RetryBudget
from htcluster import Replicas, Resources
from htcluster.errors import ConfigError, NoHostAvailable
from htcluster.events import BudgetExhausted
from htcluster import Backoff
from htcluster.testing import ManualClock, free_port

FAST = dict(socket_timeout=10.0, connect_timeout=5.0, backoff=Backoff(base=0.5, cap=2.0, jitter=0.0))


def test_the_floor_allows_retries_before_any_call():
    clock = ManualClock()
    budget = RetryBudget(ratio=0.0, floor=0.2, ttl=10.0, clock=clock)  # 2 retries per 10 s
    assert [budget.withdraw() for _ in range(3)] == [True, True, False]
    assert budget.stats()["granted"] == 2 and budget.stats()["refused"] == 1
    clock.advance(10.5)  # the withdrawals expired
    assert budget.withdraw()


def test_deposits_earn_a_ratio_of_retries_for_ttl_seconds():
    clock = ManualClock()
    budget = RetryBudget(ratio=0.25, floor=0.0, ttl=2.0, clock=clock)
    assert not budget.withdraw()
    for _ in range(8):
        budget.deposit()
    assert budget.balance() == pytest.approx(2.0)
    assert [budget.withdraw() for _ in range(3)] == [True, True, False]
    clock.advance(1.0)
    for _ in range(4):
        budget.deposit()
    assert budget.withdraw() and not budget.withdraw()
    clock.advance(1.5)  # the first 8 deposits and 2 withdrawals are older than ttl: 4 deposits, 1 withdrawal left
    stats = budget.stats()
    assert (stats["deposits"], stats["withdrawals"]) == (4, 1) and stats["balance"] == pytest.approx(0.0)


def test_budget_is_thread_safe():
    budget = RetryBudget(ratio=0.5, floor=0.0, ttl=10.0)
    granted = []

    def work() -> None:
        for _ in range(1000):
            budget.deposit()
            granted.append(budget.withdraw())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(granted) == 2000 == budget.stats()["withdrawals"]


@pytest.mark.parametrize("field,value", [("ratio", math.nan), ("ratio", -0.1), ("ratio", True), ("ratio", "1"),
                                         ("floor", math.inf), ("floor", -1), ("ttl", 0.5), ("ttl", 61),
                                         ("ttl", math.nan), ("ttl", False)])
def test_bad_budget_values_are_config_errors(field, value):
    with pytest.raises(ConfigError, match=field):
        RetryBudget(**{field: value})
    with pytest.raises(ConfigError):
        Resources("127.0.0.1:1", retry_budget={field: value})


def test_bad_budget_options_are_config_errors():
    with pytest.raises(ConfigError, match="unknown retry_budget fields"):
        Resources("127.0.0.1:1", retry_budget={"percent": 0.1})
    with pytest.raises(ConfigError, match="retry_budget must be"):
        Resources("127.0.0.1:1", retry_budget=0.2)
    shared = RetryBudget(ratio=0.1)
    assert Resources("127.0.0.1:1", retry_budget=shared).retry_budget is shared


class ClosingServer:
    """A listener that accepts and closes every connection at once, counting them (a broken broker)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


def test_a_down_cluster_fails_fast_once_the_budget_is_spent():
    servers = [ClosingServer() for _ in range(3)]
    clock = ManualClock()  # the backoff never ends: every host stays dead
    events = []
    try:
        with Resources([s.address for s in servers], clock=clock, retry_budget={"ratio": 0.0, "floor": 0.3},
                       **FAST) as rs:
            rs.listeners.register(lambda e: events.append(e) if isinstance(e, BudgetExhausted) else None)
            with pytest.raises(NoHostAvailable) as first:  # 1 host, then 2 failovers: the 3 retries of the floor
                rs.unicast("status")
            assert len(first.value.errors) == 3 and not events
            for _ in range(20):
                with pytest.raises(NoHostAvailable, match="retry budget is spent|no broker could serve"):
                    rs.unicast("status")
            # every host is dead: each later call may only probe the soonest host, and the budget is gone
            total = sum(s.accepted for s in servers)
            assert total <= 3 + 1, total
            assert events and all(isinstance(e, BudgetExhausted) for e in events)
            stats = rs.budget_stats()
            assert stats["exhausted"] >= 20 and stats["retry"]["refused"] >= 20
            assert set(rs.stats()) == {s.address for s in servers}  # the per-host mapping is unchanged
    finally:
        for s in servers:
            s.close()


def test_failover_stops_when_the_budget_is_spent():
    dead = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    with Replicas(dead, retry_budget={"ratio": 0.0, "floor": 0.1}, **FAST) as replicas:  # one retry per 10 s
        with pytest.raises(NoHostAvailable, match="retry budget is spent") as info:
            replicas.call("status")
        assert len(info.value.errors) == 2  # the first host and one failover; the third was not tried
        assert replicas.failovers == 1


def test_refund_gives_the_last_retry_back():
    budget = RetryBudget(ratio=0.0, floor=0.1, ttl=10.0, clock=ManualClock())
    assert budget.withdraw() and not budget.withdraw()
    budget.refund()
    assert budget.withdraw()
    assert budget.stats()["granted"] == 1
