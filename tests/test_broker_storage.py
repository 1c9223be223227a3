"""Brokers on one data file are stateless front ends of one storage process (issue 15, item 10).

A broker stopped (SIGSTOP) or killed (SIGKILL) in the middle of its writes
must never block the reads and writes of the other brokers on the same file:
the storage process owns the SQLite file and applies each request whole, so
no broker ever holds its write lock.  Before, every broker opened the file
itself, and one stopped inside a write transaction stalled every other
broker's writes until it resumed (or for the 30 s busy timeout).
"""
from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from brokertest import cell, eventually, make_table, raises_code, stop_gracefully
from htcluster import codes
from htcluster.broker import BrokerServer
from htcluster.broker.storage_client import RemoteStore, StorageProcess, StorageUnavailable, connect
from htcluster.broker.storage_wire import EXIT_BUSY, decode, encode, recv_message, send_message, storage_paths
from htcluster.testing import LocalBroker, LocalCluster
from htcluster.types import ClientException, ColumnFamilySpec, RowInterval, ScanSpec, Schema

#: Seconds one call through the broker that was not stopped may take: generous, far below the
#: stall a stopped broker used to cause (until it resumed, or the 30 s busy timeout).
PROMPT = 5.0
#: Seconds the stopped broker stays stopped while the other one is used: longer than PROMPT, so that a
#: call held until it resumes would be seen.
PAUSE = PROMPT + 2.0
#: Seconds the other broker is used after a kill, per round (a killed broker cannot hold a call until it
#: resumes: only a lock it left behind would show, as errors).
AFTER_KILL = 2.5
#: Cells of each write sent to the broker that gets stopped (long transactions: easy to stop inside one).
BATCH = 4000


def open_ns(client, name="stall"):
    if not client.namespace_exists(name):
        client.namespace_create(name)
    return client.namespace_open(name)


