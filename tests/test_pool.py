"""Pool: checkout/checkin, overflow, timeouts, stale and failed connections, fork, threads.

Every test talks to a real local broker; mocks only inject faults (a socket
that raises, an exception inside a ``with pool.connection()`` block).
"""
from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from typing import Iterator

import pytest

from htcluster import codes
from htcluster.errors import BrokerUnavailable, ConfigError, HtclusterError, PoolTimeout
from htcluster import Pool
from htcluster import Resource
from htcluster.testing import LocalBroker, free_port
from htcluster.types import Cell, ClientException, ColumnFamilySpec, Key, Schema, ScanSpec

from pooltest import break_socket, local_port, run_in_child




def counters(pool: Pool) -> dict[str, int]:
    """The connection counters of ``pool.stats()``."""
    return {k: v for k, v in pool.stats().items() if k in ("opened", "closed", "replaced", "idle", "in_use")}


@pytest.fixture
def pool(broker_address: str) -> Iterator[Pool]:
    with Pool(broker_address, size=2, max_overflow=1, pool_timeout=5.0) as p:
        yield p


def test_call_and_connection_reuse_one_warm_connection(pool: Pool, broker_address: str) -> None:
    assert repr(pool) == f"<Pool {broker_address} [0 in use, 0 idle]>"
    assert pool.call("status") is not None
    with pool.connection() as r:
        first = local_port(r)
        assert (pool.in_use, pool.idle) == (1, 0)
        assert repr(pool) == f"<Pool {broker_address} [1 in use, 0 idle]>"
    with pool.connection() as r:
        assert local_port(r) == first
    assert counters(pool) == {"opened": 1, "closed": 0, "replaced": 0, "idle": 1, "in_use": 0}
    assert (pool.size, pool.max_overflow, str(pool.host)) == (2, 1, broker_address)


def test_bad_settings_are_config_errors(broker_address: str) -> None:
    with pytest.raises(ConfigError, match="size"):
        Pool(broker_address, size=-1)
    with pytest.raises(ConfigError, match="at least one"):
        Pool(broker_address, size=0, max_overflow=0)
    with pytest.raises(ConfigError, match="timeout"):
        Pool(broker_address, pool_timeout=-1)
    with pytest.raises(ConfigError, match="max_age"):
        Pool(broker_address, max_age=0)


def test_overflow_is_capped_and_closed_at_checkin(pool: Pool) -> None:
    held = [pool.connection() for _ in range(3)]
    resources = [c.__enter__() for c in held]
    assert pool.in_use == 3 and len({local_port(r) for r in resources}) == 3
    with pytest.raises(PoolTimeout) as excinfo:
        with pool.connection(pool_timeout=0.1):
            pass
    assert not isinstance(excinfo.value, BrokerUnavailable) and excinfo.value.host == str(pool.host)
    assert "size 2 + max_overflow 1" in str(excinfo.value)
    for c in held:
        c.__exit__(None, None, None)
    assert (pool.in_use, pool.idle) == (0, 2)
    assert [r.is_open for r in resources].count(False) == 1
    assert pool.stats()["opened"] - pool.stats()["closed"] == 2


def test_pool_timeout_waits_then_hands_over_a_freed_connection(broker_address: str) -> None:
    with Pool(broker_address, size=1, max_overflow=0, pool_timeout=0.5) as p:
        with p.connection():
            start = time.monotonic()
            with pytest.raises(PoolTimeout, match="within 0.5 s"):
                p.call("status")
            waited = time.monotonic() - start
            assert 0.45 <= waited < 5.0
            got = []
            waiter = threading.Thread(target=lambda: got.append(p.call("status", )))
            waiter.start()
            time.sleep(0.1)
        waiter.join(5)
        assert got and p.stats()["opened"] == 1


def test_a_connection_that_failed_in_transport_is_discarded(pool: Pool) -> None:
    with pool.connection() as r:
        first = local_port(r)
    with pytest.raises(BrokerUnavailable):
        with pool.connection() as r:
            with break_socket(r, "read"):
                r.status()
    assert r.failed and not r.is_open
    assert counters(pool) == {"opened": 1, "closed": 1, "replaced": 0, "idle": 0, "in_use": 0}
    with pool.connection() as r:
        assert local_port(r) != first and r.status()


def test_other_exceptions_keep_a_clean_connection(pool: Pool) -> None:
    class Stop(BaseException):
        pass

    for error in (RuntimeError, Stop, GeneratorExit):
        with pytest.raises(error):
            with pool.connection() as r:
                r.status()
                raise error("injected")
    with pytest.raises(ClientException):
        pool.call("namespace_open", "no_such_namespace")
    assert counters(pool) == {"opened": 1, "closed": 0, "replaced": 0, "idle": 1, "in_use": 0}


