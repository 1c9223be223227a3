"""htcluster.aio against the blocking client: CPU per call, many calls in flight, a wide broadcast.

Side by side in one run, on the same local stand-in brokers:

(a) one caller, one call after another: the raw Thrift client, ``Pool.call``,
    ``AsyncPool.call``, ``Replicas.call`` and ``AsyncReplicas.call`` (a read):
    client CPU microseconds per call (``time.process_time``; the brokers run in
    other processes).  Target (issue 17): async <= 1.3x the blocking twin.
(b) 1,000 reads in flight: ``AsyncReplicas`` over 3 brokers, each behind a proxy
    adding 20 ms each way, a pool of 32 per host, against the blocking
    ``Replicas`` driven by 96 threads (the same number of calls in flight):
    wall time and client CPU.  Targets: async wall <= threaded wall, async CPU
    <= 0.8x threaded CPU.
(c) a broadcast of ``status()`` to 256 hosts (proxies in front of 3 brokers),
    async against blocking, warm pools: wall and client CPU per broadcast.

The rounds of the cases compared in (a) and (c) are interleaved (one round
of each case in turn), so that a machine whose load drifts (other jobs on a
shared host) slows every case alike; (a) keeps each case's best round, (c)
the median; (b) keeps each case's best round.

The proxies run in a child process (``--proxies``) so that their threads'
CPU is not counted as the client's.  Run ``python benchmarks/bench_aio.py``
(``--quick``: a smoke run with small numbers).
"""
from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable

from _common import parser, print_table, write_json
from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
from thrift.transport.TSocket import TSocket
from thrift.transport.TTransport import TFramedTransport

from htcluster import Pool, Replicas, Resources
from htcluster._thrift import HqlService
from htcluster.aio import AsyncPool, AsyncReplicas, AsyncResources
from htcluster.testing import LocalCluster
from htcluster.types import Cell, Key

NAMESPACE, TABLE = "benchaio", "t"
#: (a): calls per round, rounds (the best round counts).
CALLS, QUICK_CALLS, ROUNDS = 3000, 100, 5
#: (b): reads, calls in flight (threads), pool per host, added latency each way (seconds), rounds.
READS, QUICK_READS, THREADS, POOL, LATENCY = 1000, 100, 96, 32, 0.020
B_ROUNDS, QUICK_B_ROUNDS = 3, 1
#: (c): hosts of the broadcast, rounds.
HOSTS, QUICK_HOSTS, BROADCASTS, QUICK_BROADCASTS = 256, 16, 10, 3


def serve_proxies(targets: list[str], count: int, latency: float) -> None:
    """The child: ``count`` proxies over ``targets`` round robin; print their addresses, run until stdin ends."""
    from htcluster.faults import FaultProxy

    proxies = [FaultProxy(targets[i % len(targets)], latency=latency, max_connections=256, lifetime=3600.0)
               for i in range(count)]
    print(json.dumps([p.address for p in proxies]), flush=True)
    sys.stdin.read()
    for p in proxies:
        p.close()


class Proxies:
    """Proxies in a child process (their CPU is not the client's)."""

    def __init__(self, targets: list[str], count: int, latency: float) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--proxies", json.dumps(targets), str(count),
                                      str(latency)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.addresses: list[str] = json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)


def prepare(hosts: list[str]) -> None:
    with Replicas(hosts) as replicas:
        replicas.call("hql_query", f"CREATE NAMESPACE {NAMESPACE} IF NOT EXISTS", namespace="/")
        replicas.call("hql_query", f"DROP TABLE IF EXISTS {TABLE}", namespace=NAMESPACE)
        replicas.call("hql_query", f"CREATE TABLE {TABLE} (c)", namespace=NAMESPACE)
        replicas.call("set_cells", TABLE, [Cell(Key(f"r{i:04d}", "c"), b"v%d" % i) for i in range(100)],
                      namespace=NAMESPACE)


def measure(fn: Callable[[], Any], calls: int) -> tuple[float, float]:
    """One round: client CPU and wall microseconds per call of the blocking ``fn``."""
    c, w = time.process_time(), time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.process_time() - c) / calls * 1e6, (time.perf_counter() - w) / calls * 1e6


