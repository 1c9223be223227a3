"""Resource: one broker connection over a real socket to a local stand-in broker.

Fault injection (a socket that raises) is the only use of mocks here.
"""
from __future__ import annotations

import socket
import threading
import time
import uuid
from typing import Iterator

import pytest
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import TTransportException

from brokertest import stop_gracefully
from htcluster import codes
from htcluster._thrift import ClientService, HqlService
from htcluster.errors import BrokerUnavailable, ConfigError
from htcluster import Resource
from htcluster._io.resource import scan_cells
from htcluster.testing import LocalBroker, free_port
from htcluster.types import Cell, ClientException, ColumnFamilySpec, Key, Schema, ScanSpec, Status

from pooltest import break_socket, local_port, run_in_child


class CountingResource(Resource):
    """A Resource that counts the namespace and scanner calls it makes."""

    def __init__(self, *args, **kwargs) -> None:
        self.calls: dict[str, list] = {"namespace_open": [], "namespace_close": [], "scanner_close": []}
        super().__init__(*args, **kwargs)

    def namespace_open(self, ns):
        self.calls["namespace_open"].append(ns)
        return super().namespace_open(ns)

    def namespace_close(self, ns):
        self.calls["namespace_close"].append(ns)
        return super().namespace_close(ns)

    def scanner_close(self, scanner):
        self.calls["scanner_close"].append(scanner)
        return super().scanner_close(scanner)


@pytest.fixture(scope="module")
def namespace(broker_address: str) -> str:
    name = f"test_resource_{uuid.uuid4().hex[:8]}"
    with Resource(broker_address) as r:
        r.namespace_create(name)
    return name


@pytest.fixture(scope="module")
def own_broker() -> Iterator[LocalBroker]:
    """A broker of this module alone, for tests that pause or kill it."""
    with LocalBroker() as broker:
        yield broker
        stop_gracefully(broker)


@pytest.fixture
def broker(own_broker: LocalBroker) -> Iterator[LocalBroker]:
    yield own_broker
    own_broker.resume()
    own_broker.start()  # a no-op unless the test killed it


def test_resource_is_the_generated_client(broker_address: str) -> None:
    with Resource(broker_address) as r:
        assert isinstance(r, HqlService.Client)
        assert isinstance(r.status(), Status)
        assert isinstance(r.call("status"), Status)
        assert str(r.host) == broker_address


def test_open_and_close_are_idempotent(broker_address: str) -> None:
    r = Resource(broker_address, open=False)
    assert not r.is_open and "closed" in repr(r)
    r.open()
    handle = r.connection.sock
    assert r.open() is r and r.connection.sock is handle
    assert r.is_open and not r.failed and broker_address in repr(r) and "open" in repr(r)
    r.close()
    r.close()
    assert not r.is_open
    with pytest.raises(BrokerUnavailable, match="closed") as excinfo:
        r.status()
    assert excinfo.value.sent is False
    with r:  # reopens
        r.status()
    assert not r.is_open


def test_timeouts_and_hosts_are_checked() -> None:
    with pytest.raises(ConfigError, match="timeout"):
        Resource("localhost", socket_timeout=0, open=False)
    with pytest.raises(ConfigError, match="connect_timeout"):
        Resource("localhost", connect_timeout="5", open=False)
    with pytest.raises(ConfigError, match="port"):
        Resource("localhost:http", open=False)
    assert Resource(open=False).host.port == 15867


def test_call_puts_the_namespace_id_first(broker_address: str, namespace: str) -> None:
    with Resource(broker_address) as r:
        assert r.call("get_tables", namespace=namespace) == r.get_tables(r.mns[namespace])
        with pytest.raises(AttributeError, match="did you mean status"):
            r.call("statsu")
        with pytest.raises(AttributeError, match="not a ThriftBroker method"):
            r.call("close")


def test_mns_opens_each_namespace_once_per_connection(broker_address: str, namespace: str) -> None:
    with CountingResource(broker_address) as r, CountingResource(broker_address) as other:
        first = r.mns[namespace]
        assert r.mns[namespace] == first and namespace in r.mns
        assert r.calls["namespace_open"] == [namespace]
        other.mns[namespace]
        assert other.calls["namespace_open"] == [namespace]  # its own id, on its own connection
        assert f"namespaces ['{namespace}']" in repr(r)


