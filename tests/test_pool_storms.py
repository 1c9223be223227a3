"""Connection storms and idle drops (issue 18, item 5): ``max_connecting``, pool generations.

Real brokers on loopback.  Connects are made slow by :class:`SlowTlsFront`,
a TLS terminator in front of a plaintext broker that waits before each
handshake and counts the handshakes in progress: an accept counter on the
server side, independent of the pool's own bookkeeping.
"""
from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
import trustme

from htcluster import Pool, tls_context
from htcluster.errors import BrokerUnavailable, ConfigError, PoolTimeout
from htcluster.events import ConnectionClosed, Listeners
from htcluster.testing import LocalBroker

from pooltest import local_port


class SlowTlsFront:
    """A TLS terminator for ``target`` that sleeps ``delay`` seconds before each handshake.

    :ivar peak: the most connections at once in that pause (their clients' connects are under way:
        each waits for the server's hello).
    :ivar accepted: connections accepted so far.
    """

    def __init__(self, target: str, cert: Path, delay: float) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(cert))
        self.delay = delay
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.lock = threading.Lock()
        self.now = self.peak = self.accepted = 0
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def reset_counts(self) -> None:
        with self.lock:
            self.peak, self.accepted = self.now, 0

    def _accept(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with self.lock:
            self.now += 1
            self.accepted += 1
            self.peak = max(self.peak, self.now)
        time.sleep(self.delay)  # the client waits for the server's hello meanwhile: its connect is in progress
        with self.lock:
            self.now -= 1
        try:
            conn.settimeout(10.0)
            tls = self.context.wrap_socket(conn, server_side=True)
        except OSError:
            conn.close()
            return
        try:
            upstream = socket.create_connection(self.target, timeout=10.0)
        except OSError:
            tls.close()
            return
        self._relay(tls, upstream)

    @staticmethod
    def _relay(tls: ssl.SSLSocket, upstream: socket.socket) -> None:
        poller = select.poll()
        poller.register(tls, select.POLLIN)
        poller.register(upstream, select.POLLIN)
        try:
            while True:
                for fd, _ in poller.poll(10000):
                    if fd == tls.fileno():
                        data = tls.recv(65536)
                        while tls.pending():
                            data += tls.recv(tls.pending())
                        if not data:
                            return
                        upstream.sendall(data)
                    else:
                        data = upstream.recv(65536)
                        if not data:
                            return
                        tls.sendall(data)
        except OSError:
            return
        finally:
            tls.close()
            upstream.close()

    def close(self) -> None:
        self.stopped = True
        self.listener.close()


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("storm-tls")
    ca = trustme.CA()
    ca_file, server = folder / "ca.pem", folder / "server.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(server))
    return ca_file, server


def check_consistent(pool: Pool) -> None:
    stats = pool.stats()
    assert stats["opened"] - stats["closed"] == stats["idle"] + stats["in_use"], stats
    assert (stats["in_use"], stats["waiting"], stats["connecting"]) == (0, 0, 0), stats


def hammer(pool: Pool, threads: int, seconds: float) -> list[BaseException]:
    """Call ``status`` from ``threads`` threads for ``seconds``; return the errors other than transport ones."""
    errors: list[BaseException] = []
    end = time.monotonic() + seconds

    def work() -> None:
        while time.monotonic() < end:
            try:
                pool.call("status", timeout=10.0)
            except BrokerUnavailable:
                time.sleep(0.01)
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)
                return

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
    return errors


# ---------------------------------------------------------------- max_connecting

def test_a_storm_of_threads_opens_at_most_max_connecting_at_once(broker_address: str, cert_files) -> None:
    ca, server = cert_files
    front = SlowTlsFront(broker_address, server, delay=0.05)
    try:
        with Pool(front.address, size=16, max_overflow=0, max_connecting=2, ssl_context=tls_context(ca=ca),
                  connect_timeout=10.0) as pool:
            assert hammer(pool, 16, 1.0) == []
            assert front.peak <= 2 and front.accepted >= 2, (front.peak, front.accepted)
            assert 1 <= pool.stats()["connecting_peak"] <= 2
            assert pool.stats()["opened"] == front.accepted
            check_consistent(pool)
    finally:
        front.close()


