"""htcluster.testing: the FaultProxy against a plain echo server, and the plugin fixtures against a broker."""
from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Iterator

import pytest
from thrift.transport.TTransport import TTransportException

from htcluster.errors import ConfigError
from htcluster.testing import FaultProxy, LocalBroker, LocalCluster, free_port


@pytest.fixture(scope="module")
def echo_server() -> Iterator[str]:
    """A TCP server on loopback that sends every chunk back; ``close`` closes, ``reset`` resets.

    Yields its ``'host:port'``.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            try:
                while (data := conn.recv(65536)) and data not in (b"close", b"reset"):
                    conn.sendall(data)
                if data == b"reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield "127.0.0.1:%d" % listener.getsockname()[1]
    stop.set()
    thread.join(5)
    listener.close()


def connect(proxy: FaultProxy, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection((proxy.host, proxy.port), timeout=timeout)


def roundtrip(sock: socket.socket, payload: bytes = b"ping") -> bytes:
    sock.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def assert_closed_by_peer(sock: socket.socket) -> None:
    """The peer closed ``sock``: reading gives end-of-file or a reset, never data."""
    try:
        sock.sendall(b"x")
        data = sock.recv(10)
    except (ConnectionResetError, BrokenPipeError):
        return
    assert data == b""


def test_forwards_both_ways(fault_proxy_factory, echo_server):
    proxy = fault_proxy_factory(echo_server)
    with connect(proxy) as sock:
        assert roundtrip(sock) == b"ping"
        big = bytes(range(256)) * 4096  # 1 MiB, many chunks
        assert roundtrip(sock, big) == big
        assert proxy.connections == 1
    assert "FaultProxy" in repr(proxy)


def test_latency_is_added_per_direction(fault_proxy_factory, echo_server):
    proxy = fault_proxy_factory(echo_server, latency=0.5)
    with connect(proxy) as sock:
        start = time.monotonic()
        assert roundtrip(sock) == b"ping"
        assert time.monotonic() - start >= 1.0
        proxy.latency = 0.0
        start = time.monotonic()
        roundtrip(sock)
        assert time.monotonic() - start < 1.0  # no added latency: far below 2 x 0.5 s, even on a busy machine


def test_reset_gives_the_client_a_reset(fault_proxy_factory, echo_server):
    proxy = fault_proxy_factory(echo_server)
    with connect(proxy) as sock:
        assert roundtrip(sock) == b"ping"
        proxy.reset()
        with pytest.raises(ConnectionResetError):
            sock.sendall(b"x")
            sock.recv(10)
    with connect(proxy) as sock:  # new connections still work
        assert roundtrip(sock) == b"ping"


def test_drop_gives_the_client_end_of_file(fault_proxy_factory, echo_server):
    proxy = fault_proxy_factory(echo_server)
    with connect(proxy) as sock:
        assert roundtrip(sock) == b"ping"
        proxy.drop()
        assert sock.recv(10) == b""
        assert_closed_by_peer(sock)


@pytest.mark.parametrize("how", [b"close", b"reset"])
def test_the_target_closing_reaches_the_client_at_once(fault_proxy_factory, echo_server, how):
    proxy = fault_proxy_factory(echo_server)
    with connect(proxy, timeout=2.0) as sock:
        assert roundtrip(sock) == b"ping"
        sock.sendall(how)
        try:
            assert sock.recv(10) == b""  # end-of-file or reset, not a 2 s timeout
        except ConnectionResetError:
            pass


def test_blackhole_swallows_traffic_until_lifted(fault_proxy_factory, echo_server):
    proxy = fault_proxy_factory(echo_server)
    proxy.blackhole()
    with connect(proxy, timeout=0.3) as sock:
        sock.sendall(b"lost")
        with pytest.raises(socket.timeout):
            sock.recv(10)
        proxy.blackhole(False)
        sock.settimeout(5)
        assert roundtrip(sock) == b"ping"


def test_connections_beyond_the_bound_are_closed(fault_proxy_factory, echo_server):
    proxy = fault_proxy_factory(echo_server, max_connections=1)
    with connect(proxy) as first:
        assert roundtrip(first) == b"ping"
        try:
            with connect(proxy) as second:
                assert_closed_by_peer(second)
        except ConnectionResetError:
            pass  # the reset may already arrive while the connection completes
        assert roundtrip(first) == b"ping"


def test_unreachable_target_resets_the_client(fault_proxy_factory):
    proxy = fault_proxy_factory(f"127.0.0.1:{free_port()}")
    try:
        sock = connect(proxy)
    except ConnectionResetError:
        return  # the reset may already arrive while the connection completes
    with sock:
        assert_closed_by_peer(sock)


def test_stops_by_itself(echo_server):
    proxy = FaultProxy(echo_server, lifetime=0.3)
    with connect(proxy) as sock:
        assert roundtrip(sock) == b"ping"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection((proxy.host, proxy.port), timeout=1).close()
        except OSError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the proxy still accepts connections after its lifetime")
    proxy.close()  # idempotent


def test_plugin_fixtures_reach_a_broker(broker_address, raw_client_factory, fault_proxy_factory):
    client = raw_client_factory(broker_address)
    assert client.status().code == 0
    proxy = fault_proxy_factory(broker_address, latency=0.01)
    assert raw_client_factory(proxy.address).status().code == 0


def test_local_cluster_members_can_be_stopped_killed_paused_and_restarted(local_cluster_factory, raw_client_factory):
    cluster = local_cluster_factory(2, shared_data=False)
    assert len(cluster) == 2 and isinstance(cluster[0], LocalBroker) and cluster[0].running
    assert cluster[0].data != cluster[1].data and "separate data" in repr(cluster)
    first, second = cluster.hosts
    assert first != second

    def refused(address: str) -> bool:
        host, port = address.rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
        except ConnectionRefusedError:
            return True
        return False

    cluster.stop(0)
    assert refused(first) and not cluster[0].running and "stopped" in repr(cluster[0])
    cluster.start(0)
    assert raw_client_factory(first).status().code == 0 and cluster.hosts == [first, second]  # same port
    cluster.pause(1)
    hung = raw_client_factory(second, timeout=0.3)
    with pytest.raises(TTransportException, match="timeout"):
        hung.status()
    cluster.resume(1)
    assert raw_client_factory(second).status().code == 0
    cluster.kill(1)
    assert refused(second)
    cluster.restart(1)
    assert raw_client_factory(second).status().code == 0


def test_local_cluster_needs_a_broker():
    with pytest.raises(ConfigError, match="at least one broker"):
        LocalCluster(0)
