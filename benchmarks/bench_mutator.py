"""Bulk writes of a real web log: a broker-side mutator, set_cells batches, Replicas.mutator, Shards.mutator.

Four stand-in brokers, a data file each, started once; every row writes the
same cells into a fresh table (so no row pays for the rows of another).  The
cells are those ``htcluster load`` writes: the real access log of
``../shared/data/access.log.gz`` (3,282 requests, 7 cells each), repeated as
needed (line numbers go on counting, so every row key is new), parsed by
:mod:`htcluster.cli.weblog` before the clock starts.  Rows:

* (a) a broker-side mutator on one persistent connection of a raw Thrift
  client (TFramedTransport, accelerated binary protocol): ``mutator_open``,
  then ``mutator_set_cells`` + ``mutator_flush`` per batch of ``BATCH`` cells,
  ``mutator_close``: the baseline, broker 0;
* (a2) the same through a :class:`~htcluster.Resource` (upstream-compatible);
* (b) hand-made ``set_cells`` batches of ``BATCH`` cells through
  :meth:`Pool.call <htcluster.Pool.call>`, broker 0;
* (c) :meth:`Replicas.mutator <htcluster.Replicas.mutator>` (``max_cells=BATCH``)
  fed one request (7 cells) per ``set_cells`` call, as an application writing
  a log line by line does; the four brokers as replicas, broker 0 primary;
* (c2) the same with the cells' timestamps removed, so that the mutator
  stamps them at each flush;
* (d) :meth:`Shards.mutator <htcluster.Shards.mutator>` over the four brokers
  as four shards (``locate(row)``), fed alike: every flush sends the four
  shards' batches at once.

Beside cells/s: client CPU per cell (``time.process_time``: the brokers run
in other processes) and broker CPU per cell (user + system time of the broker
and storage processes, from ``/proc``), and how many cores the row kept busy
in all (client + brokers, per wall second).  Best of ``ROUNDS`` interleaved
rounds (the machine may be shared: the best round is the least disturbed),
with the median wall time beside it.  Targets (issue 19): (c) >= 0.9x (a);
(d) >= 2x (c) when the brokers have cores to spare; on a 2-core machine (d)
is bounded by the cores: the ``cores`` column says how much of them a row
used.

``--chaos``: loading through ``Replicas.mutator`` (3 brokers, one data file)
and through ``Shards.mutator`` (2 shards of 2 brokers, a data file per shard)
while another thread kill -9s (then restarts) or SIGSTOPs (then resumes) one
member at a time, most often the one the last flush went to.  The cells are sent without timestamps, so the mutator
stamps them: a batch repeated under a new stamp would show as a duplicate.
Cells returned in a :class:`~htcluster.errors.FlushError` are sent again.
Reports acknowledged, returned (in errors, then resent), found, lost
(acknowledged, not found: target 0) and duplicated (stored under two
timestamps: target 0).

Run ``python benchmarks/bench_mutator.py`` (``--quick`` for a smoke run,
``--cells N``, ``--chaos [--seconds S]``).
"""
from __future__ import annotations

import itertools
import os
import random
import statistics
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from _common import parser, print_table, write_json
from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
from thrift.transport.TSocket import TSocket
from thrift.transport.TTransport import TFramedTransport

from htcluster import Backoff, FlushError, Pool, Replicas, Resource, Shards
from htcluster._thrift import HqlService
from htcluster.events import CallStarted
from htcluster.cli.weblog import generate_lines, iter_entries, open_log, schema
from htcluster.testing import LocalCluster
from htcluster.types import Cell, Key, ScanSpec

#: The real log, next to the repository (``../shared/data``).
LOG = Path(__file__).resolve().parents[2] / "shared" / "data" / "access.log.gz"
CELLS, QUICK_CELLS = 200_000, 7_000
#: Cells per batch: the mutators' ``max_cells``, the hand-made batches' size.
BATCH, QUICK_BATCH = 10_000, 1_000
ROUNDS, QUICK_ROUNDS = 5, 1
SHARDS = 4
NS = "bench"
#: Chaos: seconds of loading per case, seconds between actions (about).
CHAOS_SECONDS, QUICK_CHAOS_SECONDS, PERIOD, QUICK_PERIOD = 20.0, 1.5, 1.0, 0.4
CHAOS_BATCH, QUICK_CHAOS_BATCH = 2_000, 300


