"""The stand-in broker under hostile clients: its limits, each a ``python -m htcluster.broker`` option.

Every test reproduces one defect of issue 10 ("No resource limits", "Frames"):
connections beyond a maximum, slowloris connections, frames held half-sent,
frames of zero bytes or holding a truncated message, answers built whole,
work kept going for a client that has gone, one thread per idle connection.
Brokers run as subprocesses (their memory and threads are read from /proc)
or in-process when a test reads the broker's log lines.
"""
from __future__ import annotations

import logging
import socket
import struct
import time
from pathlib import Path
from typing import Iterator

import pytest
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.transport.TTransport import TMemoryBuffer

from brokertest import cell, eventually, make_table, raises_code
from conftest import open_raw_client
from htcluster import codes
from htcluster._thrift import HqlService
from htcluster.broker import BrokerServer
from htcluster.broker.limits import Limits
from htcluster.testing import LocalBroker
from htcluster.types import ScanSpec

MIB = 1024 * 1024
#: Seconds a test waits for the broker to close a connection it must close.
CLOSE_WAIT = 20.0


def frame(body: bytes) -> bytes:
    """Return ``body`` with its 4-byte big-endian length in front."""
    return struct.pack("!i", len(body)) + body


def request(method: str, *args: object) -> bytes:
    """Return one framed request of ``method``, as a client would send it."""
    buffer = TMemoryBuffer()
    getattr(HqlService.Client(TBinaryProtocol(buffer)), f"send_{method}")(*args)
    return frame(buffer.getvalue())


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Read and drop what ``sock`` receives; True once the broker closed it, False after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False


def received_until_closed(sock: socket.socket, seconds: float = CLOSE_WAIT) -> int:
    """Return the bytes the broker sent before closing ``sock``; fail if it is still open after ``seconds``."""
    total = 0
    sock.settimeout(seconds)
    try:
        while chunk := sock.recv(65536):
            total += len(chunk)
    except ConnectionResetError:
        pass
    return total