def test_a_storm_against_a_restarted_broker_keeps_max_connecting(cert_files) -> None:
    ca, server = cert_files
    with LocalBroker() as broker:
        front = SlowTlsFront(broker.address, server, delay=0.03)
        try:
            with Pool(front.address, size=12, max_overflow=0, max_connecting=2, ssl_context=tls_context(ca=ca),
                      connect_timeout=10.0, reconnect_jitter=0.01) as pool:
                assert hammer(pool, 12, 0.6) == []  # warm: 12 connections
                front.reset_counts()
                restarted = threading.Thread(target=broker.restart)
                restarted.start()
                assert hammer(pool, 12, 1.5) == []
                restarted.join(30)
                assert front.accepted >= 1  # every thread reconnected through the front
                assert front.peak <= 2, front.peak
                assert pool.generation >= 1  # the failure started a new generation
                assert pool.call("status", timeout=10.0) is not None
                check_consistent(pool)
        finally:
            front.close()


def test_a_caller_waiting_for_a_connect_permit_times_out_with_a_clear_error(broker_address: str,
                                                                           cert_files) -> None:
    ca, server = cert_files
    front = SlowTlsFront(broker_address, server, delay=1.0)
    try:
        with Pool(front.address, size=4, max_overflow=0, max_connecting=1, ssl_context=tls_context(ca=ca),
                  connect_timeout=10.0) as pool:
            slow = threading.Thread(target=pool.call, args=("status",))
            slow.start()
            while pool.connecting == 0:
                time.sleep(0.005)
            with pytest.raises(PoolTimeout, match="max_connecting 1"):
                pool.acquire(pool_timeout=0.1)
            slow.join(30)
            assert pool.stats()["timeouts"] == 1
            check_consistent(pool)
    finally:
        front.close()


def test_a_returned_connection_goes_to_a_caller_waiting_for_a_permit(broker_address: str, cert_files) -> None:
    ca, server = cert_files
    front = SlowTlsFront(broker_address, server, delay=0.0)
    try:
        with Pool(front.address, size=4, max_overflow=0, max_connecting=1, ssl_context=tls_context(ca=ca),
                  connect_timeout=10.0) as pool:
            held = pool.acquire()  # an open connection, lent out
            port = local_port(held.resource)
            front.delay = 1.5  # the next connect is slow: it holds the only permit
            slow = threading.Thread(target=pool.call, args=("status",))
            slow.start()
            while pool.connecting == 0:
                time.sleep(0.005)
            threading.Timer(0.1, held.release).start()
            with pool.acquire(pool_timeout=5.0) as r:  # served by the connection given back, not by a connect
                assert local_port(r) == port
                assert pool.connecting == 1
            slow.join(30)
            check_consistent(pool)
    finally:
        front.close()


# ---------------------------------------------------------------- generations

def test_a_failure_drops_every_idle_connection_and_those_lent_when_they_return(broker_address: str,
                                                                               fault_proxy_factory) -> None:
    proxy = fault_proxy_factory(broker_address)
    reasons: list[str] = []
    listeners = Listeners()
    listeners.register(lambda e: reasons.append(e.reason) if isinstance(e, ConnectionClosed) else None)
    with Pool(proxy.address, size=4, max_overflow=0, socket_timeout=0.5, listeners=listeners) as pool:
        leases = [pool.acquire() for _ in range(4)]
        lent = leases.pop()
        for lease in leases:
            lease.release()
        assert (pool.idle, pool.generation) == (3, 0)
        proxy.blackhole()  # the idle connections look fine to poll, but nothing gets through
        with pytest.raises(BrokerUnavailable):
            pool.call("status")
        stats = pool.stats()
        assert (stats["generation"], stats["idle"]) == (1, 0), stats  # the 2 other idle ones closed, not lent
        assert reasons.count(f"{proxy.address} failed: BrokerUnavailable") == 2, reasons
        lent.release()  # of the old generation: closed when it comes back
        assert pool.idle == 0 and len(reasons) == 4, reasons
        proxy.blackhole(False)
        assert pool.call("status") is not None
        check_consistent(pool)


