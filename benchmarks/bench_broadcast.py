"""Broadcast wall time over 1, 16, 64 and 256 brokers, each behind +50 ms of round trip.

Every host is a port of one delay proxy (a ``selectors`` loop in a child
process, so that it does not share the client's interpreter lock) that adds
``LATENCY`` seconds to each chunk in each direction (``2 * LATENCY`` = 50 ms
per round trip) and forwards to a few stand-in brokers round-robin.  One
``status()`` unicast costs about one round trip; a broadcast that sends every
request before reading any reply should cost about the same whatever the
number of hosts.  ``bcast/unicast`` is the broadcast's median over the
unicast's median at the same size (target: <= 1.2 at 256 hosts, default
settings); ``ratio`` is the 1-host broadcast time over the N-host one;
``client_cpu_ms`` is the client's CPU per broadcast and ``server_cpu_ms``
that of the stand-in brokers and the proxy together (from ``/proc``): when
their sum nears the round trip times the cores, CPU, not the wire, sets the
excess over one round trip.

Run ``python benchmarks/bench_broadcast.py`` (``--quick``: 1 and 16 hosts,
few rounds; ``--hosts 1,16,64,256,512 --rounds 50`` for more).
"""
from __future__ import annotations

import heapq
import os
import multiprocessing
import selectors
import socket
import time
from typing import Any

from _common import parser, percentile, print_table, write_json

from htcluster import Resources
from htcluster.testing import LocalCluster

#: Seconds added per direction by the proxy: +50 ms per round trip.
LATENCY = 0.025
HOST_COUNTS, QUICK_HOST_COUNTS = (1, 16, 64, 128, 256), (1, 16)
ROUNDS, QUICK_ROUNDS = 30, 3
BROKERS, QUICK_BROKERS = 4, 2
#: Delay proxy processes (each a selectors loop over its share of the ports).
PROXIES = 1
WARMUP = 2
TARGET = 1.2
#: Client CPU per host of a warm broadcast, microseconds (issue "One call engine").
CPU_TARGET_US = 10.0


def serve_delay_proxy(targets: list[tuple[str, int]], n_ports: int, latency: float, pipe: Any) -> None:
    """Listen on ``n_ports`` loopback ports; forward each to ``targets`` round-robin, ``latency`` s later.

    Runs until the parent closes ``pipe``.  One thread: a selector for the
    sockets and a heap of ``(due time, seq, socket, bytes)`` to deliver.
    """
    sel = selectors.DefaultSelector()
    listeners = []
    for i in range(n_ports):
        lsock = socket.create_server(("127.0.0.1", 0), backlog=64)
        lsock.setblocking(False)
        sel.register(lsock, selectors.EVENT_READ, ("listen", targets[i % len(targets)]))
        listeners.append(lsock)
    pipe.send([s.getsockname()[1] for s in listeners])
    sel.register(pipe.fileno(), selectors.EVENT_READ, ("pipe", None))
    due: list[tuple[float, int, socket.socket, bytes]] = []
    peer: dict[socket.socket, socket.socket] = {}
    seq = 0

    def close(sock: socket.socket) -> None:
        for s in (sock, peer.pop(sock, None)):
            if s is not None:
                peer.pop(s, None)
                try:
                    sel.unregister(s)
                except (KeyError, ValueError):
                    pass
                s.close()

    while True:
        timeout = max(0.0, due[0][0] - time.monotonic()) if due else None
        for key, _ in sel.select(timeout):
            kind, data = key.data
            if kind == "pipe":
                return
            if kind == "listen":
                client, _ = key.fileobj.accept()  # type: ignore[union-attr]
                upstream = socket.create_connection(data)
                for s in (client, upstream):
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    s.setblocking(False)
                    sel.register(s, selectors.EVENT_READ, ("data", None))
                peer[client], peer[upstream] = upstream, client
                continue
            sock = key.fileobj
            try:
                chunk = sock.recv(65536)  # type: ignore[union-attr]
            except OSError:
                chunk = b""
            if not chunk:
                close(sock)  # type: ignore[arg-type]
                continue
            seq += 1
            heapq.heappush(due, (time.monotonic() + latency, seq, peer[sock], chunk))  # type: ignore[index]
        now = time.monotonic()
        while due and due[0][0] <= now:
            _, _, dst, chunk = heapq.heappop(due)
            if dst in peer:
                try:
                    sent = dst.send(chunk)
                    if sent < len(chunk):  # rare on loopback with small frames: finish blocking
                        dst.setblocking(True)
                        dst.sendall(chunk[sent:])
                        dst.setblocking(False)
                except OSError:
                    close(dst)


def process_cpu(pids: list[int]) -> float:
    """Return the CPU seconds (user + system) the processes ``pids`` used so far (NaN without ``/proc``)."""
    total = 0.0
    try:
        for pid in pids:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")
    return total


