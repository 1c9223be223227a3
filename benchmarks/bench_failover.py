"""Failover of Replicas writes: how long writes stall when the primary is lost.

Three stand-in brokers; a thread writes one cell after another through
:class:`~htcluster.Replicas` (``socket_timeout`` 2 s); then the
primary is killed (SIGKILL: connections break, new ones are refused) or
stopped (SIGSTOP: it keeps accepting connections and answers nothing, a hung
broker), with and without ``hedge=0.05``.  For each trial:

* ``gap_ms``: the longest time without an acknowledged write from the fault on;
* ``stalls``: gaps longer than half the socket timeout (the target: at most
  one without hedging, the first write on the stopped primary; none with it);
* ``next_gap_ms``: the second-longest gap (what probes and hedges cost later);
* ``errors``: failures that reached the writer; ``lost``: acknowledged rows
  not found afterwards; ``duplicated``: rows stored with two timestamps.

The primary stays stopped (or dead) for ``AFTER`` seconds: several backoffs
end meanwhile, and each is met by a probe (``probe_timeout`` 0.25 s), never
by a user write.  The SIGSTOP trials use one data file per broker (a broker
stopped inside a SQLite write would hold a shared file's lock, which a real
Hypertable cluster would not); rows are then looked up on every broker after
the primary is resumed.  Targets: ``gap_ms`` <= 100 with hedging; 0 errors,
0 lost, 0 duplicated everywhere.

Run ``python benchmarks/bench_failover.py`` (``--quick`` for one short trial each,
``--trials N --after S`` for more).
"""
from __future__ import annotations

import statistics
import threading
import time
from typing import Any, Optional

from _common import parser, print_table, write_json

from htcluster import Replicas
from htcluster import Resource
from htcluster.testing import LocalCluster
from htcluster.types import Cell, Key, RowInterval, ScanSpec

#: Seconds a call waits for an answer before the broker counts as unavailable.
SOCKET_TIMEOUT = 2.0
HEDGE = 0.05
TRIALS, QUICK_TRIALS = 3, 1
#: Seconds of writing before the fault, and after it.
BEFORE, AFTER, QUICK_AFTER = 0.5, 8.0, 3.0
NS, TABLE = "bench", "failover"


def setup(cluster: LocalCluster) -> None:
    """Create the namespace and a fresh table on every broker (shared file or not)."""
    for host in cluster.hosts[: 1 if cluster.shared_data else len(cluster)]:
        with Resource(host, socket_timeout=60.0) as r:
            r.hql_query(r.namespace_open("/"), f"CREATE NAMESPACE {NS} IF NOT EXISTS")
            ns = r.mns[NS]
            r.hql_query(ns, f"DROP TABLE IF EXISTS {TABLE}")
            r.hql_query(ns, f"CREATE TABLE {TABLE} (c)")


def stored(cluster: LocalCluster, prefix: str) -> dict[str, set[int]]:
    """Return ``{row: {timestamps}}`` of the trial's rows, over every broker's data."""
    spec = ScanSpec(row_intervals=[RowInterval(prefix, True, prefix[:-1] + "0", False)])
    rows: dict[str, set[int]] = {}
    for host in cluster.hosts[: 1 if cluster.shared_data else len(cluster)]:
        with Resource(host, socket_timeout=60.0) as r:
            for c in r.get_cells(r.mns[NS], TABLE, spec):
                rows.setdefault(c.key.row, set()).add(c.key.timestamp)
    return rows


