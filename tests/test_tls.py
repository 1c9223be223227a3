"""TLS end to end: stand-in brokers serving TLS, clients through Pool, Replicas and broadcasts, and every
misconfiguration ending in its own TLSError within the connect timeout, the host's health untouched.

Certificates come from ``trustme`` (a CA made in memory, certificates for 127.0.0.1).
"""
from __future__ import annotations

import datetime
import logging
import pickle
import select
import socket
import ssl
import struct
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import trustme
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.transport.TTransport import TMemoryBuffer

from brokertest import stop_gracefully
from htcluster import Pool, Replicas, Resource, Resources, TLSError, from_url, tls_context
from htcluster._policy.classify import NOTHING, verdict
from htcluster._thrift import HqlService
from htcluster.broker import BrokerServer
from htcluster.broker.limits import Limits
from htcluster.broker.tls import server_context
from htcluster.errors import BrokerUnavailable, ConfigError, NoHostAvailable
from htcluster.testing import FaultProxy, LocalBroker, LocalCluster
from htcluster.types import Cell, Key, ScanSpec

#: Seconds a connection (TCP and TLS handshake) may take: what the misconfigurations must end within.
CONNECT = 5.0
FAST = dict(connect_timeout=CONNECT, socket_timeout=30.0)


class Certs:
    """A CA and the PEM files of a TLS test setup, written to one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ca = trustme.CA()
        self.ca_file = self.write("ca.pem", self.ca.cert_pem)
        self.server = self.write_leaf("server.pem", self.ca.issue_cert("127.0.0.1", "localhost"))
        now = datetime.datetime.now(datetime.timezone.utc)
        self.expired = self.write_leaf("expired.pem", self.ca.issue_cert(
            "127.0.0.1", not_before=now - datetime.timedelta(days=30), not_after=now - datetime.timedelta(days=1)))
        self.client = self.write_leaf("client.pem", self.ca.issue_cert("client@example.org"))
        self.other_ca = trustme.CA()
        self.other_ca_file = self.write("other-ca.pem", self.other_ca.cert_pem)
        self.stranger = self.write_leaf("stranger.pem", self.other_ca.issue_cert("client@example.org"))

    def write(self, name: str, blob: trustme.Blob) -> Path:
        path = self.folder / name
        blob.write_to_path(str(path))
        return path

    def write_leaf(self, name: str, leaf: trustme.LeafCert) -> Path:
        return self.write(name, leaf.private_key_and_cert_chain_pem)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_cluster(certs: Certs) -> Iterator[LocalCluster]:
    """Two TLS brokers on one data file (replicas), plus the other brokers of this module (started at once)."""
    with LocalCluster(2, tls_cert=certs.server) as cluster:
        yield cluster
        stop_gracefully(cluster)


@pytest.fixture(scope="module")
def odd_brokers(certs: Certs) -> Iterator[dict[str, LocalBroker]]:
    """A plaintext broker, one with an expired certificate, one requiring client certificates."""
    made = {"plain": LocalBroker(start=False), "expired": LocalBroker(tls_cert=certs.expired, start=False),
            "mtls": LocalBroker(tls_cert=certs.server, tls_client_ca=certs.ca_file, start=False)}
    try:
        for broker in made.values():
            broker.spawn()
        for broker in made.values():
            broker.wait()
        yield made
        stop_gracefully(*made.values())
    finally:
        for broker in made.values():
            broker.close()


@pytest.fixture
def ctx(certs: Certs) -> ssl.SSLContext:
    return tls_context(ca=certs.ca_file)


def cell(row: str, value: bytes) -> Cell:
    return Cell(Key(row, "c", ""), value)


# ---------------------------------------------------------------- end to end


def test_pool_calls_over_tls_and_keeps_the_connection(tls_cluster: LocalCluster, ctx: ssl.SSLContext) -> None:
    pool = Pool(tls_cluster.hosts[0], ssl_context=ctx, **FAST)
    try:
        ns = f"tls_{uuid.uuid4().hex[:10]}"
        pool.call("namespace_create", ns)
        pool.call("hql_query", "CREATE TABLE t (c)", namespace=ns)
        pool.call("set_cells", "t", [cell(f"r{i}", b"x" * (i * 7000)) for i in range(1, 7)], namespace=ns)
        cells = pool.call("get_cells", "t", ScanSpec(), namespace=ns)
        assert [(c.key.row, len(c.value)) for c in cells] == [(f"r{i}", i * 7000) for i in range(1, 7)]
        with pool.connection() as r:
            sock = r.connection.sock
            assert isinstance(sock, ssl.SSLSocket) and sock.version() in ("TLSv1.2", "TLSv1.3")
        assert pool.stats()["opened"] == 1
    finally:
        pool.close()


def test_replicas_write_read_and_broadcast_over_tls(tls_cluster: LocalCluster, ctx: ssl.SSLContext) -> None:
    ns = f"tls_{uuid.uuid4().hex[:10]}"
    replicas = Replicas(tls_cluster.hosts, ssl_context=ctx, namespace=ns, **FAST)
    try:
        answers = replicas.broadcast("status")  # fresh pools: the loop connects and handshakes with both at once
        assert set(answers) == set(tls_cluster.hosts)
        replicas.call("namespace_create", ns)
        replicas.call("hql_query", "CREATE TABLE t (c)")
        replicas.call("set_cells", "t", [cell("a", b"1"), cell("b", b"2")])
        assert [c.value for c in replicas.call("get_cells", "t", ScanSpec())] == [b"1", b"2"]
        everywhere = replicas.broadcast("get_cells", "t", ScanSpec())  # both brokers serve the same data
        assert all(len(cells) == 2 for cells in everywhere.values())
        assert all(not replicas.health.state(h).failures for h in tls_cluster.hosts)
    finally:
        replicas.close()


def test_from_url_with_tls_options(tls_cluster: LocalCluster, certs: Certs) -> None:
    url = f"hypertable://{','.join(tls_cluster.hosts)}?tls_ca={certs.ca_file}&connect_timeout={CONNECT:g}"
    replicas = from_url(url)
    try:
        assert set(replicas.broadcast("status")) == set(tls_cluster.hosts)
    finally:
        replicas.close()


def test_a_broadcast_handshakes_with_every_host_at_once(tls_cluster: LocalCluster, ctx: ssl.SSLContext) -> None:
    """Six TLS hosts 0.15 s away each: connects and handshakes overlap, so the broadcast ends within the deadline
    that one after the other (about six times three round trips, 5 s) could never meet."""
    proxies = [FaultProxy(tls_cluster.hosts[0], latency=0.15) for _ in range(6)]
    resources = Resources([p.address for p in proxies], ssl_context=ctx, **FAST)
    try:
        answers = resources.broadcast("status", timeout=4.0)
        assert len(answers) == 6
    finally:
        resources.close()
        for proxy in proxies:
            proxy.close()


# ---------------------------------------------------------------- the four misconfigurations


def _case(name: str, certs: Certs, tls_cluster: LocalCluster, odd: dict[str, LocalBroker]) -> tuple:
    good = tls_context(ca=certs.ca_file)
    return {"wrong CA": (tls_cluster.hosts[0], tls_context(ca=certs.other_ca_file), "untrusted"),
            "expired certificate": (odd["expired"].address, good, "expired"),
            "plaintext client, TLS broker": (tls_cluster.hosts[0], None, "tls-required"),
            "TLS client, plaintext broker": (odd["plain"].address, good, "not-tls")}[name]


@pytest.mark.parametrize("name", ["wrong CA", "expired certificate", "plaintext client, TLS broker",
                                  "TLS client, plaintext broker"])
def test_each_misconfiguration_is_its_own_tls_error_and_no_host_failure(
        name: str, certs: Certs, tls_cluster: LocalCluster, odd_brokers: dict[str, LocalBroker]) -> None:
    address, context, reason = _case(name, certs, tls_cluster, odd_brokers)
    started = time.monotonic()
    with pytest.raises(TLSError) as caught:
        Resource(address, ssl_context=context, connect_timeout=CONNECT).call("status")
    assert caught.value.reason == reason and caught.value.sent is False and address in str(caught.value)
    assert verdict(caught.value) is NOTHING
    # through the routing layer: the call fails (every host has the same mistake), the host stays live
    replicas = Replicas([address], ssl_context=context, **FAST)
    try:
        with pytest.raises(NoHostAvailable) as failed:
            replicas.call("status")
        assert isinstance(failed.value.errors[address], TLSError)
        assert failed.value.errors[address].reason == reason
        state = replicas.health.state(address)
        assert state.live and not state.failures
        assert replicas.stats()[address]["health"]["failures"] == 0
        with pytest.raises(NoHostAvailable):
            replicas.call("status")  # the same again: still a configuration error, not a dead host
        assert replicas.health.state(address).live
    finally:
        replicas.close()
    assert time.monotonic() - started < 2 * CONNECT + 10.0  # never a hang: bounded by the connect timeout


def test_tls_errors_pickle_with_their_reason() -> None:
    error = TLSError("x", host="h:1", reason="expired")
    again = pickle.loads(pickle.dumps(error))
    assert isinstance(again, BrokerUnavailable) and again.reason == "expired" and again.sent is False


def test_bad_contexts_and_files_are_config_errors(certs: Certs) -> None:
    with pytest.raises(ConfigError, match="ssl.SSLContext"):
        Pool("127.0.0.1:1", ssl_context="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="server-side"):
        Resource("127.0.0.1:1", ssl_context=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), open=False)
    with pytest.raises(ConfigError, match="CA file"):
        tls_context(ca=certs.folder / "missing.pem")
    with pytest.raises(ConfigError, match="needs its certificate"):
        tls_context(key=certs.client)


# ---------------------------------------------------------------- client certificates


def test_client_certificates_required_by_the_broker(certs: Certs, odd_brokers: dict[str, LocalBroker]) -> None:
    address = odd_brokers["mtls"].address
    with Pool(address, ssl_context=tls_context(ca=certs.ca_file, cert=certs.client), **FAST) as pool:
        assert pool.call("status").code == 0
    for context in (tls_context(ca=certs.ca_file), tls_context(ca=certs.ca_file, cert=certs.stranger)):
        replicas = Replicas([address], ssl_context=context, **FAST)
        try:
            with pytest.raises(NoHostAvailable) as failed:
                replicas.call("status")
            error = failed.value.errors[address]
            assert isinstance(error, TLSError) and error.reason == "client-certificate", error
            assert replicas.health.state(address).live
        finally:
            replicas.close()


# ---------------------------------------------------------------- idle pooled connections


def test_idle_tls_connection_is_reused_after_session_tickets(tls_cluster: LocalCluster,
                                                              ctx: ssl.SSLContext) -> None:
    """TLS 1.3 session tickets make an idle connection readable: it is still healthy, and reused."""
    pool = Pool(tls_cluster.hosts[0], ssl_context=ctx, **FAST)
    try:
        lease = pool.acquire()  # connected and handshaken, no call made: the tickets are still to come
        sock = lease.resource.connection.sock
        assert isinstance(sock, ssl.SSLSocket) and sock.version() == "TLSv1.3"
        lease.release()
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        assert poller.poll(10_000), "the broker sent no session ticket"
        assert pool.call("status").code == 0
        assert pool.call("status").code == 0
        stats = pool.stats()
        assert stats["opened"] == 1 and stats["replaced"] == 0 and stats["errors"] == 0
    finally:
        pool.close()


def test_idle_tls_connection_to_a_restarted_broker_is_replaced(certs: Certs, ctx: ssl.SSLContext) -> None:
    with LocalBroker(tls_cert=certs.server) as broker:
        pool = Pool(broker.address, ssl_context=ctx, **FAST)
        try:
            assert pool.call("status").code == 0
            broker.restart()
            assert pool.call("status").code == 0  # the stale TLS connection is found out, not used
            stats = pool.stats()
            assert stats["opened"] == 2 and stats["errors"] == 0
        finally:
            pool.close()
            stop_gracefully(broker)


# ---------------------------------------------------------------- the broker's workers over TLS


def request(method: str, *args: object) -> bytes:
    """Return one framed request of ``method``, as a client would send it."""
    buffer = TMemoryBuffer()
    getattr(HqlService.Client(TBinaryProtocol(buffer)), f"send_{method}")(*args)
    body = buffer.getvalue()
    return struct.pack("!i", len(body)) + body


def read_exactly(sock: ssl.SSLSocket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"the broker closed the connection after {len(data)} of {n} bytes")
        data += chunk
    return data


def status_answer(sock: ssl.SSLSocket) -> int:
    """Read one framed ``status`` answer; return its code."""
    size = struct.unpack("!i", read_exactly(sock, 4))[0]
    client = HqlService.Client(TBinaryProtocol(TMemoryBuffer(read_exactly(sock, size))))
    return client.recv_status().code


@pytest.fixture
def tls_server(certs: Certs) -> Iterator[BrokerServer]:
    """An in-process TLS broker (its log lines and counters can be read), frames limited to 1 MiB."""
    limits = Limits(max_frame_size=1 << 20, frame_timeout=5.0)
    with BrokerServer(port=0, limits=limits, ssl_context=server_context(certs.server)) as server:
        yield server


def tls_socket(server: BrokerServer, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    sock = ctx.wrap_socket(socket.create_connection((server.host, server.port), timeout=10),
                           server_hostname="127.0.0.1")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def test_a_tls_worker_takes_the_next_frames_itself(tls_server: BrokerServer, ctx: ssl.SSLContext) -> None:
    """A worker that answered a call over TLS reads the connection's next small frame through the TLS layer
    (it cannot peek at it) instead of handing the connection back to the loop: one hand-off, not one per call."""
    with tls_socket(tls_server, ctx) as sock:
        sock.sendall(request("status") * 6)  # one TLS record: the next frames wait inside the TLS layer
        assert [status_answer(sock) for _ in range(6)] == [0] * 6
        assert tls_server.dispatched == 1
        for _ in range(20):  # one call after another: the worker waits STICKY seconds for the next one
            sock.sendall(request("status"))
            assert status_answer(sock) == 0
        assert tls_server.dispatched < 20


@pytest.mark.parametrize("cut", [2, 4, 9], ids=["in-header", "after-header", "in-body"])
def test_part_of_a_frame_read_by_a_tls_worker_goes_back_to_the_loop(tls_server: BrokerServer,
                                                                     ctx: ssl.SSLContext, cut: int) -> None:
    """A worker that read part of the next frame and then waited in vain leaves those bytes to the loop."""
    second = request("status")
    with tls_socket(tls_server, ctx) as sock:
        sock.sendall(request("status") + second[:cut])
        assert status_answer(sock) == 0
        time.sleep(0.05)  # past the worker's STICKY wait: the loop has the connection (and the bytes) again
        sock.sendall(second[cut:])
        assert status_answer(sock) == 0
        sock.sendall(request("status"))
        assert status_answer(sock) == 0


def test_a_big_frame_after_a_call_over_tls_meets_the_loops_rules(tls_server: BrokerServer, ctx: ssl.SSLContext,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """A header read by a worker that announces more than max_frame_size closes the connection, as in the loop."""
    caplog.set_level(logging.WARNING, logger="htcluster.broker")
    with tls_socket(tls_server, ctx) as sock:
        sock.sendall(request("status") + struct.pack("!i", (1 << 20) + 1))
        assert status_answer(sock) == 0
        with pytest.raises((EOFError, OSError)):
            read_exactly(sock, 1)
    assert "announced a frame of 1048577 bytes, over the largest accepted" in caplog.text


def test_a_client_leaving_after_a_call_over_tls_is_closed(tls_server: BrokerServer, ctx: ssl.SSLContext,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """The end of the connection read by a worker after a call (half a frame before it) reaches the loop."""
    caplog.set_level(logging.WARNING, logger="htcluster.broker")
    with tls_socket(tls_server, ctx) as sock:
        sock.sendall(request("status") + request("status")[:6])
        socket.socket.shutdown(sock, socket.SHUT_WR)  # the TCP end only (no close_notify): a ragged end of file
        assert status_answer(sock) == 0
        deadline = time.monotonic() + 10
        while tls_server.connections and time.monotonic() < deadline:
            time.sleep(0.01)
        assert tls_server.connections == 0
    assert "truncated frame: 2 of" in caplog.text


# ---------------------------------------------------------------- settings: Flask, the command line


def test_flask_settings_build_the_context(tls_cluster: LocalCluster, certs: Certs,
                                          odd_brokers: dict[str, LocalBroker]) -> None:
    flask = pytest.importorskip("flask")
    from htcluster.flask_ext import Hypertable

    app = flask.Flask("tls")
    app.config.update(HYPERTABLE_HOSTS=tls_cluster.hosts, HYPERTABLE_SSL_CA=str(certs.ca_file),
                      HYPERTABLE_BINDS={"strict": {"hosts": odd_brokers["mtls"].address,
                                                   "ssl_cert": str(certs.client)}})
    ext = Hypertable(app)
    with app.app_context():
        assert set(ext.cluster.broadcast("status")) == set(tls_cluster.hosts)
        assert ext.cluster_for("strict").call("status").code == 0  # the bind inherits the CA, adds its cert
    broken = flask.Flask("tls-broken")
    broken.config.update(HYPERTABLE_HOSTS="127.0.0.1:1", HYPERTABLE_SSL_CA=str(certs.folder / "none.pem"))
    with pytest.raises(ConfigError, match="HYPERTABLE_SSL_CA"):
        Hypertable(broken)


def test_command_line_tls_options(tls_cluster: LocalCluster, certs: Certs) -> None:
    from click.testing import CliRunner

    from htcluster.cli import main

    hosts = ",".join(tls_cluster.hosts)
    done = CliRunner().invoke(main, ["status", "--hosts", hosts, "--tls-ca", str(certs.ca_file)])
    assert done.exit_code == 0, done.output
    refused = CliRunner().invoke(main, ["status", "--hosts", hosts, "--timeout", "5"])
    assert refused.exit_code == 1 and "TLS" in refused.output