def test_mns_close_namespace_closes_and_forgets(broker_address: str, namespace: str) -> None:
    with CountingResource(broker_address) as r:
        first = r.mns[namespace]
        r.mns.close_namespace(namespace)
        assert namespace not in r.mns and r.calls["namespace_close"] == [first]
        with pytest.raises(ClientException):
            r.get_tables(first)  # the broker forgot the id too
        second = r.mns[namespace]
        assert r.calls["namespace_open"] == [namespace, namespace]
        del r.mns[namespace]
        assert r.calls["namespace_close"] == [first, second] and len(r.mns) == 0
        del r.mns[namespace]  # a name not open: a no-op, as Flask-Hypertable's mns
        r.mns.close_namespace(namespace)  # lenient, as Flask-Hypertable's mns was
        assert r.calls["namespace_close"] == [first, second]
        third = r.mns.open_namespace(namespace)  # Flask-Hypertable's names, kept as aliases
        assert r.is_active and r.mns[namespace] == third
        r.mns.close()
        assert r.calls["namespace_close"] == [first, second, third] and len(r.mns) == 0


def test_closing_the_resource_closes_its_namespaces(broker_address: str, namespace: str) -> None:
    r = CountingResource(broker_address)
    ns = r.mns[namespace]
    r.close()
    assert r.calls["namespace_close"] == [ns] and len(r.mns) == 0
    r.close()
    assert r.calls["namespace_close"] == [ns]


def test_client_exception_passes_through_with_its_code(broker_address: str) -> None:
    with Resource(broker_address) as r:
        with pytest.raises(ClientException) as excinfo:
            r.mns["no_such_namespace_here"]
        assert excinfo.value.code == codes.NAMESPACE_DOES_NOT_EXIST
        assert not isinstance(excinfo.value, BrokerUnavailable)
        assert r.reusable and "no_such_namespace_here" not in r.mns
        r.status()


def test_application_exception_passes_through(broker_address: str) -> None:
    with Resource(broker_address) as r:
        codec = r.connection.codec
        codec.oprot.writeMessageBegin("no_such_method", TMessageType.CALL, 0)
        ClientService.status_args().write(codec.oprot)
        codec.oprot.writeMessageEnd()
        body = r.connection.exchange(codec.take_frame())  # the frame goes out whole, the reply comes in
        with pytest.raises(TApplicationException) as excinfo:
            codec.decode(body)
        assert excinfo.value.type == TApplicationException.UNKNOWN_METHOD
        assert r.reusable
        r.status()


def test_refused_connection_is_broker_unavailable_not_sent() -> None:
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(BrokerUnavailable) as excinfo:
        Resource(address)
    exc = excinfo.value
    assert isinstance(exc, TTransportException) and exc.type == TTransportException.NOT_OPEN
    assert exc.sent is False and exc.host == address and address in str(exc)
    r = Resource(address, open=False)
    with pytest.raises(BrokerUnavailable):
        r.open()
    assert r.failed and "failed" in repr(r)


def test_connect_timeout_is_in_seconds_and_not_sent() -> None:
    with socket.socket() as listener:  # a listener whose backlog is full: new SYNs go unanswered
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = "127.0.0.1:%d" % listener.getsockname()[1]
        filler = []
        try:
            for _ in range(8):
                sock = socket.socket()
                filler.append(sock)
                sock.settimeout(0.2)
                sock.connect(listener.getsockname())
        except OSError:
            pass  # the backlog is full
        else:  # pragma: no cover - a kernel that never fills the backlog
            pytest.skip("the loopback backlog never filled")
        start = time.monotonic()
        with pytest.raises(BrokerUnavailable, match=r"timed out after 0\.3 s") as excinfo:
            Resource(address, socket_timeout=30.0, connect_timeout=0.3)
        waited = time.monotonic() - start
        for sock in filler:
            sock.close()
    assert excinfo.value.sent is False and excinfo.value.type == TTransportException.TIMED_OUT
    assert 0.25 <= waited < 5.0  # connect_timeout, not the 30 s call timeout


def test_failure_while_sending_is_not_sent(broker_address: str) -> None:
    r = Resource(broker_address)
    with break_socket(r, "write", BrokenPipeError(32, "Broken pipe")):
        with pytest.raises(BrokerUnavailable, match="sending") as excinfo:
            r.status()
    assert excinfo.value.sent is False and r.failed and not r.is_open
    r.close()  # a failed connection closes quietly
    r.open()
    assert not r.failed and r.status()


def test_broker_killed_mid_call_is_broker_unavailable_sent(broker: LocalBroker) -> None:
    r = Resource(broker.address, socket_timeout=30.0)
    r.status()
    broker.pause()  # (waits until stopped) the request will be written, the answer never comes ...
    killer = threading.Timer(0.3, broker.kill)  # ... and then the broker dies
    killer.start()
    try:
        with pytest.raises(BrokerUnavailable) as excinfo:
            r.status()
    finally:
        killer.join()
    exc = excinfo.value
    assert isinstance(exc, TTransportException)
    assert exc.sent is True and exc.host == broker.address and broker.address in str(exc)
    assert r.failed and not r.reusable
    with pytest.raises(BrokerUnavailable) as again:  # no reuse of a failed connection
        r.status()
    assert again.value.sent is False
    broker.start()
    assert r.open().status()


