"""Gray failures: 3 replicas, one slow but alive; read latency with ``balance="cached"`` and ``"p2c"``.

Three stand-in brokers share one data file.  In the scenario ``+20ms`` the
third replica is reached through a :class:`~htcluster.testing.FaultProxy`
adding 10 ms per direction (+20 ms per round trip); in ``spiky`` it adds
+200 ms to 10 % of its requests; ``healthy`` reaches all three directly, the
baseline.  1 and 8 client threads read one row with ``get_cells`` through
:class:`~htcluster.Replicas` for a fixed number of reads (shared by the
threads), with ``balance="cached"`` (lupyne's policy, the default) and
``balance="p2c"`` (power of two choices over a peak-EWMA latency x in-flight
score), each without and with ``hedge=0.05``.  Printed per row: mean, p50,
p99 and max latency (ms), the share of reads the slow replica served, and
``x_healthy``: the mean over the all-healthy mean of the same balance, hedge
and thread count; ``ratio``: the first row's mean over the row's (above 1:
faster than ``cached`` without hedging, 1 thread).  Target: with ``p2c``, ``x_healthy`` <= 2 at 1 and 8 threads.

The full run adds rows for :class:`htcluster.aio.AsyncReplicas` with
``balance="p2c"`` (``balance`` column ``p2c aio``), without and with the
hedge, by 1 task and by 8 concurrent tasks on one event loop (the
``threads`` column counts the tasks), for the same reads; ``x_healthy``
compares them with their own all-healthy rows, and the target holds for
them too.  ``--quick`` leaves them out.

Run ``python benchmarks/bench_gray.py`` (``--quick``: a few reads per row;
``--reads N``).
"""
from __future__ import annotations

import asyncio
import statistics
import threading
import time
from contextlib import ExitStack
from typing import Any, Optional

from _common import parser, percentile, print_table, write_json

from htcluster import Replicas
from htcluster.aio import AsyncReplicas
from htcluster.testing import FaultProxy, LocalCluster
from htcluster.types import Cell, Key, ScanSpec

#: Seconds the ``+20ms`` proxy adds per direction.
LATENCY = 0.010
#: Seconds and share of the requests the ``spiky`` proxy delays.
SPIKE, SPIKE_RATE = 0.200, 0.10
HEDGE = 0.05
THREADS = (1, 8)
READS, QUICK_READS = 2000, 40
TARGET_X = 2.0
NS, TABLE = "bench", "gray"
SCENARIOS = ("healthy", "+20ms", "spiky")
MODES = (("cached", None), ("p2c", None), ("cached", HEDGE), ("p2c", HEDGE))
#: The asyncio rows (full mode only): balance, hedge; by 1 and by 8 concurrent tasks (``THREADS``).
ASYNC_MODES = (("p2c", None), ("p2c", HEDGE))
#: The ``balance`` column of the asyncio rows.
ASYNC_LABEL = " aio"