def ameasure(loop: asyncio.AbstractEventLoop, fn: Callable[[], Awaitable[Any]], calls: int) -> tuple[float, float]:
    """One round: as :func:`measure`, awaiting ``fn()`` in one task of ``loop``."""
    async def run() -> tuple[float, float]:
        c, w = time.process_time(), time.perf_counter()
        for _ in range(calls):
            await fn()
        return (time.process_time() - c) / calls * 1e6, (time.perf_counter() - w) / calls * 1e6
    return loop.run_until_complete(run())


def interleaved(cases: dict[str, Callable[[], tuple[float, float]]], rounds: int) -> list[dict[str, Any]]:
    """Run every case once per round, the rounds interleaved (a machine whose load drifts slows every case
    alike), and keep each case's best round: ``{"case", "cpu_us", "wall_us"}`` rows in the order given."""
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    wall: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, run in cases.items():
            c, w = run()
            cpu[name].append(c)
            wall[name].append(w)
    return [{"case": name, "cpu_us": min(cpu[name]), "wall_us": min(wall[name])} for name in cases]


def part_a(hosts: list[str], calls: int) -> list[dict[str, Any]]:
    host, port = hosts[0].rsplit(":", 1)
    sock = TSocket(host, int(port))
    transport = TFramedTransport(sock)
    transport.open()
    raw = HqlService.Client(TBinaryProtocolAccelerated(transport))
    ns = raw.namespace_open(NAMESPACE)
    args = (TABLE, "r0001", "c")
    pool, replicas = Pool(hosts[0]), Replicas(hosts)
    apool, areplicas = AsyncPool(hosts[0]), AsyncReplicas(hosts)
    loop = asyncio.new_event_loop()
    try:
        rows = interleaved({
            "raw Thrift client": lambda: measure(lambda: raw.get_cell(ns, *args), calls),
            "Pool.call": lambda: measure(lambda: pool.call("get_cell", *args, namespace=NAMESPACE), calls),
            "AsyncPool.call": lambda: ameasure(
                loop, lambda: apool.call("get_cell", *args, namespace=NAMESPACE), calls),
            "Replicas.call": lambda: measure(
                lambda: replicas.call("get_cell", *args, namespace=NAMESPACE), calls),
            "AsyncReplicas.call": lambda: ameasure(
                loop, lambda: areplicas.call("get_cell", *args, namespace=NAMESPACE), calls),
        }, ROUNDS)
    finally:
        transport.close()
        for closing in (pool, replicas, apool, areplicas):
            closing.close()
        loop.close()
    return rows


def part_b(targets: list[str], reads: int, rounds: int) -> list[dict[str, Any]]:
    proxies = Proxies(targets, 3, LATENCY)
    loop = asyncio.new_event_loop()
    try:
        hosts = proxies.addresses
        options = dict(size=POOL, max_overflow=0, pool_timeout=60.0, socket_timeout=60.0)
        rows = [f"r{i % 100:04d}" for i in range(reads)]
        sync = Replicas(hosts, **options)  # type: ignore[arg-type]
        replicas = AsyncReplicas(hosts, **options)  # type: ignore[arg-type]

        def read(row: str) -> Any:
            return sync.call("get_cell", TABLE, row, "c", namespace=NAMESPACE)

        async def aread(row: str) -> Any:
            return await replicas.call("get_cell", TABLE, row, "c", namespace=NAMESPACE)

        async def gather(some: list[str]) -> tuple[float, float]:
            c, w = time.process_time(), time.perf_counter()
            await asyncio.gather(*(aread(r) for r in some))
            return time.perf_counter() - w, time.process_time() - c

        best = {"sync": (float("inf"), float("inf")), "async": (float("inf"), float("inf"))}
        with ThreadPoolExecutor(THREADS) as executor:
            list(executor.map(read, rows[:THREADS * 2]))  # warm: connections open
            loop.run_until_complete(gather(rows[:THREADS * 2]))
            for _ in range(rounds):  # interleaved; each case's best round (wall, then its CPU)
                c, w = time.process_time(), time.perf_counter()
                list(executor.map(read, rows))
                best["sync"] = min(best["sync"], (time.perf_counter() - w, time.process_time() - c))
                best["async"] = min(best["async"], loop.run_until_complete(gather(rows)))
        sync.close()
        replicas.close()
        return [{"case": f"Replicas, {THREADS} threads", "wall_s": best["sync"][0], "cpu_s": best["sync"][1]},
                {"case": f"AsyncReplicas, {reads} tasks", "wall_s": best["async"][0], "cpu_s": best["async"][1]}]
    finally:
        loop.close()
        proxies.close()