def proc_status(pid: int, field: str) -> int:
    """Return one numeric field of ``/proc/PID/status`` (``VmRSS`` in KiB, ``Threads``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def connect(local: "LocalBroker | BrokerServer") -> socket.socket:
    return socket.create_connection((local.host, local.port), timeout=10)


def small_limits(**overrides: object) -> Limits:
    """Return limits small enough for a test: 3 connections, 1 s frames, 1 MiB frames, 2 MiB in flight."""
    values: dict = dict(max_connections=3, frame_timeout=1.0, max_frame_size=MIB, max_inflight_bytes=2 * MIB)
    values.update(overrides)
    return Limits(**values)


@pytest.fixture
def server(tmp_path) -> Iterator[BrokerServer]:
    """An in-process broker with :func:`small_limits`, so that its log lines can be read with ``caplog``."""
    with BrokerServer(port=0, data=tmp_path / "limits.sqlite", limits=small_limits()) as running:
        yield running


def _status_ok(sock: socket.socket) -> bool:
    sock.sendall(request("status"))
    sock.settimeout(10)
    return len(sock.recv(65536)) > 0


# ------------------------------------------------------------- connections

def test_connections_beyond_the_maximum_are_refused_with_a_log_line(server, caplog):
    caplog.set_level(logging.WARNING, "htcluster.broker")
    held = [connect(server) for _ in range(3)]
    try:
        assert all(_status_ok(s) for s in held)
        with connect(server) as extra:
            assert closed_within(extra, CLOSE_WAIT)
        logged = time.monotonic() + CLOSE_WAIT  # the line may come just after the close the client saw
        while not any("maximum of 3 connections" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < logged, "no log line for the refused connection"
            time.sleep(0.01)
        held.pop().close()
        deadline = time.monotonic() + CLOSE_WAIT  # a slot is free again once the broker saw the close
        while True:
            with connect(server) as again:
                try:
                    if _status_ok(again):
                        break
                except OSError:
                    pass
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        for s in held:
            s.close()


def test_idle_connections_cost_no_thread_each(raw_client_factory):
    with LocalBroker(extra_args=("--workers", "4")) as local:
        assert raw_client_factory(local.address).status().code == 0
        before = proc_status(local.process.pid, "Threads")
        idle = [connect(local) for _ in range(200)]
        try:
            assert raw_client_factory(local.address).status().code == 0  # every connection was accepted
            threads = proc_status(local.process.pid, "Threads")
            assert threads <= before + 4, f"{threads} threads for 200 idle connections (was {before})"
        finally:
            for s in idle:
                s.close()


# ------------------------------------------------------------------ frames

def test_a_slowloris_frame_is_closed_after_the_frame_timeout(server, caplog):
    caplog.set_level(logging.WARNING, "htcluster.broker")
    with connect(server) as slow:
        started = time.monotonic()
        slow.sendall(struct.pack("!i", 1000))
        closed = False
        while not closed and time.monotonic() - started < CLOSE_WAIT:
            try:
                slow.sendall(b"x")  # a byte now and then: a plain socket timeout would never fire
            except OSError:
                break
            closed = closed_within(slow, 0.3)
        lifetime = time.monotonic() - started
    assert lifetime < CLOSE_WAIT, "a frame sent a byte at a time kept its connection open"
    assert any("frame timeout" in r.getMessage() for r in caplog.records)


def test_the_idle_timeout_also_closes_a_half_received_frame(tmp_path, caplog):
    caplog.set_level(logging.INFO, "htcluster.broker")
    limits = small_limits(idle_timeout=1.0, frame_timeout=120.0)
    with BrokerServer(port=0, data=tmp_path / "idle.sqlite", limits=limits) as quick:
        with connect(quick) as half:
            half.sendall(struct.pack("!i", 1000) + b"x" * 10)
            assert closed_within(half, CLOSE_WAIT)
    assert any("half a frame" in r.getMessage() for r in caplog.records)


def test_zero_length_frame_closes_the_connection_and_zeros_are_not_amplified(server, caplog):
    caplog.set_level(logging.WARNING, "htcluster.broker")
    with connect(server) as zeros:
        try:
            zeros.sendall(bytes(MIB))
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed before everything was sent: fine
        assert received_until_closed(zeros) <= 64
    assert any("zero-length frame" in r.getMessage() for r in caplog.records)
    with connect(server) as fine:
        assert _status_ok(fine)


def test_a_truncated_message_in_a_valid_frame_neither_hangs_nor_swallows_the_next(server, caplog):
    caplog.set_level(logging.WARNING, "htcluster.broker")
    whole = request("get_cells", 1, "t", ScanSpec())
    truncated = frame(whole[4:-6])
    with connect(server) as sock:
        sock.sendall(truncated + request("status"))
        assert received_until_closed(sock) == 0  # closed at once; the status frame is not taken as the rest
    assert any("truncated" in r.getMessage() for r in caplog.records)


def test_a_frame_over_the_size_limit_is_refused_at_its_header(server):
    with connect(server) as big:
        big.sendall(struct.pack("!i", 2 * MIB))  # only the header: refused without waiting for the body
        assert closed_within(big, CLOSE_WAIT)


def test_a_small_frame_over_a_smaller_size_limit_is_refused_after_a_call_too(tmp_path, caplog):
    """The worker that answered a call takes the next small frame itself, but never one over max_frame_size."""
    caplog.set_level(logging.WARNING, "htcluster.broker")
    limits = small_limits(max_frame_size=1000, max_inflight_bytes=4000)
    with BrokerServer(port=0, data=tmp_path / "small.sqlite", limits=limits) as tight:
        with connect(tight) as sock:
            sock.sendall(request("status") + request("namespace_exists", "n" * 1500))  # the second is 1.5 KB
            assert closed_within(sock, CLOSE_WAIT)
    assert any("over the largest accepted (1000" in r.getMessage() for r in caplog.records)


def test_frames_beyond_the_in_flight_budget_are_refused_early(server, caplog):
    caplog.set_level(logging.WARNING, "htcluster.broker")
    first, second = connect(server), connect(server)
    try:
        first.sendall(struct.pack("!i", MIB) + bytes(MIB // 2))  # holds 1 MiB of the 2 MiB budget
        second.sendall(struct.pack("!i", MIB) + bytes(100))  # fits: 2 MiB in flight
        eventually(lambda: server.inflight_bytes == 2 * MIB, CLOSE_WAIT)
        with connect(server) as third:
            third.sendall(struct.pack("!i", 100_000))  # would exceed the budget
            assert closed_within(third, CLOSE_WAIT)
        assert any("in flight" in r.getMessage() for r in caplog.records)
    finally:
        first.close()
        second.close()
    deadline = time.monotonic() + CLOSE_WAIT  # the budget comes back once the broker saw both closes
    while True:
        with connect(server) as fourth:
            try:
                if _status_ok(fourth):
                    break
            except OSError:
                pass
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_memory_stays_within_the_budget_under_half_sent_big_frames(raw_client_factory):
    budget, size = 16 * MIB, 8 * MIB
    with LocalBroker(extra_args=("--max-frame-size", str(size), "--max-inflight-bytes", str(budget))) as local:
        assert raw_client_factory(local.address).status().code == 0
        before = proc_status(local.process.pid, "VmRSS")
        holders = []
        try:
            for _ in range(8):
                sock = connect(local)
                holders.append(sock)
                try:
                    sock.sendall(struct.pack("!i", size) + bytes(size - MIB))
                except OSError:
                    pass  # refused: over the budget
            time.sleep(0.5)
            grown = (proc_status(local.process.pid, "VmRSS") - before) / 1024
            assert grown < budget / MIB + 24, f"RSS grew {grown:.0f} MiB for a {budget // MIB} MiB budget"
            assert raw_client_factory(local.address).status().code == 0  # small calls still go through
        finally:
            for sock in holders:
                sock.close()


# ----------------------------------------------------------------- answers

def test_an_answer_over_the_limit_asks_for_a_scanner(raw_client_factory):
    with LocalBroker(extra_args=("--max-answer-size", str(MIB))) as local:
        c = raw_client_factory(local.address)
        c.namespace_create("big")
        ns = c.namespace_open("big")
        make_table(c, ns, "t", "a")
        c.set_cells(ns, "t", [cell(f"r{i:04d}", "a", b"v" * 10_000) for i in range(200)])  # 2 MB
        for call, args in ((c.get_cells, (ns, "t", ScanSpec())), (c.hql_query, (ns, "SELECT * FROM t")),
                           (c.get_cells_as_arrays, (ns, "t", ScanSpec())),
                           (c.get_cells_serialized, (ns, "t", ScanSpec()))):
            error = raises_code(codes.INVALID_OPERATION, call, *args)
            assert "scanner" in error.message and str(MIB) in error.message
        assert len(c.get_cells(ns, "t", ScanSpec(cell_limit=50))) == 50  # a smaller answer goes through
        scanner, total = c.scanner_open(ns, "t", ScanSpec()), 0
        while batch := c.scanner_get_cells(scanner):
            total += len(batch)
        assert total == 200


def test_work_for_a_client_that_has_gone_is_abandoned(tmp_path, raw_client_factory, caplog):
    caplog.set_level(logging.INFO, "htcluster.broker")
    limits = small_limits(max_frame_size=64 * MIB, max_inflight_bytes=64 * MIB)
    with BrokerServer(port=0, data=tmp_path / "gone.sqlite", limits=limits) as server:
        _abandon(server, raw_client_factory(server.address), caplog)


def _abandon(server: BrokerServer, c: HqlService.Client, caplog) -> None:
    c.namespace_create("gone")
    ns = c.namespace_open("gone")
    make_table(c, ns, "t", "a")
    for start in range(0, 60_000, 10_000):
        c.set_cells(ns, "t", [cell(f"r{i:06d}", "a", b"v" * 10) for i in range(start, start + 10_000)])
    leaving = open_raw_client(server.address)
    leaving.send_get_cells(leaving.namespace_open("gone"), "t", ScanSpec())  # the request, not its answer
    leaving._iprot.trans.close()  # nobody reads the answer
    deadline = time.monotonic() + 60
    while not any("has gone" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "the broker kept working for a client that had gone"
        time.sleep(0.1)
    assert c.status().code == 0


# ------------------------------------------------------------------ values

def test_limits_are_checked_and_default_to_named_constants():
    from htcluster.broker import limits as defaults
    from htcluster.broker.wire import DEFAULT_MAX_FRAME_SIZE
    from htcluster.errors import ConfigError

    plain = Limits()
    assert DEFAULT_MAX_FRAME_SIZE == plain.max_frame_size == plain.answer_size == 64 * MIB
    assert plain.max_inflight_bytes == defaults.DEFAULT_MAX_INFLIGHT_BYTES == 4 * DEFAULT_MAX_FRAME_SIZE
    assert (plain.max_connections, plain.workers) == (defaults.DEFAULT_MAX_CONNECTIONS, defaults.DEFAULT_WORKERS)
    for bad in ({"max_connections": 0}, {"workers": -1}, {"idle_timeout": 0}, {"frame_timeout": -1.0},
                {"stop_grace": -1}, {"max_answer_size": 0}, {"max_frame_size": 2 * MIB, "max_inflight_bytes": MIB}):
        with pytest.raises(ConfigError) as info:
            Limits(**bad)
        assert isinstance(info.value, ValueError) and next(iter(bad)) in str(info.value)
    assert Limits(idle_timeout=None).idle_timeout is None  # never close idle connections, as upstream
    bigger = Limits(max_inflight_bytes=MIB * 80).replace(max_frame_size=100 * MIB)
    assert bigger.max_inflight_bytes == 400 * MIB  # raised with the frame size rather than refused