def test_an_interrupted_call_is_not_reused(pool: Pool) -> None:
    class Interrupt(BaseException):
        pass

    with pytest.raises(Interrupt):
        with pool.connection() as r:
            with break_socket(r, "read", Interrupt()):
                r.status()  # the request left, the answer was never read
    assert not r.reusable and not r.is_open
    assert (pool.idle, pool.stats()["closed"]) == (0, 1)


def test_call_retries_once_when_a_reused_connection_fails_before_sending(pool: Pool) -> None:
    with pool.connection() as r:
        first = local_port(r)
    with break_socket(r, "write"):
        assert pool.call("status") is not None  # r failed, the retry used a new connection
    assert r.failed
    with pool.connection() as r2:
        assert local_port(r2) != first
    assert pool.stats()["opened"] == 2 and pool.stats()["closed"] == 1


def test_call_does_not_retry_after_the_request_was_sent(pool: Pool) -> None:
    with pool.connection() as r:
        pass
    with break_socket(r, "read"):
        with pytest.raises(BrokerUnavailable) as excinfo:
            pool.call("status")
    assert excinfo.value.sent is True and pool.stats()["opened"] == 1


def test_stale_connections_after_a_restart_are_replaced(caplog) -> None:
    with LocalBroker() as own_broker, Pool(own_broker.address, size=3, max_overflow=0) as p:
        held = [p.connection() for _ in range(3)]
        for c in held:
            c.__enter__().status()
        for c in held:
            c.__exit__(None, None, None)
        assert p.idle == 3
        own_broker.restart()
        with caplog.at_level(logging.INFO, logger="htcluster"):
            assert p.call("status") is not None  # one stale connection replaced
            held = [p.connection() for _ in range(3)]
            for c in held:  # the new one, then the two other stale ones, replaced
                c.__enter__().status()
            for c in held:
                c.__exit__(None, None, None)
        stats = p.stats()
        assert stats["replaced"] == 3 and stats["opened"] - stats["closed"] == p.idle
        assert "replacing a connection" in caplog.text and "stale" in caplog.text


def test_lifo_hands_out_the_most_recently_returned_connection(pool: Pool) -> None:
    a, b = pool.connection(), pool.connection()
    ra, rb = a.__enter__(), b.__enter__()
    b.__exit__(None, None, None)
    a.__exit__(None, None, None)  # returned last: on top
    with pool.connection() as r:
        assert r is ra
        with pool.connection() as r2:
            assert r2 is rb


def test_idle_ping_replaces_a_connection_that_went_silent(broker_address: str, fault_proxy_factory) -> None:
    proxy = fault_proxy_factory(broker_address)
    for idle_ping in (None, 0.0):
        with Pool(proxy.address, size=1, idle_ping=idle_ping, connect_timeout=0.3, socket_timeout=30.0) as p:
            with p.connection() as first:
                first.status()
            proxy.blackhole()  # the socket stays open, nothing gets through: the free peek sees no problem
            try:
                start = time.monotonic()
                with p.connection() as r:
                    waited = time.monotonic() - start
                    proxy.blackhole(False)
                    assert r.status() is not None
            finally:
                proxy.blackhole(False)
            if idle_ping is None:  # handed out as it is (a call on it would wait for socket_timeout)
                assert r is first and p.stats()["replaced"] == 0
            else:  # the ping got no answer within connect_timeout: replaced, not the 30 s socket timeout
                assert r is not first and first.failed and not first.is_open
                assert p.stats()["replaced"] == 1 and 0.25 <= waited < 5.0


def test_max_age_retires_old_connections_at_checkin_and_checkout(broker_address: str) -> None:
    with Pool(broker_address, size=1, max_age=0.2) as p:
        with p.connection() as r:
            time.sleep(0.3)
        assert not r.is_open and p.idle == 0 and p.stats()["closed"] == 1
        with p.connection() as r:
            pass
        assert p.idle == 1
        time.sleep(0.3)  # ages while idle
        with p.connection() as r2:
            assert r2 is not r and r2.status() is not None
        assert not r.is_open and p.stats()["replaced"] == 1


def test_close_closes_idle_now_and_in_use_at_checkin(pool: Pool) -> None:
    a, b = pool.connection(), pool.connection()
    ra, rb = a.__enter__(), b.__enter__()
    a.__exit__(None, None, None)
    pool.close()
    assert not ra.is_open and rb.is_open and (pool.in_use, pool.idle) == (1, 0)
    b.__exit__(None, None, None)
    assert not rb.is_open and pool.idle == 0
    assert pool.call("status") is not None and pool.idle == 1  # still usable