def test_read_timeout_is_sent_and_names_the_limit(broker: LocalBroker) -> None:
    r = Resource(broker.address, socket_timeout=0.3)
    r.status()
    broker.pause()
    with pytest.raises(BrokerUnavailable, match="0.3 s") as excinfo:
        r.status()
    assert excinfo.value.sent is True and excinfo.value.type == TTransportException.TIMED_OUT
    assert r.failed
    broker.resume()
    assert r.open().status()


def test_is_stale_sees_a_restarted_broker(broker: LocalBroker) -> None:
    r = Resource(broker.address)
    r.status()
    assert not r.is_stale()
    broker.restart()
    assert r.is_stale()
    assert r.open().status()


def test_ping_answers_fast_or_fails_within_its_timeout(broker_address: str, fault_proxy_factory) -> None:
    proxy = fault_proxy_factory(broker_address)
    r = Resource(proxy.address, socket_timeout=30.0)
    assert r.ping() and r.reusable
    proxy.blackhole()
    start = time.monotonic()
    assert r.ping(0.3) is False
    assert time.monotonic() - start < 5.0 and r.failed and not r.is_open
    proxy.blackhole(False)
    assert r.open().ping()


def test_a_forked_child_never_uses_its_parents_socket(broker_address: str, namespace: str) -> None:
    r = Resource(broker_address)
    ns = r.mns[namespace]
    parent_port = local_port(r)

    def child() -> dict:
        assert not r.reusable and r.is_stale()
        with pytest.raises(BrokerUnavailable) as excinfo:
            r.status()
        r.open()  # a connection of its own
        result = {"error": str(excinfo.value), "sent": excinfo.value.sent, "port": local_port(r),
                  "status": r.status() is not None and r.get_tables(r.mns[namespace]) is not None}
        r.close()
        return result

    result = run_in_child(child)
    assert "belongs to process" in result["error"] and "fork" in result["error"] and result["sent"] is False
    assert result["status"] and result["port"] != parent_port
    assert r.reusable and r.mns[namespace] == ns  # the parent's stream was never touched
    assert r.get_tables(ns) is not None and r.status() is not None
    r.close()


# ---------------------------------------------------------------- scan_cells

@pytest.fixture(scope="module")
def table(broker_address: str, namespace: str) -> str:
    """A table of 30 rows, ``r00`` .. ``r29``, one cell each in column ``c``."""
    with Resource(broker_address) as r:
        ns = r.mns[namespace]
        r.table_create(ns, "cells", Schema(column_families={"c": ColumnFamilySpec(name="c")}))
        r.set_cells(ns, "cells", [Cell(Key(row=f"r{i:02d}", column_family="c"), b"v%d" % i)
                                  for i in range(30)])
    return "cells"


def test_scan_cells_reads_everything_and_closes_the_scanner(broker_address: str, namespace: str,
                                                            table: str) -> None:
    with CountingResource(broker_address) as r:
        cells = list(scan_cells(r, r.mns[namespace], table))
        assert [c.key.row for c in cells] == [f"r{i:02d}" for i in range(30)]
        assert len(r.calls["scanner_close"]) == 1
        batches = list(scan_cells(r, r.mns[namespace], table, ScanSpec(row_limit=5), batch=True))
        assert all(isinstance(b, list) for b in batches)
        assert [c.key.row for b in batches for c in b] == [f"r{i:02d}" for i in range(5)]


def test_scan_cells_closes_the_scanner_when_the_consumer_stops(broker_address: str, namespace: str,
                                                               table: str) -> None:
    with CountingResource(broker_address) as r:
        scan = scan_cells(r, r.mns[namespace], table)
        assert next(scan).key.row == "r00"
        scan.close()
        [scanner] = r.calls["scanner_close"]
        with pytest.raises(ClientException):
            r.scanner_get_cells(scanner)  # gone on the broker too
        assert r.reusable


def test_scan_cells_of_a_missing_table_raises_client_exception(broker_address: str, namespace: str) -> None:
    with Resource(broker_address) as r:
        with pytest.raises(ClientException) as excinfo:
            list(scan_cells(r, r.mns[namespace], "no_such_table"))
        assert excinfo.value.code == codes.TABLE_NOT_FOUND
        assert r.reusable
