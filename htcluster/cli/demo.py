"""The main job, end to end on one machine (``htcluster demo``).

1. Start a local cluster: three replica brokers over one SQLite file and two
   shard brokers with a file each, on free loopback ports.
2. Load an Apache log (a file, or a generated one) into ``logs/LogDb``
   through ``Replicas.mutator``, SIGKILLing the primary replica half-way
   while a flush is in flight to it, and through ``Shards.mutator``, routed
   by client address so that one client's rows stay on one shard (every
   shard's batch of a flush sent at once).
3. Query, with timings: requests per response code, the ten most requested
   paths, every request of the busiest client by row-key prefix, and a count
   per response code broadcast to the shards.
4. Check that every acknowledged cell is found again, report failovers and
   per-host latency, and stop every broker (also on errors and Ctrl-C).
"""
from __future__ import annotations

import collections
import functools
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, TypeVar

from ..errors import ConfigError
from . import logload
from .status import check_hosts, format_status, render_table
from ..types import ScanSpec
from .weblog import GENERATED_LINES, TABLE, LogEntry, LogStats, generate_lines, iter_entries, open_log, request_path

if TYPE_CHECKING:  # pragma: no cover
    from .. import Replicas, Shards
    from ..testing import LocalCluster

__all__ = ["NAMESPACE", "run_demo"]

#: Namespace the demo writes into.
NAMESPACE = "logs"
REPLICAS = 3
SHARDS = 2
#: Seconds the killer thread waits at most for the in-flight batch's checkout.
KILL_WAIT = 5.0

T = TypeVar("T")
Echo = Callable[[str], Any]


def _timed(echo: Echo, title: str, fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - start
    echo(f"\n{title}  [{seconds * 1000:.1f} ms]")
    return value, seconds


def _values(result: Any) -> list[str]:
    return [(cell.value or b"").decode("utf-8", "replace") for cell in result.cells or []]


def _count_cells(scan: Iterable[Any]) -> int:
    """Count distinct (row, column, timestamp) cells: a retried write's second revision counts once."""
    return len({(c.key.row, c.key.column_family, c.key.column_qualifier, c.key.timestamp) for c in scan})


def _read_entries(input_: Optional[str], count: int, stats: LogStats) -> list[LogEntry]:
    if input_ is None:
        return list(iter_entries(generate_lines(count), stats))
    with open_log(input_) as lines:
        return list(iter_entries(lines, stats))


def _killing_writer(write: logload.Writer, replicas: "Replicas", cluster: "LocalCluster", half: int,
                    echo: Echo) -> logload.Writer:
    """Wrap ``write`` so that the primary replica dies while the batch crossing ``half`` requests is in flight.

    Just before that batch is sent, the primary (``cluster[0]``) is frozen
    (SIGSTOP), so the request reaches its socket but gets no answer; another
    thread SIGKILLs it once the batch's connection is checked out.  The
    write then fails after it was sent, and ``Replicas`` repeats it on the
    next replica: safe, because every cell carries its request time as its
    timestamp, so a repeat writes the same versions (design.md, "Choosing a host").
    """
    written, primary = 0, cluster.hosts[0]

    def kill_once_checked_out() -> None:
        deadline = time.monotonic() + KILL_WAIT
        while replicas[primary].in_use == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)  # the request is written right after the checkout
        cluster.kill(0)

    def write_batch(batch: list[LogEntry]) -> int:
        nonlocal written
        if written >= half or written + len(batch) < half:
            cells = write(batch)
        else:
            cluster.pause(0)
            killer = threading.Thread(target=kill_once_checked_out, name="demo-killer", daemon=True)
            killer.start()
            before = replicas.failovers
            try:
                cells = write(batch)
            finally:
                killer.join(KILL_WAIT + 1.0)
            echo(f"  killed the primary replica {primary} (SIGKILL) after {written:,} requests, "
                 + (f"while a set_cells of {cells:,} cells was in flight to it: Replicas repeated it "
                    f"on the next replica" if replicas.failovers > before else "between two batches"))
        written += len(batch)
        return cells
    return write_batch