class Writer:
    """Threads writing ``BATCH``-cell batches to one broker until told to stop; records what was acknowledged."""

    def __init__(self, raw_client_factory, address: str, prefix: str, threads: int = 3) -> None:
        self.prefix = prefix
        self.acknowledged: list[str] = []
        self.started = threading.Event()
        self._stop = threading.Event()
        self._threads = []
        for t in range(threads):
            client = raw_client_factory(address, timeout=120.0)
            ns = open_ns(client)
            thread = threading.Thread(target=self._run, args=(client, ns, t), daemon=True)
            self._threads.append(thread)

    def _run(self, client, ns: int, t: int) -> None:
        n = 0
        while not self._stop.is_set():
            row = f"{self.prefix}{t}-{n:06d}"
            try:
                client.set_cells(ns, "t", [cell(row, "c", f"{i}") for i in range(BATCH)])
            except Exception:  # the broker was killed: what it acknowledged is all that counts
                return
            self.acknowledged.append(row)
            self.started.set()
            n += 1

    def start(self) -> "Writer":
        for thread in self._threads:
            thread.start()
        assert self.started.wait(60), "the writes to the broker about to be stopped never went through"
        time.sleep(0.3)  # several batches in flight, in every stage of their handling
        return self

    def finish(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(120)


def prompt_calls(client, ns: int, rounds: int, prefix: str) -> list[float]:
    """Write and read back ``rounds`` rows through ``client``; return the seconds of each write+read."""
    took = []
    for i in range(rounds):
        row = f"{prefix}{i:04d}"
        t0 = time.monotonic()
        client.set_cells(ns, "t", [cell(row, "c", "b")])
        found = client.get_cells(ns, "t", ScanSpec(row_intervals=[RowInterval(row, True, row, True)]))
        took.append(time.monotonic() - t0)
        assert [c.value for c in found] == [b"b"]
    return took


def run_with_stalled_peer(raw_client_factory, stall: str, rounds: int, hold: float) -> None:
    """Stop (``pause``) or kill broker 0 of two while it writes, ``rounds`` times, using broker 1 for ``hold``
    seconds each time; broker 1 must stay prompt."""
    with LocalCluster(2) as cluster:
        setup = raw_client_factory(cluster.hosts[1])
        make_table(setup, open_ns(setup), "t", "c")
        peer = raw_client_factory(cluster.hosts[1], timeout=60.0)
        ns = open_ns(peer)
        acknowledged: list[str] = []
        took: list[float] = []
        for r in range(rounds):
            writer = Writer(raw_client_factory, cluster.hosts[0], f"a{r}-").start()
            if stall == "pause":
                cluster.pause(0)  # SIGSTOP, in the middle of its stream of large writes
            else:
                cluster.kill(0)  # SIGKILL, the same
            try:
                deadline = time.monotonic() + hold
                while time.monotonic() < deadline:
                    took += prompt_calls(peer, ns, 5, f"b{len(took)}-")
            finally:
                if stall == "pause":
                    cluster.resume(0)
                else:
                    cluster.start(0)
                writer.finish()
            acknowledged += writer.acknowledged
        assert took and max(took) < PROMPT, f"calls through the other broker took up to {max(took):.2f} s"
        # everything acknowledged by the stopped (or killed) broker is there, whole
        rows: dict[str, int] = {}
        scanner = peer.scanner_open(ns, "t", ScanSpec(row_regexp="^a", keys_only=True))
        while batch := peer.scanner_get_cells(scanner):
            for found in batch:
                rows[found.key.row] = rows.get(found.key.row, 0) + 1
        peer.scanner_close(scanner)
        assert set(acknowledged) <= set(rows)
        assert set(rows.values()) == {BATCH}  # each batch is one transaction: all or nothing
        stop_gracefully(cluster)


def test_a_stopped_broker_never_stalls_the_other_brokers_of_its_file(raw_client_factory):
    run_with_stalled_peer(raw_client_factory, "pause", rounds=1, hold=PAUSE)


def test_a_killed_broker_never_stalls_the_other_brokers_of_its_file(raw_client_factory):
    run_with_stalled_peer(raw_client_factory, "kill", rounds=2, hold=AFTER_KILL)


def test_a_cluster_has_one_storage_process_per_data_file_that_outlives_its_brokers(tmp_path, raw_client_factory):
    (tmp_path / "r").mkdir()
    with LocalCluster(3, shared_data=False, data_dir=tmp_path) as shards, LocalCluster(2, data_dir=tmp_path / "r") \
            as replicas:
        assert len(shards.storages) == 3 and len(replicas.storages) == 1
        pid = replicas.storages[0].pid
        assert pid is not None
        for i in range(len(replicas)):
            replicas.kill(i)
        time.sleep(0.5)
        for i in range(len(replicas)):
            replicas.start(i)
        os.kill(pid, 0)  # still the same process: the cluster owns it, its brokers do not
        client = raw_client_factory(replicas.hosts[1])
        assert client.namespace_exists("sys")
        assert _storage_pid(replicas[0].data) == pid
        stop_gracefully(shards, replicas)
    assert _gone(pid)  # close() stopped it


def _storage_pid(data: Path) -> int:
    sock = connect(storage_paths(data))
    try:
        send_message(sock, ("hello", ()))
        return int(recv_message(sock)[1]["pid"])
    finally:
        sock.close()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_brokers_started_by_hand_share_the_storage_they_start_and_it_ends_after_the_last(tmp_path,
                                                                                        raw_client_factory):
    data = tmp_path / "hand.sqlite"
    linger = ("--storage-linger", "1")  # the default is 10 s
    first = LocalBroker(data, extra_args=linger)  # no storage runs: this broker starts one, in the background
    second = LocalBroker(data, extra_args=linger)
    try:
        assert first.storage is None and second.storage is None  # a given file: not theirs to own
        pid = _storage_pid(data)
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert argv[argv.index(b"--linger") + 1] == b"1.0"  # the broker's --storage-linger reached it
        a, b = raw_client_factory(first.address), raw_client_factory(second.address)
        ns = open_ns(a)
        make_table(a, ns, "t", "c")
        a.set_cells(ns, "t", [cell("r", "c", "v")])
        first.kill()
        assert b.get_cells(open_ns(b), "t", ScanSpec())[0].value == b"v"
        first.start()  # a broker restarted within the linger time finds the same storage
        assert _storage_pid(data) == pid
        stop_gracefully(first, second)
    finally:
        first.close()
        second.close()
    # no broker left: it ends after its linger time (1 s); generous bound
    eventually(lambda: _gone(pid), timeout=60)
    assert not storage_paths(data).socket.exists()


def test_a_storage_process_refuses_to_serve_a_file_another_one_serves(tmp_path):
    data = tmp_path / "once.sqlite"
    with StorageProcess(data) as running:
        assert running.pid is not None
        command = [sys.executable, "-m", "htcluster.broker.storage", "--data", str(data)]
        done = subprocess.run(command, stdout=subprocess.PIPE, timeout=60, check=False)
        assert done.returncode == EXIT_BUSY and done.stdout.startswith(b"busy")
        again = StorageProcess(data).start()  # uses the one that runs
        assert again.pid is None
        assert _storage_pid(data) == running.pid


def test_a_broker_on_a_file_that_is_no_database_does_not_start(tmp_path):
    data = tmp_path / "garbage.sqlite"
    data.write_bytes(b"this is not an SQLite file" * 100)
    done = subprocess.run([sys.executable, "-m", "htcluster.broker", "--port", "0", "--data", str(data)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120, check=False)
    assert done.returncode == 1
    assert b"not a database" in done.stderr


def test_storage_messages_build_no_objects():
    assert decode(encode(("write", (1, [("r", 1, "q", 255, None, None, b"v")])))[4:]) == \
        ("write", (1, [("r", 1, "q", 255, None, None, b"v")]))
    with pytest.raises(pickle.UnpicklingError):
        decode(pickle.dumps(("hello", (Path("/"),))))


def test_storage_socket_path_stays_short_for_deep_data_files(tmp_path):
    deep = tmp_path.joinpath(*["d" * 30] * 5)
    deep.mkdir(parents=True)
    paths = storage_paths(deep / "deep.sqlite")
    assert len(str(paths.socket)) <= 100 and paths.lock.parent == deep
    with BrokerServer(port=0, data=deep / "deep.sqlite") as server:
        store = RemoteStore(deep / "deep.sqlite").open()
        try:
            assert store.namespace_id("sys") is not None
        finally:
            store.close()
        assert server.store is not None


def test_a_store_that_cannot_reach_its_storage_says_so(tmp_path):
    store = RemoteStore(tmp_path / "nobody.sqlite", autostart=False, start_timeout=0.2)
    with pytest.raises(StorageUnavailable, match="no storage process serves"):
        store.open()
    with pytest.raises(ClientException, match="no storage process serves"):
        store.namespace_id("sys")


def test_a_garbage_request_drops_only_that_storage_connection(tmp_path):
    data = tmp_path / "garbage-request.sqlite"
    with StorageProcess(data):
        with socket.socket(socket.AF_UNIX) as bad:
            bad.connect(str(storage_paths(data).socket))
            bad.sendall(b"\x00\x00\x00\x05junk!")
            bad.settimeout(30)
            assert bad.recv(10) == b""
        store = RemoteStore(data, autostart=False).open()
        try:
            assert store.call("namespace_id", "sys") is not None
            with pytest.raises(ClientException, match="not a storage request"):
                store.call("no_such_request")
        finally:
            store.close()


def test_the_storage_lingers_while_a_broker_is_connected_and_ends_after_the_last(tmp_path):
    from htcluster.broker.storage import StorageServer

    server = StorageServer(tmp_path / "linger.sqlite", linger=0.3).start()
    try:
        store = RemoteStore(tmp_path / "linger.sqlite", autostart=False).open()
        time.sleep(1.0)  # more than the linger time, with a broker connected
        assert not server.idle_too_long() and server.connections == 1
        store.close()
        eventually(server.idle_too_long, timeout=30)
    finally:
        server.stop()
    assert not storage_paths(tmp_path / "linger.sqlite").socket.exists()


def test_a_broker_never_uses_a_table_lookup_another_broker_made_stale(tmp_path, raw_client_factory):
    """Brokers cache table lookups; the storage checks each one where it is used, so none is ever stale."""
    data = tmp_path / "stale.sqlite"
    with LocalBroker(data) as first, LocalBroker(data) as second:
        a, b = raw_client_factory(first.address), raw_client_factory(second.address)
        ns_a, ns_b = open_ns(a), open_ns(b)
        make_table(a, ns_a, "t", "old")
        b.set_cells(ns_b, "t", [cell("r", "old", "1")])  # b has looked t up (and cached it)
        assert [c.value for c in b.get_cells(ns_b, "t", ScanSpec())] == [b"1"]
        a.table_drop(ns_a, "t", False)
        make_table(a, ns_a, "t", "new")  # the same name, another table, another family
        b.set_cells(ns_b, "t", [cell("r", "new", "2")])
        assert [(c.key.column_family, c.value) for c in b.get_cells(ns_b, "t", ScanSpec())] == [("new", b"2")]
        assert b.get_cell(ns_b, "t", "r", "new") == b"2"
        a.table_rename(ns_a, "t", "u")
        raises_code(codes.TABLE_NOT_FOUND, b.get_cells, ns_b, "t", ScanSpec())
        raises_code(codes.TABLE_NOT_FOUND, b.set_cells, ns_b, "t", [cell("r", "new", "3")])
        assert [c.value for c in b.get_cells(ns_b, "u", ScanSpec())] == [b"2"]
        a.table_alter(ns_a, "u", Schema(column_families={"other": ColumnFamilySpec(name="other")}))
        raises_code(codes.BAD_KEY, b.set_cells, ns_b, "u", [cell("r", "new", "4")])  # "new" was dropped
        b.set_cells(ns_b, "u", [cell("r", "other", "5")])
        assert [c.value for c in b.get_cells(ns_b, "u", ScanSpec())] == [b"5"]
        stop_gracefully(first, second)


def test_a_detached_storage_process_holds_none_of_its_launchers_streams(tmp_path):
    """Reading the launcher's output to its end must not wait for the storage process to linger out.

    (It kept the launcher's standard error: ``subprocess.run(..., capture_output=True)`` of a broker
    returned only ``--linger`` seconds after the broker exited.)
    """
    data = tmp_path / "detached.sqlite"
    command = [sys.executable, "-m", "htcluster.broker.storage", "--data", str(data), "--detach",
               "--linger", "600"]
    done = subprocess.run(command, capture_output=True, timeout=120, check=False)  # hangs 600 s if a stream is held
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"ready")
    pid = int(done.stdout.split()[1])
    try:
        assert _storage_pid(data) == pid
        assert storage_paths(data).log.exists()  # where its log goes instead
    finally:
        os.kill(pid, signal.SIGTERM)
    eventually(lambda: _gone(pid), timeout=60)


def test_a_broker_that_cannot_listen_starts_no_storage_process(tmp_path):
    taken = socket.create_server(("127.0.0.1", 0))
    try:
        port = taken.getsockname()[1]
        data = tmp_path / "never.sqlite"
        done = subprocess.run([sys.executable, "-m", "htcluster.broker", "--port", str(port), "--data", str(data)],
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in done.stderr
        paths = storage_paths(data)
        assert not paths.socket.exists() and not paths.lock.exists()
    finally:
        taken.close()
