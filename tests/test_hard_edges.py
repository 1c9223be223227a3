"""Hard edges of the call engine: interrupts, forks, probes past deadlines, cold broadcasts, local limits.

Each test reproduces a defect found on the engine before "One call engine" and checks it stays fixed
(issue "Hard edges", items 1 to 6).  Real brokers on loopback; interrupts are a SIGALRM timer
raising a BaseException, or listeners that raise one; hosts that drop SYNs are listening sockets
whose accept queue is full.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import traceback
import threading
import time
from typing import Iterator

import pytest

from htcluster import (BroadcastError, DeadlineExceeded, NoHostAvailable, Pool, Replicas,
                       Resources, events)
from htcluster.types import Cell, Key

SLOW = dict(socket_timeout=30.0, connect_timeout=10.0, pool_timeout=30.0)


class Interrupt(BaseException):
    """What an interrupt looks like to the code it lands in (a KeyboardInterrupt that pytest leaves alone)."""


class interrupt_after:  # noqa: N801 (used like a function)
    """Raise :class:`Interrupt` in the main thread after ``seconds`` (SIGALRM).

    A class, not a generator context manager: those set ``__traceback__`` on the exception passing
    through, which Thrift's immutable ``ClientException`` refuses.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        def fire(signum, frame):
            raise Interrupt()

        self.previous = signal.signal(signal.SIGALRM, fire)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc_info: object) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.previous)


def make_table(rs: Replicas, namespace: str) -> None:
    """Create ``namespace`` and its table ``t (a)`` unless they exist."""
    if not rs.call("namespace_exists", namespace):
        rs.call("namespace_create", namespace)
    if not rs.call("hql_query", "SHOW TABLES", namespace=namespace).results:
        rs.call("hql_query", "CREATE TABLE t (a)", namespace=namespace, write=True)


def consistent(pool: Pool) -> None:
    """The pool's books balance and nobody is left waiting."""
    stats = pool.stats()
    assert stats["opened"] - stats["closed"] == stats["idle"] + stats["in_use"], stats
    assert stats["waiting"] == 0, stats


@contextlib.contextmanager
def syn_dropper(count: int = 1) -> Iterator[list[str]]:
    """``count`` addresses on loopback whose SYNs go unanswered: listening, accept queue full, never accepting."""
    listeners, fillers, addresses = [], [], []
    for _ in range(count):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(3):  # fill the accept queue: later SYNs are dropped
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        listeners.append(listener)
        addresses.append(f"127.0.0.1:{port}")
    time.sleep(0.1)
    try:
        yield addresses
    finally:
        for sock in fillers + listeners:
            sock.close()


# ---------------------------------------------------------------- 1. interrupts


def test_an_interrupted_pool_wait_loses_no_slot(broker_address):
    """One thread holds the only connection; the main thread is interrupted 0.3 s into its wait."""
    pool = Pool(broker_address, size=1, max_overflow=0, pool_timeout=5.0)
    held, release = threading.Event(), threading.Event()

    def holder():
        with pool.connection():
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    assert held.wait(10)
    with pytest.raises(Interrupt), interrupt_after(0.3):
        pool.call("status")
    assert pool.waiting == 0  # the interrupted waiter left the line
    release.set()
    thread.join(10)
    consistent(pool)
    assert pool.stats()["in_use"] == 0 and pool.idle == 1
    assert pool.call("status", timeout=5.0) is not None  # the slot came back
    pool.close()


@pytest.mark.parametrize("kind", [events.CallStarted, events.PoolCheckedIn, events.ConnectionOpened,
                                  events.PoolCheckedOut, events.CallSucceeded])
def test_a_listener_that_raises_leaves_the_pool_consistent(broker_address, kind):
    pool = Pool(broker_address, size=1, max_overflow=0, pool_timeout=5.0)
    fired = []

    def listener(event):
        if isinstance(event, kind) and not fired:
            fired.append(event)
            raise Interrupt()

    pool.listeners.register(listener)
    with pytest.raises(Interrupt):
        pool.call("status")
    assert fired
    consistent(pool)
    assert pool.in_use == 0
    assert pool.call("status", timeout=5.0) is not None  # the next call works: no slot lost
    consistent(pool)
    pool.close()