def run_demo(input_: Optional[str] = None, count: int = GENERATED_LINES, echo: Echo = print) -> bool:
    """Run the demo and print what happens.

    :param input_: an Apache log (plain or gzip; ``'-'`` for stdin), or
        ``None`` for a generated one of ``count`` lines.
    :param count: lines of the generated log.
    :param echo: where the report goes, one string per call.
    :returns: ``True`` when every acknowledged cell was found again.
    :raises OSError: the input cannot be read.
    :raises ConfigError: no line of the input is an Apache log line.
    :raises RuntimeError: a broker did not start.
    :raises HtclusterError: the cluster failed beyond what failover covers.
    """
    from .. import Replicas, Shards
    from ..testing import LocalCluster

    started = time.perf_counter()
    stats = LogStats()
    entries = _read_entries(input_, count, stats)
    if not entries:  # before any broker starts: there is nothing to show
        raise ConfigError(f"nothing to load in {input_}: " + (
            f"none of its {stats.lines:,} lines is an Apache access log line ({stats.examples[0]})"
            if stats.examples else "it is empty") + "; give the demo an Apache access log, plain or gzip")
    echo(f"input: {input_ or f'a generated log ({count} lines)'}: {stats.lines:,} lines, "
         f"{stats.malformed:,} malformed")
    replica_cluster = shard_cluster = replicas = shards = None
    try:
        replica_cluster = LocalCluster(REPLICAS, shared_data=True)
        shard_cluster = LocalCluster(SHARDS, shared_data=False)
        echo(f"replicas (one data file): {', '.join(replica_cluster.hosts)}")
        echo(f"shards (a file each):     {', '.join(shard_cluster.hosts)}")
        replicas = Replicas(replica_cluster.hosts)
        shards = Shards([(host, host) for host in shard_cluster.hosts])
        logload.ensure_logdb(functools.partial(replicas.call, write=True), NAMESPACE)
        for pool in shards.pools.values():
            logload.ensure_logdb(pool.call, NAMESPACE)

        echo("\nloading through Replicas ...")
        with replicas.mutator(TABLE, namespace=NAMESPACE) as mutator:
            writer = _killing_writer(logload.mutator_writer(mutator), replicas, replica_cluster,
                                     len(entries) // 2, echo)
            to_replicas = logload.load(entries, writer)
        echo(f"  {to_replicas.cells:,} cells acknowledged in {to_replicas.seconds:.2f} s "
             f"({to_replicas.cells_per_s:,.0f} cells/s)")
        echo("loading through Shards (located by client address) ...")
        located = shards
        with shards.mutator(TABLE, namespace=NAMESPACE,
                            key=lambda row: located.locate(logload.row_client(row))) as mutator:
            to_shards = logload.load(entries, logload.mutator_writer(mutator))
        echo(f"  {to_shards.cells:,} cells acknowledged in {to_shards.seconds:.2f} s "
             f"({to_shards.cells_per_s:,.0f} cells/s)")

        timings = _queries(replicas, shards, entries, echo)

        found_r = _count_cells(replicas.scan(TABLE, ScanSpec(versions=1), namespace=NAMESPACE))
        found_s = sum(_count_cells(pool.scan(TABLE, ScanSpec(versions=1), namespace=NAMESPACE))
                      for pool in shards.pools.values())
        acknowledged, found = to_replicas.cells + to_shards.cells, found_r + found_s
        down = list(replicas.health.down())
        echo("\nsummary")
        echo(render_table(("", "value"), [
            ("lines read", f"{stats.lines:,}"),
            ("lines skipped (malformed)", f"{stats.malformed:,}"),
            ("cells acknowledged (replicas + shards)",
             f"{acknowledged:,} ({to_replicas.cells:,} + {to_shards.cells:,})"),
            ("cells found afterwards", f"{found:,} ({found_r:,} + {found_s:,})"),
            ("failovers (replicas + shards)",
             f"{replicas.failovers + shards.failovers} ({replicas.failovers} + "
             f"{shards.failovers})" + (f", {', '.join(down)} marked down" if down else "")),
            ("load through Replicas", f"{to_replicas.seconds:.2f} s, {to_replicas.cells_per_s:,.0f} cells/s"),
            ("load through Shards", f"{to_shards.seconds:.2f} s, {to_shards.cells_per_s:,.0f} cells/s"),
            *((f"query: {name}", f"{seconds * 1000:.1f} ms") for name, seconds in timings),
            ("total time", f"{time.perf_counter() - started:.2f} s"),
        ]))
        echo("\nper-host latency (status() through the pools used above)")
        echo(format_status(check_hosts(replicas, timeout=2.0) + check_hosts(shards.resources, timeout=2.0)))
        ok = acknowledged == found and to_replicas.cells == found_r and to_shards.cells == found_s
        echo("\nOK: every acknowledged cell was found" if ok else
             f"\nFAILED: {acknowledged:,} cells acknowledged but {found:,} found")
        return ok
    finally:
        for closable in (replicas, shards, replica_cluster, shard_cluster):
            if closable is not None:
                closable.close()


def _queries(replicas: "Replicas", shards: "Shards", entries: list[LogEntry], echo: Echo) -> list[tuple[str, float]]:
    """Run the four queries, print their answers, return ``(name, seconds)`` pairs."""
    timings = []
    codes, seconds = _timed(echo, "requests per response code (Replicas)", lambda: collections.Counter(
        _values(replicas.call("hql_query", f"SELECT ResponseCode FROM {TABLE}", namespace=NAMESPACE))))
    echo(render_table(("code", "requests"), sorted(codes.items()), numeric=(1,)))
    timings.append(("per response code", seconds))

    paths, seconds = _timed(echo, "ten most requested paths (Replicas)", lambda: collections.Counter(
        map(request_path, _values(replicas.call("hql_query", f"SELECT Request FROM {TABLE}", namespace=NAMESPACE)))))
    echo(render_table(("path", "requests"), paths.most_common(10), numeric=(1,)))
    timings.append(("top ten paths", seconds))

    busiest = collections.Counter(e.client for e in entries).most_common(1)
    ip = busiest[0][0] if busiest else "127.0.0.1"
    query = f'SELECT * FROM {TABLE} WHERE ROW =^ "{ip} "'
    shard = shards.locate(ip)
    result, seconds = _timed(echo, f"every request of {ip} ({query!r} on shard {shard})",
                             lambda: shards.unicast(shard, "hql_query", query, namespace=NAMESPACE))
    requests = {c.key.row: c.value.decode("utf-8", "replace") for c in result.cells
                if c.key.column_family == "Request"}
    echo(f"{len(requests):,} requests, {len(result.cells):,} cells; the first three:")
    echo(render_table(("row", "request"), list(requests.items())[:3]))
    timings.append(("one client by row prefix", seconds))

    answers, seconds = _timed(echo, "count per response code, broadcast to the shards", lambda: (
        shards.resources.broadcast("hql_query", f"SELECT ResponseCode FROM {TABLE}", namespace=NAMESPACE)))
    per_host = {host: collections.Counter(_values(answer)) for host, answer in answers.items()}
    all_codes = sorted(set().union(*per_host.values()))
    echo(render_table(("code", *per_host, "total"),
                      [(code, *(c[code] for c in per_host.values()), sum(c[code] for c in per_host.values()))
                       for code in all_codes], numeric=tuple(range(1, len(per_host) + 2))))
    same = sum(per_host.values(), collections.Counter()) == codes
    echo("shards and replicas agree" if same else "shards and replicas DISAGREE")
    timings.append(("broadcast count to shards", seconds))
    return timings
