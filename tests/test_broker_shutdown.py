"""Graceful stop of the stand-in broker (issue 10, "Shutdown").

SIGTERM/SIGINT: stop accepting, answer every call in flight, flush every
mutator, exit 0; a second signal stops at once; the signal handler takes no
lock.  A call counts as refused before it was sent when the client, about to
send it, finds its connection already closed by the broker (a non-blocking
peek, what ``Resource.is_stale`` does); every other call must be answered.
"""
from __future__ import annotations

import signal
import socket
import sys
import threading
import time
from pathlib import Path

from brokertest import cell, make_table
from conftest import open_raw_client
from htcluster.testing import LocalBroker
from htcluster.types import ScanSpec

WRITERS = 8
#: Calls each writer makes before the broker is told to stop.
BEFORE_STOP = 30
#: Seconds any wait of these tests may take on a loaded machine.
PATIENCE = 60.0


def closed_by_broker(client) -> bool:
    """True when the broker has closed this client's connection (end of file or reset waiting on it)."""
    handle = client._iprot.trans._TFramedTransport__trans.handle
    if handle is None:
        return True
    timeout = handle.gettimeout()
    handle.setblocking(False)  # with a timeout set, recv would wait for data despite MSG_DONTWAIT
    try:
        return handle.recv(1, socket.MSG_PEEK) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True
    finally:
        try:
            handle.settimeout(timeout)
        except OSError:
            pass


class Writer(threading.Thread):
    """Writes one new row per call (set_cells, or HQL INSERT every other call) until the broker refuses."""

    def __init__(self, address: str, index: int) -> None:
        super().__init__(name=f"writer-{index}", daemon=True)
        self.client = open_raw_client(address, timeout=PATIENCE)
        self.ns = self.client.namespace_open("stop")
        self.index = index
        self.answered: list[str] = []
        self.failed: list[tuple[str, BaseException]] = []
        self.refused = False

    def run(self) -> None:
        n = 0
        while not self.refused and not self.failed:
            if closed_by_broker(self.client):
                self.refused = True
                break
            row = f"w{self.index}-{n:06d}"
            try:
                if n % 2:
                    self.client.hql_query(self.ns, f"INSERT INTO t VALUES ('{row}', 'a', 'v')")
                else:
                    self.client.set_cells(self.ns, "t", [cell(row, "a", "v")])
            except Exception as exc:  # a call sent and not answered: what the test looks for
                self.failed.append((row, exc))
                break
            self.answered.append(row)
            n += 1
        self.client._iprot.trans.close()


def _rows(address: str) -> set[str]:
    c = open_raw_client(address)
    try:
        return {x.key.row for x in c.get_cells(c.namespace_open("stop"), "t", ScanSpec())}
    finally:
        c._iprot.trans.close()


def test_no_call_in_flight_fails_during_a_graceful_stop(tmp_path: Path):
    data = tmp_path / "stop.sqlite"
    with LocalBroker(data, extra_args=("--stop-grace", "30")) as local:
        setup = open_raw_client(local.address)
        setup.namespace_create("stop")
        make_table(setup, setup.namespace_open("stop"), "t", "a")
        setup._iprot.trans.close()
        writers = [Writer(local.address, i) for i in range(WRITERS)]
        for w in writers:
            w.start()
        deadline = time.monotonic() + PATIENCE
        while any(len(w.answered) < BEFORE_STOP and w.is_alive() for w in writers):
            assert time.monotonic() < deadline, "the writers did not get going"
            time.sleep(0.05)
        stopped = time.monotonic()
        local.process.send_signal(signal.SIGTERM)
        for w in writers:
            w.join(PATIENCE)
        assert local.process.wait(PATIENCE) == 0
        took = time.monotonic() - stopped
        local.process = None
        assert took < 15, f"the stop took {took:.1f} s: it waited for the grace period (30 s), not for the calls"
        failures = [(w.name, row, repr(exc)) for w in writers for row, exc in w.failed]
        assert failures == [], "calls failed after they were sent"
        assert all(w.refused for w in writers)
        local.start()
        stored = _rows(local.address)
        answered = {row for w in writers for row in w.answered}
        assert answered <= stored, "an answered write was lost"
        assert len(answered) >= WRITERS * BEFORE_STOP


def test_a_second_signal_stops_at_once_and_mutators_are_flushed(tmp_path: Path, raw_client_factory):
    data = tmp_path / "twice.sqlite"
    with LocalBroker(data, extra_args=("--stop-grace", "60", "--frame-timeout", "120")) as local:
        c = raw_client_factory(local.address)
        c.namespace_create("stop")
        ns = c.namespace_open("stop")
        make_table(c, ns, "t", "a")
        mutator = c.mutator_open(ns, "t", 0, 0)
        c.mutator_set_cells(mutator, [cell("buffered", "a", "v")])
        with socket.create_connection((local.host, local.port), timeout=10) as half:
            half.sendall(b"\x00\x00\x01\x00" + b"x" * 10)  # a frame in flight: a graceful stop waits for it
            time.sleep(0.2)
            local.process.send_signal(signal.SIGTERM)
            time.sleep(1.0)
            assert local.process.poll() is None, "the first signal did not wait for the frame in flight"
            started = time.monotonic()
            local.process.send_signal(signal.SIGTERM)
            assert local.process.wait(PATIENCE) == 0
            assert time.monotonic() - started < 10, "the second signal did not stop the broker at once"
        local.process = None
        local.start()
        again = raw_client_factory(local.address)
        assert [x.key.row for x in again.get_cells(again.namespace_open("stop"), "t", ScanSpec())] == ["buffered"]


def test_a_graceful_stop_with_idle_connections_is_quick(raw_client_factory):
    with LocalBroker() as local:
        idle = [raw_client_factory(local.address) for _ in range(20)]
        assert all(c.status().code == 0 for c in idle)
        time.sleep(0.6)  # idle for longer than the broker lingers
        started = time.monotonic()
        local.process.send_signal(signal.SIGINT)
        assert local.process.wait(PATIENCE) == 0
        assert time.monotonic() - started < 8, "idle connections held up the stop"
        local.process = None
        assert all(closed_by_broker(c) for c in idle)


def test_a_paused_and_resumed_broker_obeys_sigterm():
    with LocalBroker() as local:
        for _ in range(3):
            local.pause()
            local.resume()
        local.process.send_signal(signal.SIGTERM)
        assert local.process.wait(PATIENCE) == 0
        local.process = None


def test_the_signal_handler_takes_no_lock():
    from htcluster.broker.server import _SignalPipe

    pipe = _SignalPipe(install=False)
    seen: list[str] = []

    def profile(frame, event, arg):
        if event == "c_call":
            seen.append(getattr(arg, "__qualname__", repr(arg)))
        elif event == "call":
            seen.append(frame.f_code.co_qualname if hasattr(frame.f_code, "co_qualname") else frame.f_code.co_name)
    try:
        sys.setprofile(profile)
        pipe._on_signal(signal.SIGTERM, None)
        pipe._on_signal(signal.SIGINT, None)
    finally:
        sys.setprofile(None)
        pipe.close()
    assert pipe.received == 2
    called = " ".join(seen)
    for locking in ("acquire", "__enter__", "Event.set", "Condition", "wait", "log"):
        assert locking not in called, f"the signal handler calls {locking}: {seen}"