def test_after_a_restart_no_stale_connection_is_handed_out() -> None:
    with LocalBroker() as broker:
        with Pool(broker.address, size=4, max_overflow=0) as pool:
            leases = [pool.acquire() for _ in range(4)]
            old = {local_port(lease.resource) for lease in leases}
            for lease in leases:
                lease.release()
            broker.restart()
            for _ in range(8):
                with pool.connection() as r:
                    assert local_port(r) not in old
                    assert r.status() is not None
            check_consistent(pool)


def test_only_a_failure_on_the_current_generation_starts_a_new_one(broker_address: str) -> None:
    with Pool(broker_address, size=2, max_overflow=0) as pool:
        lease = pool.acquire()
        assert pool.clear("test") == 1
        lease.resource.connection.taint()  # an old connection that fails later
        lease.release()
        assert pool.generation == 1
        assert pool.stats()["generation"] == 1 and pool.stats()["connecting"] == 0
        check_consistent(pool)


def test_the_reconnect_pause_holds_no_connect_permit(broker_address: str) -> None:
    from htcluster._pool.pool import Sleep
    from htcluster._policy.steps import drive
    from htcluster.testing import FaultProxy, free_port

    port = free_port()  # nothing listens there yet
    with Pool(f"127.0.0.1:{port}", size=2, max_overflow=0, max_connecting=1, reconnect_jitter=30.0,
              connect_timeout=5.0) as pool:
        with pytest.raises(BrokerUnavailable):
            pool.acquire(pool_timeout=5.0)  # the host fails: the next blocking connects pause first
        proxy = FaultProxy(broker_address, port=port)
        try:
            paused = pool.acquire_steps(time.monotonic() + 60.0)
            step = next(paused)  # a caller in its reconnect pause (the pause itself is not run here)
            assert isinstance(step, Sleep) and 0.0 <= step.seconds <= 30.0
            interrupted = pool.acquire_steps(time.monotonic() + 60.0)
            assert isinstance(next(interrupted), Sleep)
            with pytest.raises(KeyboardInterrupt):  # an interrupt in the pause: nothing to give back
                interrupted.throw(KeyboardInterrupt())
            check_consistent(pool)
            # meanwhile the only connect permit is free: a connect of the loop (a probe, a broadcast)
            # goes ahead; it timed out waiting for the pausing caller's permit before
            other = pool.acquire(pool_timeout=2.0, connect=False)
            assert pool.connecting == 1
            other.release()
            assert pool.connecting == 0
            lease = drive(paused)  # the paused caller goes on: it takes the permit and connects
            assert lease.resource.is_open
            lease.release()
            check_consistent(pool)
        finally:
            proxy.close()


def test_bad_max_connecting_is_a_config_error(broker_address: str) -> None:
    from htcluster.errors import ConfigError

    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="max_connecting"):
            Pool(broker_address, max_connecting=bad)
    with pytest.raises(ConfigError, match="reconnect_jitter"):
        Pool(broker_address, reconnect_jitter=-1)


# ---------------------------------------------------------------- min_size