def test_fork_child_opens_its_own_connection(pool: Pool) -> None:
    with pool.connection() as r:
        parent_port = local_port(r)

    def child() -> dict:
        with pool.connection() as r:
            result = {"port": local_port(r), "status": r.status() is not None}
        return {**result, "stats": pool.stats()}

    result = run_in_child(child)
    assert result["status"] and result["port"] != parent_port
    assert result["stats"]["opened"] == 1 and result["stats"]["idle"] == 1
    with pool.connection() as r:
        assert local_port(r) == parent_port and r.status() is not None
    assert pool.stats()["opened"] == 1


def test_no_slot_leaks_under_threads_and_injected_failures(broker_address: str) -> None:
    threads, calls, size, overflow = 16, 500, 4, 4
    injected = {"transport": 0}
    lock = threading.Lock()

    class Interrupt(BaseException):
        pass

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(calls):
            roll = rng.random()
            try:
                with p.connection() as r:
                    if roll < 0.03:
                        raise RuntimeError("injected")
                    if roll < 0.04:
                        raise Interrupt()
                    if roll < 0.07:
                        with lock:
                            injected["transport"] += 1
                        with break_socket(r, "write" if roll < 0.055 else "read"):
                            r.status()
                    r.status()
            except (RuntimeError, Interrupt, BrokerUnavailable):
                pass

    with Pool(broker_address, size=size, max_overflow=overflow, pool_timeout=30.0) as p:
        pool_threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for t in pool_threads:
            t.start()
        for t in pool_threads:
            t.join(120)
        assert not any(t.is_alive() for t in pool_threads)
        stats = p.stats()
        assert stats["in_use"] == 0 and stats["idle"] <= size
        assert stats["opened"] - stats["closed"] == stats["idle"]
        assert stats["closed"] >= injected["transport"] > 0
        held = [p.connection(pool_timeout=5) for _ in range(size + overflow)]  # every slot came back
        for c in held:
            c.__enter__().status()
        with pytest.raises(PoolTimeout):
            p.connection(pool_timeout=0.1).__enter__()
        for c in held:
            c.__exit__(None, None, None)


# ---------------------------------------------------------------- scan

@pytest.fixture(scope="module")
def namespace(broker_address: str) -> str:
    """A namespace with table ``cells``: rows ``r00`` .. ``r19``, one cell each."""
    name = f"test_pool_{uuid.uuid4().hex[:8]}"
    with Resource(broker_address) as r:
        r.namespace_create(name)
        ns = r.mns[name]
        r.table_create(ns, "cells", Schema(column_families={"c": ColumnFamilySpec(name="c")}))
        r.set_cells(ns, "cells", [Cell(Key(row=f"r{i:02d}", column_family="c"), b"x") for i in range(20)])
    return name


def test_scan_yields_cells_and_returns_the_connection(pool: Pool, namespace: str) -> None:
    rows = [c.key.row for c in pool.scan("cells", namespace=namespace)]
    assert rows == [f"r{i:02d}" for i in range(20)] and (pool.in_use, pool.idle) == (0, 1)
    spec = ScanSpec(row_limit=3)
    assert sum(len(b) for b in pool.scan("cells", spec, namespace=namespace, batch=True)) == 3


def test_scan_stopped_early_returns_the_connection(pool: Pool, namespace: str) -> None:
    scan = pool.scan("cells", namespace=namespace)
    assert next(scan).key.row == "r00" and pool.in_use == 1
    scan.close()
    assert (pool.in_use, pool.idle) == (0, 1)
    for _cell in pool.scan("cells", namespace=namespace):
        break
    del _cell
    assert (pool.in_use, pool.idle) == (0, 1) and pool.stats()["opened"] == 1


def test_scan_of_a_missing_table_raises_and_keeps_the_connection(pool: Pool, namespace: str) -> None:
    with pytest.raises(ClientException) as excinfo:
        list(pool.scan("no_such_table", namespace=namespace))
    assert excinfo.value.code == codes.TABLE_NOT_FOUND
    assert (pool.in_use, pool.idle) == (0, 1)


def test_unreachable_host_is_broker_unavailable_and_frees_the_slot() -> None:
    with Pool(f"127.0.0.1:{free_port()}", size=1, max_overflow=0, pool_timeout=1.0) as p:
        for _ in range(3):  # the slot comes back each time, so no PoolTimeout
            with pytest.raises(BrokerUnavailable) as excinfo:
                p.call("status")
            assert excinfo.value.sent is False and isinstance(excinfo.value, HtclusterError)
        assert counters(p) == {"opened": 0, "closed": 0, "replaced": 0, "idle": 0, "in_use": 0}
