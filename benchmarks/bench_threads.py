"""Aggregate calls per second of 1, 2, 4 and 8 client threads sharing one Resources over 4 brokers.

Four stand-in brokers share one SQLite file (through the one storage process
that serves it, see ``docs/guide/broker.rst``); every thread calls
``unicast('get_cell', ...)`` (reads), then ``unicast('set_cell', ...)``
(writes, one transaction each), in a loop for ``DURATION`` seconds through
the same :class:`~htcluster.Resources`.  The ratio is aggregate calls/s
against one thread of the same operation.  On a machine with few cores the
brokers, the storage process and the client compete for them, so this shows
contention (the GIL, the pool lock, the broker-to-storage hop) more than the
brokers' capacity.

Run ``python benchmarks/bench_threads.py`` (``--quick`` for a short run).
"""
from __future__ import annotations

import threading
import time
from typing import Any

from _common import parser, print_table, summarize, write_json

from htcluster import Resources
from htcluster.testing import LocalCluster
from htcluster.types import Cell, Key

THREAD_COUNTS = (1, 2, 4, 8)
#: Seconds each thread count runs.
DURATION, QUICK_DURATION = 3.0, 0.4
BROKERS = 4
NS, TABLE, ROW, COLUMN = "bench", "threads", "row1", "c"


def read(rs: Resources, n: int) -> None:
    """One read: the newest value of one cell."""
    rs.unicast("get_cell", TABLE, ROW, COLUMN, namespace=NS)


def write(rs: Resources, n: int) -> None:
    """One write: one cell, in a row of its own, flushed before the call returns."""
    rs.unicast("set_cell", TABLE, Cell(Key(f"w{n:09d}", COLUMN, ""), b"value"), namespace=NS)


OPERATIONS = {"get_cell": read, "set_cell": write}


def run(rs: Resources, operation: str, threads: int, duration: float) -> dict[str, Any]:
    """Run ``threads`` threads of ``operation`` for ``duration`` seconds; return calls/s and latency percentiles."""
    call = OPERATIONS[operation]
    counter = iter(range(10**9))
    samples: list[list[float]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    start_line = threading.Barrier(threads + 1)
    deadline = [0.0]

    def loop(mine: list[float]) -> None:
        start_line.wait(30)
        while (t0 := time.perf_counter()) < deadline[0]:
            try:
                call(rs, next(counter))
            except Exception as exc:
                errors.append(exc)
            mine.append(time.perf_counter() - t0)

    workers = [threading.Thread(target=loop, args=(s,), daemon=True) for s in samples]
    for w in workers:
        w.start()
    deadline[0] = time.perf_counter() + duration
    start_line.wait(30)
    begin = time.perf_counter()
    for w in workers:
        w.join(duration + 30)
    flat = [x for s in samples for x in s]
    return {"operation": operation, "threads": threads, **summarize(flat, time.perf_counter() - begin),
            "errors": len(errors)}


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    duration = QUICK_DURATION if args.quick else DURATION
    tables = {}
    with LocalCluster(BROKERS, shared_data=True) as cluster:
        with Resources(cluster.hosts, size=max(THREAD_COUNTS), max_overflow=0) as rs:
            rs.unicast("hql_query", f"CREATE NAMESPACE {NS} IF NOT EXISTS", namespace="/")
            rs.unicast("hql_query", f"DROP TABLE IF EXISTS {TABLE}", namespace=NS)
            rs.unicast("hql_query", f"CREATE TABLE {TABLE} ({COLUMN})", namespace=NS)
            rs.unicast("set_cell", TABLE, Cell(Key(ROW, COLUMN, ""), b"value"), namespace=NS)
            rs.broadcast("status")
            rows = {op: [run(rs, op, threads, duration) for threads in THREAD_COUNTS] for op in OPERATIONS}
    for op, op_rows in rows.items():
        tables[op] = print_table(
            f"unicast({op!r}) from N threads over {BROKERS} brokers, {duration:g} s each; "
            "ratio = aggregate calls/s vs 1 thread",
            op_rows, ["operation", "threads", "calls", "per_s", "p50_ms", "p99_ms", "errors"], ratio_of="per_s")
    write_json("bench_threads", {"quick": args.quick, "brokers": BROKERS, "duration_s": duration,
                                 "results": [row for op_rows in tables.values() for row in op_rows]}, args.json)


if __name__ == "__main__":
    main()