def wait_until(predicate, seconds: float = 15.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_min_size_is_kept_by_the_maintenance_thread_not_by_calls(broker_address: str) -> None:
    from htcluster._pool.maintenance import maintainer

    with Pool(broker_address, size=4, max_overflow=0, min_size=3) as pool:
        assert wait_until(lambda: pool.idle == 3)  # no call was made: the thread opened them
        assert maintainer.running
        assert pool.stats()["opened"] == 3 and pool.stats()["calls"] == 0
        pool.clear("test")  # e.g. a host failure: the minimum is opened again in the background
        assert wait_until(lambda: pool.idle == 3)
        assert pool.stats()["opened"] == 6
        check_consistent(pool)
    assert pool.idle == 0
    time.sleep(3 * maintainer.interval)
    assert pool.idle == 0  # closed: no longer kept warm
    assert wait_until(lambda: not maintainer.running)  # no pool left to keep: the thread ended


def test_min_size_is_kept_in_a_forked_child(broker_address: str) -> None:
    from pooltest import run_in_child

    with Pool(broker_address, size=2, max_overflow=0, min_size=2) as pool:
        assert wait_until(lambda: pool.idle == 2)
        def ports() -> list[int]:
            leases = [pool.acquire(), pool.acquire()]
            for lease in leases:
                lease.release()
            return sorted(local_port(lease.resource) for lease in leases)

        parent_ports = ports()

        def child() -> dict:
            warmed = wait_until(lambda: pool.idle == 2)
            opened = pool.stats()["opened"]
            return {"warmed": warmed, "ports": ports(), "opened": opened}

        result = run_in_child(child)
        assert result["warmed"] and result["opened"] == 2  # opened by the child's own maintenance thread
        assert set(result["ports"]).isdisjoint(parent_ports)  # its own connections
        assert pool.call("status") is not None  # the parent's are untouched
        check_consistent(pool)


def test_min_size_against_a_down_host_backs_off_and_counts_right() -> None:
    from htcluster.testing import free_port

    with Pool(f"127.0.0.1:{free_port()}", size=2, max_overflow=0, min_size=2, connect_timeout=1.0) as pool:
        time.sleep(1.0)
        stats = pool.stats()
        assert stats["opened"] == 0 and stats["idle"] == 0 and stats["connecting"] == 0
        check_consistent(pool)


def closed_reasons(listeners: Listeners) -> list[str]:
    reasons: list[str] = []
    listeners.register(lambda event: reasons.append(event.reason) if isinstance(event, ConnectionClosed) else None)
    return reasons


def consistent(pool: Pool) -> bool:
    stats = pool.stats()
    return stats["opened"] - stats["closed"] == stats["idle"] + stats["in_use"] and stats["in_use"] == 0


def test_the_maintenance_thread_drops_what_an_idle_timeout_of_the_broker_closed_and_keeps_min_size() -> None:
    listeners = Listeners()
    reasons = closed_reasons(listeners)
    with LocalBroker(extra_args=["--idle-timeout", "1"]) as broker:  # a broker that closes idle connections
        with Pool(broker.address, size=3, max_overflow=0, min_size=2, listeners=listeners) as pool:
            assert wait_until(lambda: pool.idle == 2)
            # after 1 s the broker closes both; the thread finds them readable (end of file),
            # closes them and opens two new ones: the pool never sits on dead connections for long
            assert wait_until(lambda: pool.stats()["closed"] >= 2 and pool.idle == 2, 30.0), pool.stats()
            assert any("the broker closed it" in reason for reason in reasons), reasons
            assert pool.stats()["replaced"] == 0  # none was met by a checkout: gone before
            assert wait_until(lambda: consistent(pool))
            assert pool.call("status") is not None


def test_the_maintenance_thread_drops_connections_a_proxy_reset_and_those_idle_past_max_idle_time(
        broker_address: str) -> None:
    from htcluster.testing import FaultProxy

    listeners = Listeners()
    reasons = closed_reasons(listeners)
    with FaultProxy(broker_address) as proxy:
        with Pool(proxy.address, size=3, max_overflow=0, max_idle_time=600.0, listeners=listeners) as pool:
            leases = [pool.acquire() for _ in range(3)]
            for lease in leases:
                lease.release()
            assert pool.idle == 3 and wait_until(lambda: proxy.connections == 3)  # the proxy holds all three
            proxy.reset()  # every connection gets an RST while idle in the pool
            assert wait_until(lambda: pool.idle == 0, 30.0), pool.stats()  # no min_size: nothing reopened
            assert pool.stats()["closed"] == 3 and pool.stats()["opened"] == 3
            assert wait_until(lambda: consistent(pool))
    reasons.clear()
    with Pool(broker_address, size=3, max_overflow=0, min_size=1, max_idle_time=0.3, listeners=listeners) as pool:
        leases = [pool.acquire() for _ in range(3)]
        for lease in leases:
            lease.release()
        # idle past 0.3 s: closed in the background; min_size keeps one open, opened anew
        assert wait_until(lambda: pool.stats()["closed"] >= 3 and pool.idle >= 1, 30.0), pool.stats()
        assert any("max_idle_time" in reason for reason in reasons), reasons
        assert pool.call("status") is not None
        assert wait_until(lambda: consistent(pool))
    for bad in (0, -1.0, float("nan"), "30", True):
        with pytest.raises(ConfigError, match="max_idle_time"):
            Pool(broker_address, max_idle_time=bad)


def test_bad_min_size_is_a_config_error(broker_address: str) -> None:
    from htcluster.errors import ConfigError

    for bad in (-1, 6, 1.0, True):
        with pytest.raises(ConfigError, match="min_size"):
            Pool(broker_address, size=5, min_size=bad)


# ---------------------------------------------------------------- keepalive

def test_keepalive_is_on_by_default_and_can_be_tuned_or_turned_off(broker_address: str) -> None:
    from htcluster.errors import ConfigError

    def options(r) -> tuple[int, ...]:
        sock = r.connection.sock
        got = [sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)]
        for name in ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT"):
            if hasattr(socket, name):
                got.append(sock.getsockopt(socket.IPPROTO_TCP, getattr(socket, name)))
        return tuple(got)

    with Pool(broker_address, size=1) as pool, pool.connection() as r:
        assert options(r)[0] == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert options(r)[1:] == (60, 10, 3)
    with Pool(broker_address, size=1, keepalive={"idle": 30, "interval": 5, "count": 4}) as pool:
        with pool.connection() as r:
            if hasattr(socket, "TCP_KEEPIDLE"):
                assert options(r) == (1, 30, 5, 4)
    with Pool(broker_address, size=1, keepalive=False) as pool, pool.connection() as r:
        assert options(r)[0] == 0
    for bad in ("yes", {"idel": 3}, {"count": 0}, -5):
        with pytest.raises(ConfigError, match="keepalive"):
            Pool(broker_address, keepalive=bad)


