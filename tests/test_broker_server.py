"""The stand-in broker's server: shared files, bad clients, shutdown, the in-process API (protocol.md 1, 5.1)."""
from __future__ import annotations

import signal
import socket
import sqlite3
import struct
import threading
from pathlib import Path

import pytest

from brokertest import cell, eventually, make_table
from htcluster.broker import BrokerServer, main, serve
from htcluster.broker.store import CHUNK_CELLS, FIRST_CHUNK, PURGE_CHUNK, Store, WriteCell
from htcluster.testing import LocalBroker
from htcluster.types import ColumnFamilySpec, MutateSpec, RowInterval, ScanSpec, Schema


def open_ns(client, name="shared"):
    if not client.namespace_exists(name):
        client.namespace_create(name)
    return client.namespace_open(name)


def frame(body: bytes) -> bytes:
    """Return ``body`` with its 4-byte big-endian length in front."""
    return struct.pack("!i", len(body)) + body


def connection_closed(sock: socket.socket) -> bool:
    """Drain ``sock`` until the server closes it; True once it did."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


# ---------------------------------------------------- two brokers, one file

def test_two_brokers_on_one_file_share_data_and_revisions_increase(tmp_path, raw_client_factory):
    data = tmp_path / "cluster.sqlite"
    with LocalBroker(data) as first, LocalBroker(data) as second:
        a, b = raw_client_factory(first.address), raw_client_factory(second.address)
        ns_a = open_ns(a)
        make_table(a, ns_a, "t", "c")
        ns_b = open_ns(b)
        for i in range(10):  # alternate brokers: write order must be revision order
            (a if i % 2 else b).set_cell(ns_a if i % 2 else ns_b, "t", cell("r", f"c:{i:02d}", str(i)))

        def hammer(client, ns, prefix):
            for i in range(20):
                client.set_cells(ns, "t", [cell(f"{prefix}{i}", "c", "x"), cell(f"{prefix}{i}", "c:y", "y")])
        threads = []
        for address, prefix in ((first.address, "a"), (second.address, "b")):
            c = raw_client_factory(address)
            threads.append(threading.Thread(target=hammer, args=(c, open_ns(c), prefix)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        row_r = a.get_cells(ns_a, "t", ScanSpec(row_intervals=[RowInterval("r", True, "r", True)]))  # c:00..c:09
        revisions = [c.key.revision for c in row_r]
        assert revisions == sorted(revisions) and len(set(revisions)) == 10
        everything = b.get_cells(ns_b, "t", ScanSpec())
        assert len(everything) == 10 + 2 * 2 * 20
        assert len({c.key.revision for c in everything}) == len(everything)  # unique across both processes


# ------------------------------------------------------- chunked purges

def cells_on_file(data: Path) -> tuple[int, int]:
    """Return (cells, pending purges) stored in a data file, read with plain sqlite3."""
    with sqlite3.connect(data) as conn:
        return (conn.execute("SELECT count(*) FROM cells").fetchone()[0],
                conn.execute("SELECT count(*) FROM purges").fetchone()[0])


def test_dropped_tables_and_families_are_purged_in_chunks(tmp_path, raw_client_factory):
    data = tmp_path / "purge.sqlite"
    many = PURGE_CHUNK * 2 + 17  # three transactions
    with LocalBroker(data) as local:
        c = raw_client_factory(local.address)
        ns = open_ns(c)
        make_table(c, ns, "gone", "a")
        make_table(c, ns, "kept", "a", "b")
        c.set_cells(ns, "gone", [cell(f"r{i:05d}", "a", "x") for i in range(many)])
        c.set_cells(ns, "kept", [cell(f"r{i:05d}", f, "x") for i in range(many) for f in ("a", "b")])
        assert cells_on_file(data) == (3 * many, 0)
        c.table_drop(ns, "gone", False)
        assert cells_on_file(data) == (2 * many, 0)
        c.table_alter(ns, "kept", Schema(column_families={"b": ColumnFamilySpec(name="b")}))
        assert cells_on_file(data) == (many, 0)
        assert len(c.get_cells(ns, "kept", ScanSpec())) == many


def test_row_ranges_are_read_in_growing_chunks_without_splitting_rows(tmp_path):
    store = Store(str(tmp_path / "chunks.sqlite"))
    try:
        table_id = store.create_table("", "t", "{}")
        # rows that straddle the first chunk, the doubled ones, and one larger than CHUNK_CELLS
        sizes = [1, 3, FIRST_CHUNK, 1, 2 * FIRST_CHUNK + 5, 2, CHUNK_CELLS + 100, 4]
        store.write(table_id, [WriteCell(f"r{i}", 1 + j % 2, f"q{j:05d}", 255, None, None, b"v")
                               for i, n in enumerate(sizes) for j in range(n)])
        rows = list(store.iter_rows(table_id))
        assert [len(cells) for cells in rows] == sizes
        assert all({c.row for c in cells} == {f"r{i}"} for i, cells in enumerate(rows))
        big = [(c.family, c.qualifier) for c in rows[6]]
        assert big == sorted(big) and len(set(big)) == sizes[6]  # key order kept, nothing repeated
        # families: only family 2 (odd j), so the one-cell rows r0 and r3 are absent
        some = list(store.iter_rows(table_id, "r1", True, "r6", False, families=[2]))
        assert [(cells[0].row, len(cells)) for cells in some] == [("r1", 1), ("r2", FIRST_CHUNK // 2),
                                                                  ("r4", FIRST_CHUNK + 2), ("r5", 1)]
        assert {c.family for cells in some for c in cells} == {2}
    finally:
        store.close()


def test_a_purge_cut_short_is_finished_when_the_file_opens(tmp_path):
    data = tmp_path / "crashed.sqlite"
    store = Store(str(data))
    store.create_namespace("n")
    table_id = store.create_table("n", "t", "{}")
    store.write(table_id, [WriteCell(f"r{i}", 1, "", 255, None, None, b"v") for i in range(50)])
    store.close()
    with sqlite3.connect(data) as conn:  # as if the broker died right after the drop's first transaction
        conn.execute("DELETE FROM tables WHERE id = ?", (table_id,))
        conn.execute("INSERT INTO purges VALUES (?, -1)", (table_id,))
    assert cells_on_file(data) == (50, 1)
    Store(str(data)).close()
    assert cells_on_file(data) == (0, 0)


# --------------------------------------------------------------- bad clients

@pytest.mark.parametrize("payload", [
    struct.pack("!i", 0x7FFFFFF0),  # a frame far over the size limit
    struct.pack("!i", -5),  # a negative frame size
    frame(b"\x80\x01\x00\x01\x7f\xff\xff\xffjunk"),  # a name length beyond the frame
    frame(b"\x12\x34\x56\x78\x9a\xbc\xde\xf0"),  # not the binary protocol at all
    frame(b"\x80\x01\x00\x01\x00\x00\x00\x09get_cells\x00\x00\x00\x01\xee\x00\x01\xff\xff"),  # bad arguments
])
def test_garbage_drops_only_that_connection(broker, client, payload):
    ns = open_ns(client)
    with socket.create_connection((broker.host, broker.port), timeout=10) as bad:
        bad.sendall(payload)
        assert connection_closed(bad)
    assert client.namespace_exists("shared") and client.get_tables(ns) is not None
    assert broker.running


def test_client_vanishing_mid_call_does_not_disturb_others(broker, client, raw_client_factory):
    ns = open_ns(client)
    if not client.table_exists(ns, "big"):
        make_table(client, ns, "big", "a")
        client.set_cells(ns, "big", [cell(f"r{i:05d}", "a", b"v" * 100) for i in range(3000)])
    for _ in range(3):
        leaving = raw_client_factory(broker.address)
        leaving.send_get_cells(open_ns(leaving), "big", ScanSpec())  # namespace ids belong to their connection
        sock = leaving._iprot.trans._TFramedTransport__trans.handle
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, no goodbye
        leaving._iprot.trans.close()
    half = socket.create_connection((broker.host, broker.port), timeout=10)
    request = _framed_get_cells(ns, "big")
    half.sendall(request[: len(request) // 2])  # half a frame, then gone
    half.close()
    assert len(client.get_cells(ns, "big", ScanSpec(cell_limit=10))) == 10
    assert broker.running


def _framed_get_cells(ns: int, table: str) -> bytes:
    """Return the bytes of one framed ``get_cells`` request, as a client would send them."""
    from thrift.protocol.TBinaryProtocol import TBinaryProtocol
    from thrift.transport.TTransport import TMemoryBuffer

    from htcluster._thrift import HqlService
    buffer = TMemoryBuffer()
    HqlService.Client(TBinaryProtocol(buffer)).send_get_cells(ns, table, ScanSpec())
    return frame(buffer.getvalue())


def test_idle_timeout_option_drops_silent_connections(raw_client_factory):
    with LocalBroker(extra_args=("--idle-timeout", "0.3")) as quick:
        with socket.create_connection((quick.host, quick.port), timeout=10) as silent:
            assert connection_closed(silent)
        assert raw_client_factory(quick.address).status().code == 0


# ------------------------------------------------------------------ shutdown

def test_sigterm_flushes_pending_mutators_and_exits_zero(tmp_path: Path, raw_client_factory):
    data = tmp_path / "b.sqlite"
    with LocalBroker(data) as local:
        c = raw_client_factory(local.address)
        ns = open_ns(c)
        make_table(c, ns, "t", "a")
        mutator = c.mutator_open(ns, "t", 0, 0)
        c.mutator_set_cells(mutator, [cell("m", "a", "mutator")])
        c.shared_mutator_set_cells(ns, "t", MutateSpec("app", 3_600_000, 0), [cell("s", "a", "shared")])
        assert c.get_cells(ns, "t", ScanSpec()) == []
        local.process.send_signal(signal.SIGTERM)
        assert local.process.wait(20) == 0
        local.process = None
        local.start()
        again = raw_client_factory(local.address)
        rows = [x.key.row for x in again.get_cells(open_ns(again), "t", ScanSpec())]
        assert rows == ["m", "s"]


# ----------------------------------------------------------- in-process API

def test_broker_server_in_process(raw_client_factory, tmp_path):
    server = BrokerServer(port=0, data=tmp_path / "inproc.sqlite")
    with server:
        assert server.port != 0 and server.address == f"127.0.0.1:{server.port}"
        with pytest.raises(OSError):  # bound to 127.0.0.1 only: another loopback address is refused
            socket.create_connection(("127.0.0.2", server.port), timeout=2).close()
        c = raw_client_factory(server.address)
        assert c.status().code == 0
        eventually(lambda: server.connections == 1)
        assert "running" in repr(server)
    assert "stopped" in repr(server)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    with BrokerServer(port=0) as temporary:  # no data file: a temporary one, removed at stop
        data = temporary.data
        assert data is not None and data.exists()
    assert not data.exists()


def test_serve_until_stopped_and_main_errors(tmp_path, raw_client_factory):
    from htcluster.testing import free_port
    stop = threading.Event()
    port = free_port()
    thread = threading.Thread(target=serve, args=("127.0.0.1", port, tmp_path / "serve.sqlite"),
                              kwargs={"stop": stop})
    thread.start()
    try:
        eventually(lambda: _answers(raw_client_factory, port))
        assert main(["--port", str(port), "--data", str(tmp_path / "other.sqlite")]) == 1  # port taken
    finally:
        stop.set()
        thread.join(20)
    assert not thread.is_alive()
    assert main(["--port", "0", "--data", str(tmp_path / "missing-dir" / "x.sqlite")]) == 1
    assert main(["--port", "0", "--max-frame-size", "1000", "--max-inflight-bytes", "10"]) == 2  # a bad limit


def _answers(raw_client_factory, port: int) -> bool:
    try:
        return raw_client_factory(f"127.0.0.1:{port}").status().code == 0
    except Exception:
        return False