def test_interrupts_at_random_points_of_routed_calls_keep_every_pool_consistent(local_cluster_factory):
    """Interrupts land anywhere in unicasts, hedged reads, broadcasts and scans; then every pool balances."""
    cluster = local_cluster_factory(2)
    rs = Replicas(cluster.hosts, hedge=0.001, hedge_ratio=1.0, **SLOW)
    make_table(rs, "hard_edges")
    rs.call("set_cells", "t", [Cell(Key(f"r{i}", "a", ""), b"v") for i in range(200)], namespace="hard_edges")
    operations = [
        lambda: rs.call("status"),
        lambda: rs.call("get_cells", "t", __import__("htcluster").types.ScanSpec(row_limit=50),
                        namespace="hard_edges"),
        lambda: rs.broadcast("status"),
        lambda: list(rs.scan("t", namespace="hard_edges")),
    ]
    interrupted = 0
    for i in range(80):
        op = operations[i % len(operations)]
        where = ""
        try:
            with interrupt_after(0.0002 * (1 + i % 13)):
                op()
        except Interrupt:
            interrupted += 1
            where = traceback.format_exc()
        for pool in rs.values():
            assert pool.in_use == 0, where  # the interrupt's traceback says where a slot was lost
            consistent(pool)
    assert interrupted > 0
    assert rs.call("status", timeout=10.0) is not None and rs.health.down() == {}
    rs.close()


# ---------------------------------------------------------------- 2. forks


def test_forked_children_finish_their_calls_while_parent_threads_hammer(local_cluster_factory):
    """Fork repeatedly while threads use a Replicas (stamping, budgets, health, pools): no child hangs."""
    cluster = local_cluster_factory(2)
    rs = Replicas(cluster.hosts, **SLOW)
    make_table(rs, "forks")
    stop = threading.Event()

    def hammer(n):
        i = 0
        while not stop.is_set():
            rs.call("set_cell", "t", Cell(Key(f"p{n}-{i}", "a", ""), b"x"), namespace="forks")
            rs.call("get_cell", "t", f"p{n}-{i}", "a", namespace="forks")
            i += 1

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch inside every lock region
    threads = [threading.Thread(target=hammer, args=(n,), daemon=True) for n in range(4)]
    for t in threads:
        t.start()
    hung = failed = 0
    try:
        for round_ in range(40):
            pid = os.fork()
            if pid == 0:  # the child: a few calls through the inherited Replicas, then out
                code = 0
                try:
                    for j in range(3):
                        rs.call("set_cell", "t", Cell(Key(f"c{round_}-{j}", "a", ""), b"y"), namespace="forks",
                                timeout=20.0)
                        rs.call("status", timeout=20.0)
                except BaseException:
                    code = 1
                os._exit(code)
            end = time.monotonic() + 30.0
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    failed += os.waitstatus_to_exitcode(status) != 0
                    break
                if time.monotonic() > end:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    hung += 1
                    break
                time.sleep(0.005)
    finally:
        sys.setswitchinterval(old)
        stop.set()
        for t in threads:
            t.join(30)
    assert hung == 0 and failed == 0
    rs.close()


# ---------------------------------------------------------------- 3. probes inside the deadline


def test_probes_of_hung_hosts_stay_inside_the_calls_deadline(local_cluster_factory):
    """Six hosts due a probe that never answer: the call still ends by its 0.5 s timeout."""
    cluster = local_cluster_factory(1)
    with syn_dropper(6) as hung:
        rs = Resources(hung + cluster.hosts, probe_timeout=5.0, backoff=0.01, connect_timeout=5.0,
                       socket_timeout=30.0)
        for host in hung:
            rs.health.failed(host, None)  # down; their backoff ends at once: due a probe
        time.sleep(0.05)
        start = time.monotonic()
        with contextlib.suppress(DeadlineExceeded, NoHostAvailable):
            rs.unicast("status", timeout=0.5, hosts=hung)
        took = time.monotonic() - start
        assert took < 1.5, took  # all six probed at once, inside the deadline (was 6 x probe_timeout)
        start = time.monotonic()
        results, errors = rs.broadcast("status", timeout=0.3, errors="return")
        assert time.monotonic() - start < 1.5
        rs.close()


# ---------------------------------------------------------------- 4. cold broadcasts


def test_a_cold_broadcast_connects_to_every_host_at_once(local_cluster_factory):
    """Three hosts that drop SYNs cost their own slots only; the others answer within the timeout."""
    cluster = local_cluster_factory(2)
    with syn_dropper(3) as hung:
        rs = Resources(cluster.hosts + hung, connect_timeout=1.0, socket_timeout=30.0)
        start = time.monotonic()
        results, errors = rs.broadcast("status", timeout=3.0, errors="return")
        took = time.monotonic() - start
        assert sorted(results) == sorted(cluster.hosts)  # cold pools: every good host answered
        assert sorted(errors) == sorted(hung)
        assert took < 2.5, took  # the connects ran at once (one connect_timeout), not one after another
        rs.close()


def test_a_broadcast_with_a_short_timeout_reaches_cold_good_hosts(local_cluster_factory):
    cluster = local_cluster_factory(3)
    with syn_dropper(2) as hung:
        rs = Resources(cluster.hosts + hung, connect_timeout=5.0, socket_timeout=30.0)
        results, errors = rs.broadcast("status", timeout=1.5, errors="return")
        assert sorted(results) == sorted(cluster.hosts)
        assert all(isinstance(errors[h], DeadlineExceeded) for h in hung)
        assert all(rs.health.state(h).live for h in hung)  # cut by the caller's deadline: not blamed
        rs.close()


