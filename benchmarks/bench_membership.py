"""Live membership: 8 threads write through Replicas while the host list changes every second.

Five stand-in brokers on one data file (replicas of one cluster); a
:class:`~htcluster.Replicas` starts with three of them, and 8 threads write
one stamped cell after another, each to rows of its own.  Every ``PERIOD``
seconds the host list changes, in turn: ``add`` a spare broker, ``remove``
the first host (the write host) and ``set_hosts`` replacing the first host
with a spare (a new write order).  Rows:

* ``static``: no change (the baseline);
* ``drain``: the changes, removed hosts drained (``drain=True``, the default);
* ``cut``: the changes, removed hosts cut (``drain=False``): their calls in
  flight fail over.

Figures: ``writes`` acknowledged and ``per_s``; ``p50_ms``/``p99_ms`` of a
write; ``gap_ms``: the longest time without any acknowledged write (all
threads together); ``errors`` that reached a writer; ``lost``: acknowledged
rows not stored; ``duplicated``: rows stored with two timestamps;
``failovers``; ``change_ms``: the longest change (``add``/``remove``/``set_hosts``
call).  Targets: 0 errors, 0 lost, 0 duplicated.

Run ``python benchmarks/bench_membership.py`` (60 s per row; ``--quick``: 2 s,
a change every 0.25 s; ``--seconds S --period P`` to choose).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Optional

from _common import parser, percentile, print_table, write_json

from htcluster import Replicas, Resource
from htcluster.testing import LocalCluster
from htcluster.types import Cell, Key, RowInterval, ScanSpec

THREADS = 8
SECONDS, QUICK_SECONDS = 60.0, 2.0
PERIOD, QUICK_PERIOD = 1.0, 0.25
#: Seconds a call may take (generous: a timeout is not what is measured).
SOCKET_TIMEOUT = 10.0
NS, TABLE = "bench", "membership"


def setup(host: str) -> None:
    """Create the namespace and a fresh table (one data file: every broker sees it)."""
    with Resource(host, socket_timeout=60.0) as r:
        r.hql_query(r.namespace_open("/"), f"CREATE NAMESPACE {NS} IF NOT EXISTS")
        ns = r.mns[NS]
        r.hql_query(ns, f"DROP TABLE IF EXISTS {TABLE}")
        r.hql_query(ns, f"CREATE TABLE {TABLE} (c)")


def stored(host: str, prefix: str) -> dict[str, set[int]]:
    """Return ``{row: {timestamps}}`` of the rows under ``prefix``."""
    spec = ScanSpec(row_intervals=[RowInterval(prefix, True, prefix[:-1] + "0", False)])
    rows: dict[str, set[int]] = {}
    with Resource(host, socket_timeout=60.0) as r:
        for c in r.get_cells(r.mns[NS], TABLE, spec):
            rows.setdefault(c.key.row, set()).add(c.key.timestamp)
    return rows


class Changer:
    """Changes the hosts of ``replicas`` in turn: add a spare, remove the write host, replace the write host."""

    def __init__(self, replicas: Replicas, active: list[str], spare: list[str], drain: bool) -> None:
        self.replicas, self.active, self.spare, self.drain = replicas, active, spare, drain
        self.step = 0
        self.took: list[float] = []

    def change(self) -> None:
        t0 = time.perf_counter()
        kind = self.step % 3
        if kind == 0:
            host = self.spare.pop(0)
            self.replicas.add(host)
            self.active.append(host)
        elif kind == 1:
            host = self.active.pop(0)
            self.replicas.remove(host, drain=self.drain)
            self.spare.append(host)
        else:
            out, new = self.active.pop(0), self.spare.pop(0)
            self.active = [new, *self.active]
            self.replicas.set_hosts(self.active, drain=self.drain)
            self.spare.append(out)
        assert list(self.replicas.order) == self.active
        self.took.append(time.perf_counter() - t0)
        self.step += 1


def run(cluster: LocalCluster, mode: str, seconds: float, period: float, prefix: str = "") -> dict[str, Any]:
    """Write from :data:`THREADS` threads for ``seconds`` while ``mode`` changes the hosts; measure.

    :param prefix: the rows' prefix (default: the mode's name).
    """
    prefix = f"{prefix or mode}/"
    hosts = cluster.hosts
    acks: list[float] = []
    latencies: list[float] = []
    acked: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    stop = threading.Event()
    with Replicas(hosts[:3], socket_timeout=SOCKET_TIMEOUT, connect_timeout=SOCKET_TIMEOUT) as replicas:
        changer: Optional[Changer] = None
        if mode != "static":
            changer = Changer(replicas, list(hosts[:3]), list(hosts[3:]), drain=mode == "drain")

        def write(n: int) -> None:
            i = 0
            while not stop.is_set():
                row = f"{prefix}{n}-{i:07d}"
                t0 = time.perf_counter()
                try:
                    replicas.call("set_cell", TABLE, Cell(Key(row, "c", ""), b"v"), namespace=NS)
                except Exception as exc:  # counted: the target is none
                    with lock:
                        errors.append(exc)
                else:
                    t1 = time.perf_counter()
                    with lock:
                        acks.append(t1)
                        latencies.append(t1 - t0)
                        acked.append(row)
                i += 1

        threads = [threading.Thread(target=write, args=(n,), daemon=True) for n in range(THREADS)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        end = start + seconds
        next_change = start + period
        while (now := time.perf_counter()) < end:
            time.sleep(max(0.0, min(next_change, end) - now))
            if changer is not None and time.perf_counter() < end:
                changer.change()
                next_change += period
        stop.set()
        stopped = time.perf_counter()
        for t in threads:
            t.join(60)
        failovers = replicas.failovers
    times = sorted([start, *acks, stopped])
    gap = max(b - a for a, b in zip(times, times[1:]))
    found = stored(hosts[0], prefix)
    return {"mode": mode, "seconds": stopped - start, "changes": changer.step if changer else 0,
            "writes": len(acks), "per_s": len(acks) / (stopped - start),
            "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
            "gap_ms": gap * 1000, "errors": len(errors), "lost": len(set(acked) - set(found)),
            "duplicated": sum(len(ts) > 1 for ts in found.values()), "failovers": failovers,
            "change_ms": max(changer.took, default=0.0) * 1000 if changer else 0.0,
            "error_texts": [f"{type(e).__name__}: {e}" for e in errors[:5]]}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=None, help="seconds of writing per row")
    p.add_argument("--period", type=float, default=None, help="seconds between two changes")
    args = p.parse_args()
    seconds = args.seconds or (QUICK_SECONDS if args.quick else SECONDS)
    period = args.period or (QUICK_PERIOD if args.quick else PERIOD)
    with LocalCluster(5, shared_data=True) as cluster:
        setup(cluster.hosts[0])
        run(cluster, "static", min(seconds, 1.0), period, prefix="warmup")  # brokers and storage warm
        rows = [run(cluster, mode, seconds, period) for mode in ("static", "drain", "cut")]
    table = print_table(
        f"{THREADS} threads writing through Replicas for {seconds:g} s; from 'drain' on, the hosts change every "
        f"{period:g} s (add, remove the write host, replace it); gap = longest time without an acknowledged "
        "write; ratio: writes per second vs static",
        rows, ["mode", "changes", "writes", "per_s", "p50_ms", "p99_ms", "gap_ms", "change_ms", "failovers",
               "errors", "lost", "duplicated"], ratio_of="per_s")
    for row in table:
        clean = row["errors"] == row["lost"] == row["duplicated"] == 0
        print(f"{row['mode']:6}: 0 errors/lost/duplicated: {'met' if clean else 'NOT met'}"
              + (f" ({row['error_texts']})" if row["error_texts"] else ""))
    write_json("bench_membership", {"quick": args.quick, "threads": THREADS, "seconds": seconds,
                                    "period_s": period, "results": table}, args.json)


if __name__ == "__main__":
    main()
