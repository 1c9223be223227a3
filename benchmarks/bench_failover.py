"""Failover of Replicas writes: how long writes stall when the primary is lost.

Three stand-in brokers share one SQLite file; the primary is reached through
a :class:`~htcluster.testing.FaultProxy`.  A thread writes one cell after
another through :class:`~htcluster.cluster.Replicas`; then the primary is
killed (SIGKILL: connections break, new ones are refused) or blackholed (the
proxy swallows every byte: a hung broker, detected only by the
``SOCKET_TIMEOUT``).  The gap is the longest time without an acknowledged
write from the fault on (the outage the writer sees); errors are those that
reached the writer; failovers are the writes that moved on to another
replica after meeting the failed one (``Replicas.failovers``).  Afterwards
every acknowledged row is looked up: ``lost`` must be 0.  The ratio compares
each row's gap with the first.

(SIGSTOP is not used here: a broker stopped inside a SQLite write transaction
holds the shared file's lock, so the other stand-ins stall too, which a real
Hypertable cluster would not do.)

Run ``python benchmarks/bench_failover.py`` (``--quick`` for one trial each).
"""
from __future__ import annotations

import statistics
import threading
import time
from typing import Any

from _common import parser, print_table, write_json

from htcluster.cluster import Replicas
from htcluster.testing import FaultProxy, LocalCluster
from htcluster.types import Cell, Key, RowInterval, ScanSpec

#: Seconds a call waits for an answer before the broker counts as unavailable.
SOCKET_TIMEOUT = 1.0
TRIALS, QUICK_TRIALS = 5, 1
#: Seconds of writing before the fault, and after it.
BEFORE, AFTER = 0.5, 1.5
NS, TABLE = "bench", "failover"


def trial(cluster: LocalCluster, fault: str, run: int) -> dict[str, Any]:
    """Write continuously, inject ``fault`` into the primary, and measure the outage (seconds -> ms)."""
    prefix = f"{fault[0]}{run}/"  # the rows of this trial sort between prefix and prefix[:-1] + "0"
    proxy = FaultProxy(cluster.hosts[0])
    acks: list[float] = []
    acked_rows: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    hosts = [proxy.address, *cluster.hosts[1:]]
    with Replicas(hosts, socket_timeout=SOCKET_TIMEOUT, connect_timeout=SOCKET_TIMEOUT) as replicas:
        def write() -> None:
            i = 0
            while not stop.is_set():
                row = f"{prefix}{i:06d}"
                try:
                    replicas.call("set_cell", TABLE, Cell(Key(row, "c", ""), b"v"), namespace=NS)
                    acks.append(time.perf_counter())
                    acked_rows.append(row)
                except Exception as exc:
                    errors.append(exc)
                i += 1

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        time.sleep(BEFORE)
        if fault == "kill -9":
            cluster.kill(0)
        else:
            proxy.blackhole()
        t_fault = time.perf_counter()
        time.sleep(AFTER)
        stop.set()
        t_stop = time.perf_counter()
        writer.join(30)
        # the longest stretch without an acknowledged write, from the fault on
        times = [t_fault] + [t for t in acks if t > t_fault] + [t_stop]
        outage = max(b - a for a, b in zip(times, times[1:]))
        spec = ScanSpec(row_intervals=[RowInterval(prefix, True, prefix[:-1] + "0", False)])
        found = {c.key.row for c in replicas.call("get_cells", TABLE, spec, namespace=NS)}
        failovers = replicas.failovers
    proxy.close()
    if fault == "kill -9":
        cluster.start(0)
    return {"gap_ms": outage * 1000, "writes": len(acks), "failovers": failovers,
            "errors": len(errors), "lost": len(set(acked_rows) - found),
            "error_texts": [f"{type(e).__name__}: {e}" for e in errors[:5]]}


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    trials = QUICK_TRIALS if args.quick else TRIALS
    rows = []
    with LocalCluster(3, shared_data=True) as cluster:
        with Replicas(cluster.hosts) as setup:
            setup.call("hql_query", f"CREATE NAMESPACE {NS} IF NOT EXISTS", namespace="/")
            setup.call("hql_query", f"DROP TABLE IF EXISTS {TABLE}", namespace=NS)
            setup.call("hql_query", f"CREATE TABLE {TABLE} (c)", namespace=NS)
        for fault in ("kill -9", "blackhole"):
            runs = [trial(cluster, fault, i) for i in range(trials)]
            gaps = [r["gap_ms"] for r in runs]
            rows.append({"fault": fault, "trials": trials, "gap_ms": statistics.median(gaps), "max_gap_ms": max(gaps),
                         "writes": sum(r["writes"] for r in runs), "failovers": sum(r["failovers"] for r in runs),
                         "errors": sum(r["errors"] for r in runs),
                         "lost": sum(r["lost"] for r in runs),
                         "error_texts": [t for r in runs for t in r["error_texts"]][:5]})
    table = print_table(
        f"Replicas writes over 3 brokers, primary lost; socket timeout {SOCKET_TIMEOUT:g} s; "
        "gap = longest time without an acknowledged write after the fault (median of trials); ratio vs kill -9",
        rows, ["fault", "trials", "gap_ms", "max_gap_ms", "writes", "failovers", "errors", "lost"],
        ratio_of="gap_ms", higher_is_better=False)
    write_json("bench_failover", {"quick": args.quick, "socket_timeout_s": SOCKET_TIMEOUT, "results": table},
               args.json)


if __name__ == "__main__":
    main()