def part_c(targets: list[str], count: int, rounds: int) -> list[dict[str, Any]]:
    proxies = Proxies(targets, count, 0.0)
    loop = asyncio.new_event_loop()
    try:
        hosts = proxies.addresses
        options = dict(socket_timeout=60.0, connect_timeout=30.0, size=1)
        sync = Resources(hosts, **options)  # type: ignore[arg-type]
        rs = AsyncResources(hosts, **options)  # type: ignore[arg-type]

        def blocking() -> tuple[float, float]:
            c, w = time.process_time(), time.perf_counter()
            assert len(sync.broadcast("status")) == count
            return time.perf_counter() - w, time.process_time() - c

        async def asynchronous() -> tuple[float, float]:
            c, w = time.process_time(), time.perf_counter()
            assert len(await rs.broadcast("status")) == count
            return time.perf_counter() - w, time.process_time() - c

        blocking()
        loop.run_until_complete(asynchronous())  # warm: every pool holds its connection
        figures: dict[str, list[tuple[float, float]]] = {"sync": [], "async": []}
        for _ in range(rounds):  # interleaved: a drifting load slows both alike
            figures["sync"].append(blocking())
            figures["async"].append(loop.run_until_complete(asynchronous()))
        sync.close()
        rs.close()
        rows = []
        for key, case in (("sync", f"Resources.broadcast, {count} hosts"),
                          ("async", f"AsyncResources.broadcast, {count} hosts")):
            rows.append({"case": case, "wall_ms": statistics.median(w for w, _ in figures[key]) * 1e3,
                         "cpu_ms": statistics.median(c for _, c in figures[key]) * 1e3})
        return rows
    finally:
        loop.close()
        proxies.close()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--proxies":
        serve_proxies(json.loads(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
        return
    args = parser(__doc__.splitlines()[0]).parse_args()
    quick = args.quick
    with LocalCluster(3, shared_data=True) as cluster:
        prepare(cluster.hosts)
        a = part_a(cluster.hosts, QUICK_CALLS if quick else CALLS)
        a = print_table("(a) one caller, a read after another: client CPU per call (best of rounds)", a,
                        ["case", "cpu_us", "wall_us"], ratio_of="cpu_us", higher_is_better=False)
        b = print_table(f"(b) reads in flight over 3 brokers behind +{LATENCY * 1e3:.0f} ms proxies, "
                        f"pool {POOL}/host", part_b(cluster.hosts, QUICK_READS if quick else READS,
                                                   QUICK_B_ROUNDS if quick else B_ROUNDS),
                        ["case", "wall_s", "cpu_s"], ratio_of="cpu_s", higher_is_better=False)
        c = print_table("(c) broadcast of status(), warm pools (median of rounds)",
                        part_c(cluster.hosts, QUICK_HOSTS if quick else HOSTS,
                               QUICK_BROADCASTS if quick else BROADCASTS),
                        ["case", "wall_ms", "cpu_ms"], ratio_of="cpu_ms", higher_is_better=False)
    sync_pool, async_pool = a[1]["cpu_us"], a[2]["cpu_us"]
    sync_rep, async_rep = a[3]["cpu_us"], a[4]["cpu_us"]
    targets = {"a_pool_cpu_ratio": async_pool / sync_pool, "a_replicas_cpu_ratio": async_rep / sync_rep,
               "a_target": "<= 1.3", "b_wall_ratio": b[1]["wall_s"] / b[0]["wall_s"], "b_wall_target": "<= 1.0",
               "b_cpu_ratio": b[1]["cpu_s"] / b[0]["cpu_s"], "b_cpu_target": "<= 0.8",
               "c_wall_ratio": c[1]["wall_ms"] / c[0]["wall_ms"], "c_cpu_ratio": c[1]["cpu_ms"] / c[0]["cpu_ms"]}
    print("\nasync / blocking:", json.dumps({k: round(v, 2) if isinstance(v, float) else v
                                             for k, v in targets.items()}))
    write_json("bench_aio", {"quick": quick, "one_caller": a, "in_flight": b, "broadcast": c, "ratios": targets},
               args.json)


if __name__ == "__main__":
    main()