def median_ms(fn: Any, rounds: int) -> tuple[float, float, float]:
    """Return the median and the p99 wall time of ``rounds`` calls of ``fn``, and the client CPU per call (ms)."""
    samples = []
    cpu = time.process_time()
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    cpu_ms = (time.process_time() - cpu) / rounds * 1000
    return percentile(samples, 50) * 1000, percentile(samples, 99) * 1000, cpu_ms


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--hosts", default=None, help="comma-separated host counts (default 1,16,64,256)")
    p.add_argument("--rounds", type=int, default=None, help="broadcasts per host count")
    p.add_argument("--brokers", type=int, default=None, help="stand-in brokers behind the proxy ports")
    p.add_argument("--proxies", type=int, default=PROXIES, help="delay proxy processes sharing the ports")
    args = p.parse_args()
    counts = tuple(int(n) for n in args.hosts.split(",")) if args.hosts else (
        QUICK_HOST_COUNTS if args.quick else HOST_COUNTS)
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else ROUNDS)
    brokers = args.brokers or (QUICK_BROKERS if args.quick else BROKERS)
    n_proxies = max(1, args.proxies)
    rows: list[dict[str, Any]] = []
    with LocalCluster(brokers, shared_data=False) as cluster:
        targets = [(b.host, b.port) for b in cluster]
        pipes, proxies = [], []
        per = -(-max(counts) // n_proxies)  # ports per proxy process, rounded up
        for _ in range(n_proxies):
            here, there = multiprocessing.Pipe()
            proc = multiprocessing.Process(target=serve_delay_proxy, args=(targets, per, LATENCY, there), daemon=True)
            proc.start()
            pipes.append(here)
            proxies.append(proc)
        try:
            slices = [here.recv() for here in pipes]
            ports = [slices[i % n_proxies][i // n_proxies] for i in range(max(counts))]  # interleaved
            for n in counts:
                with Resources([f"127.0.0.1:{port}" for port in ports[:n]], socket_timeout=30.0) as rs:
                    start = time.perf_counter()
                    rs.broadcast("status")  # cold: every connect starts at once (non-blocking connects)
                    cold_ms = (time.perf_counter() - start) * 1000
                    for _ in range(WARMUP):
                        rs.broadcast("status")
                    one = rs.hosts[0]
                    unicast_ms, _, _ = median_ms(lambda one=one: rs.unicast("status", hosts=[one]), rounds)
                    servers = process_cpu([b.process.pid for b in cluster if b.process] + [p.pid for p in proxies
                                                                                           if p.pid])
                    broadcast_ms, broadcast_p99, cpu_ms = median_ms(lambda: rs.broadcast("status"), rounds)
                    servers = (process_cpu([b.process.pid for b in cluster if b.process] + [p.pid for p in proxies
                                                                                            if p.pid]) - servers)
                rows.append({"hosts": n, "unicast_ms": unicast_ms, "broadcast_ms": broadcast_ms,
                             "broadcast_p99_ms": broadcast_p99, "client_cpu_ms": cpu_ms,
                             "cpu_us_per_host": cpu_ms * 1000 / n, "cold_ms": cold_ms,
                             "server_cpu_ms": servers / rounds * 1000,
                             "bcast/unicast": broadcast_ms / unicast_ms,
                             "sequential_ms": n * 2 * LATENCY * 1000})
        finally:
            for here in pipes:
                here.close()
            for proc in proxies:
                proc.join(10)
                if proc.is_alive():
                    proc.terminate()
    table = print_table(
        f"broadcast('status'), +{2 * LATENCY * 1000:g} ms per round trip, {rounds} rounds (medians); "
        f"target bcast/unicast <= {TARGET} at {max(counts)} hosts; ratio = 1-host broadcast / N-host broadcast",
        rows, ["hosts", "unicast_ms", "broadcast_ms", "broadcast_p99_ms", "cold_ms", "client_cpu_ms",
               "cpu_us_per_host", "server_cpu_ms", "bcast/unicast", "sequential_ms"],
        ratio_of="broadcast_ms", higher_is_better=False)
    last = table[-1]
    print(f"\n{last['hosts']} hosts: broadcast / unicast = {last['bcast/unicast']:.2f} (target <= {TARGET}, "
          f"bounded here by the simulated servers' CPU: {last['server_cpu_ms']:.1f} ms per broadcast); "
          f"client CPU {last['cpu_us_per_host']:.1f} us per host (target <= {CPU_TARGET_US:g}): "
          f"{'met' if last['cpu_us_per_host'] <= CPU_TARGET_US else 'NOT met'}")
    write_json("bench_broadcast", {"quick": args.quick, "latency_s": LATENCY, "brokers": brokers,
                                   "proxies": n_proxies, "rounds": rounds,
                                   "target": TARGET, "results": table}, args.json)


if __name__ == "__main__":
    main()