def test_the_options_reach_the_pools_of_routing_classes_and_urls(broker_address: str) -> None:
    from htcluster import Replicas, from_url

    with Replicas([broker_address], max_connecting=3, min_size=1, keepalive=20, size=2) as replicas:
        pool = replicas.pools[broker_address]
        assert (pool.max_connecting, pool.min_size, pool.keepalive.idle) == (3, 1, 20.0)
        assert wait_until(lambda: pool.idle == 1)
        stats = replicas.stats()[broker_address]["pool"]
        assert stats["generation"] == 0 and stats["connecting"] == 0 and stats["connecting_peak"] == 1
    with from_url(f"hypertable://{broker_address}?max_connecting=4&keepalive=false&reconnect_jitter=0") as r:
        pool = r.pools[broker_address]
        assert (pool.max_connecting, pool.keepalive, pool.reconnect_jitter) == (4, None, 0.0)


# ---------------------------------------------------------------- interrupts

def test_an_interrupt_while_waiting_for_a_permit_or_connecting_loses_neither(broker_address: str,
                                                                              cert_files) -> None:
    from test_hard_edges import Interrupt, interrupt_after

    ca, server = cert_files
    front = SlowTlsFront(broker_address, server, delay=0.6)
    try:
        with Pool(front.address, size=4, max_overflow=0, max_connecting=1, ssl_context=tls_context(ca=ca),
                  connect_timeout=10.0, pool_timeout=10.0) as pool:
            slow = threading.Thread(target=pool.call, args=("status",))
            slow.start()
            while pool.connecting == 0:
                time.sleep(0.005)
            with pytest.raises(Interrupt), interrupt_after(0.1):
                pool.acquire()  # waits for the only permit
            assert (pool.waiting, pool.connecting) == (0, 1)
            slow.join(30)
            with pytest.raises(Interrupt), interrupt_after(0.2):
                pool.acquire(fresh=True)  # holds the permit, in the slow handshake
            assert (pool.connecting, pool.in_use) == (0, 0)
            assert pool.call("status") is not None  # the permit and the slot came back
            check_consistent(pool)
    finally:
        front.close()