# ---------------------------------------------------------------- 5 and 6. local limits, descriptors past 1023

_CHILD = textwrap.dedent("""
    import os, resource, sys
    from htcluster import ClientResourceError, Resources, BroadcastError
    address = sys.argv[1]
    rs = Resources([address], socket_timeout=30.0, connect_timeout=10.0)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    hog = []
    try:
        while True:
            hog.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    try:
        rs.unicast("status")
    except ClientResourceError as exc:
        print("unicast", type(exc).__name__, "EMFILE" in str(exc))
    results, errors = rs.broadcast("status", errors="return")
    print("broadcast", [type(e).__name__ for e in errors.values()])
    print("down", sorted(rs.health.down()))
    for fd in hog:
        os.close(fd)
    print("after", rs.unicast("status") is not None)
""")


def test_running_out_of_descriptors_is_the_clients_error_not_the_hosts(broker_address):
    proc = subprocess.run([sys.executable, "-c", _CHILD, broker_address], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines == ["unicast ClientResourceError True", "broadcast ['ClientResourceError']", "down []",
                     "after True"], proc.stdout


_BIG = textwrap.dedent("""
    import os, resource, sys
    from htcluster import Pool
    from htcluster.types import Cell, Key
    address, ns = sys.argv[1], sys.argv[2]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), hard))
    hog = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]  # new sockets get numbers past 1023
    pool = Pool(address, socket_timeout=60.0)
    value = b"x" * (16 * 1024 * 1024)
    pool.call("hql_query", "CREATE TABLE big (v)", namespace=ns)
    with pool.connection() as r:
        assert r.connection.fileno() > 1023, r.connection.fileno()
    pool.call("set_cells", "big", [Cell(Key("row", "v", ""), value)], namespace=ns)
    cell = pool.call("get_cell", "big", "row", "v", namespace=ns)
    print(len(cell))
""")


def test_a_large_write_works_with_descriptors_past_1023(broker, ns_name):
    if __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)[1] < 2048:
        pytest.skip("the hard descriptor limit is below 2048")
    proc = subprocess.run([sys.executable, "-c", _BIG, broker.address, ns_name], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(16 * 1024 * 1024)


def test_no_select_select_in_the_package():
    import htcluster
    root = os.path.dirname(htcluster.__file__)
    offenders = []
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py") and "_thrift" not in folder:
                path = os.path.join(folder, name)
                with open(path) as f:
                    if "select.select(" in f.read():
                        offenders.append(path)
    assert offenders == []


_ = BroadcastError  # imported for readers: a broadcast reports per-host errors


# ---------------------------------------------------------------- 8. binary row keys


def test_binary_row_keys_are_refused_before_anything_is_written(broker, ns_name):
    """b'\\xff' then b'\\xfe' used to be merged into one row '\\ufffd'; now each is refused, nothing written."""
    from htcluster import InvalidRequest, Shards
    from htcluster.types import RowInterval, ScanSpec

    pool = Pool(broker.address, **SLOW)
    pool.call("hql_query", "CREATE TABLE bin (a)", namespace=ns_name)
    for row in (b"\xff", b"\xfe", "nul\x00here", b"nul\x00"):
        with pytest.raises(InvalidRequest, match="row key"):
            pool.call("set_cells", "bin", [Cell(Key(row, "a", ""), b"A")], namespace=ns_name)
        with pytest.raises(InvalidRequest, match="row key"):
            pool.call("get_cell", "bin", row, "a", namespace=ns_name)
    with pytest.raises(InvalidRequest, match="row key"):
        pool.call("get_cells", "bin", ScanSpec(row_intervals=[RowInterval(start_row=b"\xff")]), namespace=ns_name)
    assert pool.call("get_cells", "bin", ScanSpec(), namespace=ns_name) == []  # nothing was written
    assert pool.idle == 1 and pool.stats()["closed"] == 0  # refused before sending: the connection is kept
    pool.call("set_cells", "bin", [Cell(Key("é".encode(), "a", ""), b"B")], namespace=ns_name)  # UTF-8 bytes
    assert pool.call("get_cell", "bin", "é", "a", namespace=ns_name) == b"B"  # read back by its str
    [cell] = pool.call("get_cells", "bin", ScanSpec(), namespace=ns_name)
    assert cell.key.row == "é"
    shards = Shards([("h1:1", "a"), ("h2:1", "b"), ("h3:1", "c")])
    assert all(shards.locate(f"k{i}é".encode()) == shards.locate(f"k{i}é") for i in range(200))
    pool.close()