def trial(cluster: LocalCluster, fault: str, hedge: Optional[float], run: int, after: float) -> dict[str, Any]:
    """Write continuously, inject ``fault`` into the primary, and measure the outage (seconds -> ms)."""
    prefix = f"{fault[4]}{'h' if hedge else 'n'}{run}/"  # sorts between prefix and prefix[:-1] + "0"
    acks: list[float] = []
    acked_rows: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    with Replicas(cluster.hosts, socket_timeout=SOCKET_TIMEOUT, connect_timeout=SOCKET_TIMEOUT,
                  hedge=hedge) as replicas:
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
            cluster.pause(0)
        t_fault = time.perf_counter()
        time.sleep(after)
        stop.set()
        t_stop = time.perf_counter()
        writer.join(30)
        hedges = sum(replicas.budget_stats()["hedges"].values())
        failovers = replicas.failovers
    if fault == "kill -9":
        cluster.start(0)
    else:
        cluster.resume(0)
    times = [t_fault] + [t for t in acks if t > t_fault] + [t_stop]
    gaps = sorted((b - a for a, b in zip(times, times[1:])), reverse=True)
    time.sleep(0.5)  # the resumed primary applies what it had received
    found = stored(cluster, prefix)
    return {"gap_ms": gaps[0] * 1000, "next_gap_ms": (gaps[1] if len(gaps) > 1 else 0.0) * 1000,
            "stalls": sum(g > SOCKET_TIMEOUT / 2 for g in gaps), "writes": len(acks), "failovers": failovers,
            "hedges": hedges, "errors": len(errors), "lost": len(set(acked_rows) - set(found)),
            "duplicated": sum(len(ts) > 1 for ts in found.values()),
            "error_texts": [f"{type(e).__name__}: {e}" for e in errors[:5]]}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=None, help="trials per row")
    p.add_argument("--after", type=float, default=None, help="seconds the primary stays lost")
    args = p.parse_args()
    trials = args.trials or (QUICK_TRIALS if args.quick else TRIALS)
    after = args.after or (QUICK_AFTER if args.quick else AFTER)
    rows = []
    cases = [("kill -9", None, True), ("kill -9", HEDGE, True), ("SIGSTOP", None, False), ("SIGSTOP", HEDGE, False)]
    clusters: dict[bool, LocalCluster] = {}
    try:
        for fault, hedge, shared in cases:
            if shared not in clusters:
                clusters[shared] = LocalCluster(3, shared_data=shared)
                setup(clusters[shared])
            runs = [trial(clusters[shared], fault, hedge, i, after) for i in range(trials)]
            gaps = [r["gap_ms"] for r in runs]
            rows.append({"fault": fault, "hedge_s": hedge or "-", "trials": trials,
                         "gap_ms": max(gaps), "median_gap_ms": statistics.median(gaps),
                         "next_gap_ms": max(r["next_gap_ms"] for r in runs),
                         "stalls": max(r["stalls"] for r in runs),
                         **{k: sum(r[k] for r in runs) for k in ("writes", "failovers", "hedges", "errors", "lost",
                                                                 "duplicated")},
                         "error_texts": [t for r in runs for t in r["error_texts"]][:5]})
    finally:
        for cluster in clusters.values():
            cluster.close()
    table = print_table(
        f"Replicas writes over 3 brokers, primary lost for {after:g} s; socket timeout {SOCKET_TIMEOUT:g} s; "
        "gap = longest time without an acknowledged write after the fault (max of trials); ratio vs kill -9",
        rows, ["fault", "hedge_s", "trials", "gap_ms", "median_gap_ms", "next_gap_ms", "stalls", "writes",
               "failovers", "hedges", "errors", "lost", "duplicated"],
        ratio_of="gap_ms", higher_is_better=False)
    for row in table:
        clean = row["errors"] == row["lost"] == row["duplicated"] == 0
        verdict = f"0 errors/lost/duplicated: {'met' if clean else 'NOT met'}"
        if row["fault"] == "SIGSTOP":
            target = "gap <= 100 ms" if row["hedge_s"] != "-" else "at most one stall"
            met = row["gap_ms"] <= 100 if row["hedge_s"] != "-" else row["stalls"] <= 1
            verdict = f"{target}: {'met' if met else 'NOT met'}; {verdict}"
        print(f"{row['fault']:8} hedge {row['hedge_s']!s:5}: {verdict}")
    write_json("bench_failover", {"quick": args.quick, "socket_timeout_s": SOCKET_TIMEOUT, "hedge_s": HEDGE,
                                  "after_s": after, "results": table}, args.json)


if __name__ == "__main__":
    main()