def run(hosts: list[str], balance: str, hedge: Optional[float], threads: int, reads: int) -> dict[str, Any]:
    """Read ``reads`` times over ``threads`` threads; return latency figures and the slow host's share."""
    spec = ScanSpec(row_limit=1)
    samples: list[float] = []
    lock = threading.Lock()
    with Replicas(hosts, socket_timeout=30.0, hedge=hedge, balance=balance) as replicas:
        for host in hosts:  # untimed: a warm connection per replica, the namespace open on it
            replicas[host].call("get_cells", TABLE, spec, namespace=NS)
        warm = {h: replicas[h].stats()["calls"] for h in hosts}

        def reader(n: int) -> None:
            mine = []
            for _ in range(n):
                t0 = time.perf_counter()
                cells = replicas.call("get_cells", TABLE, spec, namespace=NS)
                mine.append(time.perf_counter() - t0)
                assert cells and cells[0].value == b"v"
            with lock:
                samples.extend(mine)

        workers = [threading.Thread(target=reader, args=(reads // threads,)) for _ in range(threads)]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        wall = time.perf_counter() - start
        served = {h: replicas[h].stats()["calls"] - warm[h] for h in hosts}
        hedges = sum(replicas.budget_stats()["hedges"].values())
    return {"balance": balance, "hedge_s": hedge or "-", "threads": threads, "calls": len(samples),
            "per_s": len(samples) / wall, "mean_ms": statistics.fmean(samples) * 1000,
            "p50_ms": percentile(samples, 50) * 1000, "p99_ms": percentile(samples, 99) * 1000,
            "max_ms": max(samples) * 1000, "hedges": hedges,
            "slow_share_pct": 100.0 * served[hosts[-1]] / max(1, sum(served.values()))}


def run_async(hosts: list[str], balance: str, hedge: Optional[float], tasks: int, reads: int) -> dict[str, Any]:
    """:func:`run` through :class:`~htcluster.aio.AsyncReplicas`: ``reads`` reads by ``tasks`` tasks of one loop."""
    return asyncio.run(_run_async(hosts, balance, hedge, tasks, reads))


async def _run_async(hosts: list[str], balance: str, hedge: Optional[float], tasks: int,
                     reads: int) -> dict[str, Any]:
    spec = ScanSpec(row_limit=1)
    samples: list[float] = []
    async with AsyncReplicas(hosts, socket_timeout=30.0, hedge=hedge, balance=balance) as replicas:
        for host in hosts:  # untimed: a warm connection per replica, the namespace open on it
            await replicas[host].call("get_cells", TABLE, spec, namespace=NS)
        warm = {h: replicas[h].stats()["calls"] for h in hosts}

        async def reader(n: int) -> None:
            for _ in range(n):
                t0 = time.perf_counter()
                cells = await replicas.call("get_cells", TABLE, spec, namespace=NS)
                samples.append(time.perf_counter() - t0)
                assert cells and cells[0].value == b"v"

        start = time.perf_counter()
        await asyncio.gather(*(reader(reads // tasks) for _ in range(tasks)))
        wall = time.perf_counter() - start
        served = {h: replicas[h].stats()["calls"] - warm[h] for h in hosts}
        hedges = sum(replicas.budget_stats()["hedges"].values())
    return {"balance": balance + ASYNC_LABEL, "hedge_s": hedge or "-", "threads": tasks, "calls": len(samples),
            "per_s": len(samples) / wall, "mean_ms": statistics.fmean(samples) * 1000,
            "p50_ms": percentile(samples, 50) * 1000, "p99_ms": percentile(samples, 99) * 1000,
            "max_ms": max(samples) * 1000, "hedges": hedges,
            "slow_share_pct": 100.0 * served[hosts[-1]] / max(1, sum(served.values()))}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--reads", type=int, default=None, help="reads per row (shared by the threads)")
    args = p.parse_args()
    reads = args.reads or (QUICK_READS if args.quick else READS)
    results: dict[str, list[dict[str, Any]]] = {}
    with LocalCluster(3, shared_data=True) as cluster:
        with Replicas(cluster.hosts, socket_timeout=60.0) as setup:
            setup.call("hql_query", f"CREATE NAMESPACE {NS} IF NOT EXISTS", namespace="/")
            setup.call("hql_query", f"DROP TABLE IF EXISTS {TABLE}", namespace=NS)
            setup.call("hql_query", f"CREATE TABLE {TABLE} (c)", namespace=NS)
            setup.call("set_cell", TABLE, Cell(Key("row", "c", ""), b"v"), namespace=NS)
        with ExitStack() as stack:
            slow = stack.enter_context(FaultProxy(cluster.hosts[2], latency=LATENCY))
            spiky = stack.enter_context(FaultProxy(cluster.hosts[2], spike=SPIKE, spike_rate=SPIKE_RATE, seed=7))
            third = {"healthy": cluster.hosts[2], "+20ms": slow.address, "spiky": spiky.address}
            for scenario in SCENARIOS:
                hosts = [cluster.hosts[0], cluster.hosts[1], third[scenario]]
                results[scenario] = [run(hosts, balance, hedge, threads, reads)
                                     for threads in THREADS for balance, hedge in MODES]
                if not args.quick:
                    results[scenario] += [run_async(hosts, balance, hedge, tasks, reads)
                                          for tasks in THREADS for balance, hedge in ASYNC_MODES]
    healthy = {(r["balance"], r["hedge_s"], r["threads"]): r["mean_ms"] for r in results["healthy"]}
    verdicts = []
    for scenario in SCENARIOS:
        for r in results[scenario]:
            r["x_healthy"] = r["mean_ms"] / healthy[(r["balance"], r["hedge_s"], r["threads"])]
        print_table(f"{scenario}: {reads} get_cells per row through Replicas of 3 "
                    f"(third replica {third_label(scenario)}); x_healthy = mean / all-healthy mean",
                    results[scenario], ["balance", "hedge_s", "threads", "calls", "per_s", "mean_ms", "p50_ms",
                                        "p99_ms", "max_ms", "hedges", "slow_share_pct", "x_healthy"],
                    ratio_of="mean_ms", higher_is_better=False)
        if scenario != "healthy":
            for r in results[scenario]:
                if r["balance"] in ("p2c", "p2c" + ASYNC_LABEL):
                    met = r["x_healthy"] <= TARGET_X
                    verdicts.append(met)
                    print(f"{scenario} {r['balance']} hedge={r['hedge_s']} threads={r['threads']}: mean "
                          f"{r['x_healthy']:.2f}x healthy (target <= {TARGET_X:g}): {'met' if met else 'NOT met'}")
    write_json("bench_gray", {"quick": args.quick, "latency_s": 2 * LATENCY, "spike_s": SPIKE,
                              "spike_rate": SPIKE_RATE, "hedge_s": HEDGE, "reads": reads, "target_x": TARGET_X,
                              "all_met": all(verdicts), "results": results}, args.json)


def third_label(scenario: str) -> str:
    """Describe the third replica of ``scenario``."""
    return {"healthy": "direct", "+20ms": f"+{2 * LATENCY * 1000:g} ms",
            "spiky": f"+{SPIKE * 1000:g} ms on {SPIKE_RATE:.0%} of requests"}[scenario]


if __name__ == "__main__":
    main()