# ------------------------------------------------------------------ input


def log_lines() -> list[str]:
    """The lines of the real log (a generated one if the shared data is missing)."""
    if LOG.exists():
        with open_log(str(LOG)) as lines:
            return list(lines)
    return list(generate_lines(3282))


def requests(stamped: bool = True) -> Iterator[list[Cell]]:
    """The log repeated without end, one request's LogDb cells at a time, as ``htcluster load`` writes them.

    :param stamped: keep the request time as each cell's timestamp (``False``: no timestamp).
    """
    lines = log_lines()
    for entry in iter_entries(itertools.chain.from_iterable(itertools.repeat(lines))):
        cells = entry.cells()
        if not stamped:
            cells = [Cell(Key(c.key.row, c.key.column_family, c.key.column_qualifier, None, None, c.key.flag),
                          c.value) for c in cells]
        yield cells


def log_cells(n: int, stamped: bool = True) -> list[Cell]:
    """The first ``n`` cells of :func:`requests`."""
    return list(itertools.islice(itertools.chain.from_iterable(requests(stamped)), n))


def chunks(cells: Sequence[Cell], size: int) -> list[Sequence[Cell]]:
    return [cells[i:i + size] for i in range(0, len(cells), size)]


# ------------------------------------------------------------------ CPU of other processes


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu(pids: Sequence[int]) -> float:
    """Seconds of user + system CPU the processes ``pids`` used so far (NaN where /proc is missing)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


def server_pids(cluster: LocalCluster) -> list[int]:
    return [b.process.pid for b in cluster if b.process is not None] + \
        [s.pid for s in cluster.storages if s.pid is not None]


# ------------------------------------------------------------------ rows


def raw_client(address: str) -> tuple[HqlService.Client, TSocket]:
    host, port = address.rsplit(":", 1)
    sock = TSocket(host, int(port))
    sock.setTimeout(120_000)  # milliseconds
    transport = TFramedTransport(sock)
    transport.open()
    return HqlService.Client(TBinaryProtocolAccelerated(transport)), sock


def create_table(hosts: Sequence[str], table: str) -> None:
    for host in hosts:
        with Resource(host, socket_timeout=60.0) as r:
            if not r.namespace_exists(NS):
                r.namespace_create(NS)
            r.table_create(r.mns[NS], table, schema())


Writer = Callable[[str], dict[str, Any]]


def rows(cluster: LocalCluster, cells: list[Cell], unstamped: list[Cell], batch: int, pool: Pool,
         resource: Resource, raw: HqlService.Client, replicas: Replicas, shards: Shards) -> dict[str, Writer]:
    """``{row name: write(table) -> extra figures}``; each writes ``cells`` into ``table``."""
    batches = chunks(cells, batch)
    requests = chunks(cells, 7)
    raw_requests = chunks(unstamped, 7)

    def broker_mutator(client: Any, ns: int) -> Callable[[str], dict[str, Any]]:
        def write(table: str) -> dict[str, Any]:
            m = client.mutator_open(ns, table, 0, 0)
            for b in batches:
                client.mutator_set_cells(m, b)
                client.mutator_flush(m)
            client.mutator_close(m)
            return {}
        return write

    def pool_batches(table: str) -> dict[str, Any]:
        for b in batches:
            pool.call("set_cells", table, b, namespace=NS)
        return {}

    def mutator_of(target: Any, feed: list[Sequence[Cell]]) -> Callable[[str], dict[str, Any]]:
        def write(table: str) -> dict[str, Any]:
            with target.mutator(table, namespace=NS, max_cells=batch, max_bytes=1 << 30) as m:
                set_cells = m.set_cells
                for request in feed:
                    set_cells(request)
            stats = m.stats()
            assert stats["acknowledged"] == len(cells), stats
            return {"flushes": stats["flushes"], "failovers": stats["failovers"]}
        return write

    return {
        "(a) broker mutator, raw Thrift": broker_mutator(raw, raw.namespace_open(NS)),
        "(a2) broker mutator, Resource": broker_mutator(resource, resource.mns[NS]),
        "(b) set_cells batches, Pool": pool_batches,
        "(c) Replicas.mutator": mutator_of(replicas, requests),
        "(c2) Replicas.mutator, unstamped": mutator_of(replicas, raw_requests),
        f"(d) Shards.mutator, {len(shards)} shards": mutator_of(shards, requests),
    }


def count_cells(hosts: Sequence[str], table: str) -> int:
    """Cells stored in ``table`` over ``hosts`` (one version each)."""
    total = 0
    for host in hosts:
        with Pool(host, socket_timeout=120.0) as pool:
            total += sum(1 for _ in pool.scan(table, ScanSpec(versions=1, keys_only=True), namespace=NS))
    return total


def throughput(n: int, batch: int, rounds: int) -> list[dict[str, Any]]:
    cells, unstamped = log_cells(n), log_cells(n, stamped=False)
    samples: dict[str, list[dict[str, float]]] = {}
    with LocalCluster(SHARDS, shared_data=False) as cluster:
        hosts, pids = cluster.hosts, server_pids(cluster)
        create_table(hosts, "warmup")
        raw, sock = raw_client(hosts[0])
        with Pool(hosts[0], socket_timeout=120.0) as pool, Resource(hosts[0], socket_timeout=120.0) as resource, \
                Replicas(hosts, socket_timeout=120.0) as replicas, \
                Shards([(h, f"s{i}") for i, h in enumerate(hosts)], socket_timeout=120.0) as shards:
            writers = rows(cluster, cells, unstamped, batch, pool, resource, raw, replicas, shards)
            for write in writers.values():  # warm up every path (connections, namespaces) off the clock
                write("warmup")
            for rnd in range(rounds):
                for i, (name, write) in enumerate(writers.items()):
                    table = f"t{rnd}_{i}"
                    create_table(hosts, table)
                    w0, c0, b0 = time.perf_counter(), time.process_time(), process_cpu(pids)
                    extra = write(table)
                    wall, cpu, broker = (time.perf_counter() - w0, time.process_time() - c0,
                                         process_cpu(pids) - b0)
                    if rnd == 0:  # every cell is there, once
                        found = count_cells(hosts if name.startswith("(d)") else hosts[:1], table)
                        assert found == n, f"{name}: {found:,} cells found, {n:,} written"
                    samples.setdefault(name, []).append({
                        "wall": wall, "cpu": cpu, "broker": broker, **extra})
        sock.close()
    out = []
    for name, runs in samples.items():
        best = min(runs, key=lambda r: r["wall"])  # the round least disturbed by other load on the machine
        wall, cpu, broker = best["wall"], best["cpu"], best["broker"]
        out.append({"row": name, "cells": n, "seconds": round(wall, 3), "cells_per_s": round(n / wall),
                    "median_s": round(statistics.median(r["wall"] for r in runs), 3),
                    "client_us_per_cell": round(cpu / n * 1e6, 2), "broker_us_per_cell": round(broker / n * 1e6, 2),
                    "cores": round((cpu + broker) / wall, 2),
                    "flushes": runs[0].get("flushes", -(-n // batch)), "failovers": sum(
                        r.get("failovers", 0) for r in runs)})
    return out


# ------------------------------------------------------------------ chaos


class Chaos(threading.Thread):
    """Every ``period`` seconds (about), kill -9 + restart or SIGSTOP + SIGCONT one member, one at a time.

    A killed member is down for ``period / 2`` seconds, a stopped one for ``1.5 * period`` (with the
    socket timeout of 1 s, a flush in flight to it times out and goes to another host, while the
    stopped broker may still apply it when it resumes).  Three times out of four the victim is the
    member the last ``set_cells`` went to
    (:meth:`watch` sees the calls start), so that most faults hit a flush.
    """

    def __init__(self, clusters: Sequence[LocalCluster], period: float, seed: int) -> None:
        super().__init__(name="chaos", daemon=True)
        self.members = [(c, i) for c in clusters for i in range(len(c))]
        self.period, self.rng = period, random.Random(seed)
        self.stop = threading.Event()
        self.actions: list[str] = []
        self.last_written: Optional[str] = None

    def watch(self, event: object) -> None:
        """A listener of the routing object: remember the host of the last ``set_cells`` started."""
        if isinstance(event, CallStarted) and event.method == "set_cells":
            self.last_written = event.host

    def run(self) -> None:
        while not self.stop.wait(self.period * (0.5 + self.rng.random())):
            busy = [(c, i) for c, i in self.members if c[i].address == self.last_written]
            cluster, i = busy[0] if busy and self.rng.random() < 0.75 else self.rng.choice(self.members)
            if self.rng.random() < 0.5:
                self.actions.append(f"kill -9 {cluster[i].address}")
                cluster.kill(i)
                time.sleep(self.period * 0.5)
                cluster.start(i)
            else:  # stopped for longer than the socket timeout: a flush to it times out and fails over
                self.actions.append(f"SIGSTOP {cluster[i].address}")
                cluster.pause(i)
                time.sleep(self.period * 1.5)
                cluster.resume(i)


def chaos_load(target: Any, clusters: Sequence[LocalCluster], table: str, seconds: float, period: float,
               batch: int, scan: Callable[[], Iterator[Cell]]) -> dict[str, Any]:
    """Load unstamped log cells through ``target.mutator`` for ``seconds`` under chaos; count what is found."""
    given: set[tuple[str, str]] = set()
    outstanding: list[Cell] = []  # returned in a FlushError, not yet acknowledged
    returned = errors = 0
    error_texts: list[str] = []
    chaos = Chaos(clusters, period, seed=19)
    target.listeners.register(chaos.watch)
    start = time.perf_counter()
    with target.mutator(table, namespace=NS, max_cells=batch) as m:
        chaos.start()
        try:
            feed = requests(stamped=False)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                cells = outstanding or next(feed, None)
                if cells is None:
                    break
                if cells is not outstanding:
                    given.update((c.key.row, c.key.column_family) for c in cells)
                outstanding = []
                try:
                    m.set_cells(cells)
                except FlushError as exc:
                    errors += 1
                    returned += len(exc.cells)
                    outstanding = exc.cells
                    error_texts.append(str(exc)[:200])
        finally:
            chaos.stop.set()
            chaos.join()
            target.listeners.unregister(chaos.watch)
        if outstanding:
            m.set_cells(outstanding)  # the cluster is whole again
            outstanding = []
        try:
            m.flush()
        except FlushError as exc:
            errors += 1
            outstanding = exc.cells
    wall = time.perf_counter() - start
    stats = m.stats()
    for cluster in clusters:  # every member up for the check
        for i, broker in enumerate(cluster):
            if not broker.running:
                cluster.start(i)
            elif broker.paused:
                cluster.resume(i)
    unacknowledged = {(c.key.row, c.key.column_family) for c in outstanding}
    acknowledged = given - unacknowledged
    stamps: dict[tuple[str, str], set[int]] = {}
    for cell in scan():
        stamps.setdefault((cell.key.row, cell.key.column_family), set()).add(cell.key.timestamp)
    return {"seconds": round(wall, 1), "actions": len(chaos.actions), "acknowledged": len(acknowledged),
            "cells_per_s": round(len(acknowledged) / wall), "returned": returned, "errors": errors,
            "found": len(stamps), "lost": len(acknowledged - set(stamps)),
            "duplicated": sum(len(ts) > 1 for ts in stamps.values()),
            "failovers": stats["failovers"], "flushes": stats["flushes"],
            "action_log": chaos.actions, "error_texts": error_texts[:5]}


def chaos_run(seconds: float, period: float, batch: int) -> list[dict[str, Any]]:
    options = dict(socket_timeout=1.0, connect_timeout=1.0, backoff=Backoff(base=0.2, cap=1.0), call_timeout=60.0)
    out = []
    with LocalCluster(3, shared_data=True) as cluster:
        create_table(cluster.hosts[:1], "chaos")
        with Replicas(cluster.hosts, **options) as replicas:  # type: ignore[arg-type]
            row = chaos_load(replicas, [cluster], "chaos", seconds, period, batch,
                             lambda: replicas.scan("chaos", ScanSpec(), namespace=NS, timeout=120.0))
        out.append({"case": "Replicas.mutator, 3 brokers", **row})
    with LocalCluster(2, shared_data=True) as one, LocalCluster(2, shared_data=True) as two:
        create_table([one.hosts[0], two.hosts[0]], "chaos")
        pairs = [(h, "s0") for h in one.hosts] + [(h, "s1") for h in two.hosts]
        with Shards(pairs, **options) as shards:  # type: ignore[arg-type]
            row = chaos_load(shards, [one, two], "chaos", seconds, period, batch,
                             lambda: shards.scan_all("chaos", ScanSpec(), namespace=NS, timeout=120.0))
        out.append({"case": "Shards.mutator, 2 shards x 2 brokers", **row})
    return out


# ------------------------------------------------------------------ main


def verdicts(table: list[dict[str, Any]]) -> dict[str, Any]:
    by = {r["row"][:4]: r for r in table}
    a, c, d = by["(a) "], by["(c) "], by["(d) "]
    c_a = c["cells_per_s"] / a["cells_per_s"]
    d_c = d["cells_per_s"] / c["cells_per_s"]
    return {"c_over_a": round(c_a, 3), "c_over_a_target": 0.9, "c_over_a_met": c_a >= 0.9,
            "d_over_c": round(d_c, 3), "d_over_c_target": 2.0, "d_over_c_met": d_c >= 2.0,
            "cores": os.cpu_count(), "c_cores_used": c["cores"], "d_cores_used": d["cores"]}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=None, help="cells per row")
    p.add_argument("--chaos", action="store_true", help="kill -9 and SIGSTOP members while loading")
    p.add_argument("--seconds", type=float, default=None, help="--chaos: seconds of loading per case")
    args = p.parse_args()
    if args.chaos:
        seconds = args.seconds or (QUICK_CHAOS_SECONDS if args.quick else CHAOS_SECONDS)
        period = QUICK_PERIOD if args.quick else PERIOD
        batch = QUICK_CHAOS_BATCH if args.quick else CHAOS_BATCH
        results = chaos_run(seconds, period, batch)
        table = print_table(
            f"loading unstamped log cells through the mutators for {seconds:g} s while one member at a time is "
            f"killed (-9) or stopped (SIGSTOP) every ~{period:g} s; socket timeout 1 s; max_cells {batch:,}; "
            "targets: lost 0, duplicated 0; ratio = cells/s vs Replicas",
            results, ["case", "seconds", "actions", "acknowledged", "cells_per_s", "returned", "found", "lost",
                      "duplicated", "failovers"], ratio_of="cells_per_s")
        clean = all(r["lost"] == 0 and r["duplicated"] == 0 for r in table)
        print(f"lost 0 and duplicated 0: {'met' if clean else 'NOT met'}")
        write_json("bench_mutator_chaos", {"quick": args.quick, "seconds": seconds, "period_s": period,
                                           "max_cells": batch, "met": clean, "results": table}, args.json)
        return
    n = args.cells or (QUICK_CELLS if args.quick else CELLS)
    batch = QUICK_BATCH if args.quick else BATCH
    rounds = QUICK_ROUNDS if args.quick else ROUNDS
    table = print_table(
        f"{n:,} cells of the web log per row ({'real log' if LOG.exists() else 'generated log'}), "
        f"batches of {batch:,} cells, best of {rounds} interleaved rounds on {SHARDS} brokers "
        f"({os.cpu_count()} cores); us per cell of client and broker CPU; cores = (client + broker CPU) / wall; "
        "ratio = cells/s vs (a)",
        throughput(n, batch, rounds),
        ["row", "seconds", "median_s", "cells_per_s", "client_us_per_cell", "broker_us_per_cell", "cores", "flushes"],
        ratio_of="cells_per_s")
    v = verdicts(table)
    print(f"(c)/(a) = {v['c_over_a']:.2f} (target >= 0.9: {'met' if v['c_over_a_met'] else 'NOT met'}); "
          f"(d)/(c) = {v['d_over_c']:.2f} (target >= 2 with cores to spare: "
          f"{'met' if v['d_over_c_met'] else 'NOT met'}; {v['cores']} cores, (c) kept {v['c_cores_used']:.2f} "
          f"busy, (d) {v['d_cores_used']:.2f})")
    write_json("bench_mutator", {"quick": args.quick, "cells": n, "batch": batch, "rounds": rounds,
                                 "log": str(LOG) if LOG.exists() else "generated", "verdicts": v,
                                 "results": table}, args.json)


if __name__ == "__main__":
    main()
