"""Broadcast wall time over 1, 2, 4 and 8 brokers, each behind 20 ms of added latency.

Every broker sits behind a :class:`~htcluster.testing.FaultProxy` adding
``LATENCY`` seconds per direction, so one ``status()`` round trip costs about
40 ms.  A parallel broadcast should cost about that whatever the number of
hosts; a sequential one would cost N times as much.  The ratio column is the
wall time of one host divided by that of N hosts (1.0 = perfectly parallel).

Run ``python benchmarks/bench_broadcast.py`` (``--quick``: fewer rounds, and
two brokers shared round-robin by the proxies).
"""
from __future__ import annotations

from typing import Any

from _common import parser, print_table, time_calls, write_json

from htcluster.cluster import Resources
from htcluster.testing import FaultProxy, LocalCluster

#: Seconds added per direction by each proxy.
LATENCY = 0.020
HOST_COUNTS = (1, 2, 4, 8)
ROUNDS, QUICK_ROUNDS = 50, 5
BROKERS, QUICK_BROKERS = 8, 2
WARMUP = 2


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    rounds = QUICK_ROUNDS if args.quick else ROUNDS
    brokers = QUICK_BROKERS if args.quick else BROKERS
    rows: list[dict[str, Any]] = []
    with LocalCluster(brokers, shared_data=False) as cluster:
        proxies = [FaultProxy(cluster.hosts[i % brokers], latency=LATENCY) for i in range(max(HOST_COUNTS))]
        try:
            for n in HOST_COUNTS:
                with Resources([p.address for p in proxies[:n]], max_workers=max(HOST_COUNTS)) as rs:
                    for _ in range(WARMUP):
                        rs.broadcast("status")
                    timing = time_calls(lambda: rs.broadcast("status"), rounds)
                rows.append({"hosts": n, "sequential_ms": n * 2 * LATENCY * 1000, **timing})
        finally:
            for proxy in proxies:
                proxy.close()
    table = print_table(
        f"broadcast('status') with {LATENCY * 1000:g} ms added per direction, {rounds} rounds; "
        "ratio = 1-host time / N-host time",
        rows, ["hosts", "p50_ms", "p99_ms", "mean_ms", "sequential_ms"], ratio_of="mean_ms", higher_is_better=False)
    write_json("bench_broadcast", {"quick": args.quick, "latency_s": LATENCY, "brokers": brokers,
                                   "results": table}, args.json)


if __name__ == "__main__":
    main()
