"""A cluster-wide restart under load: connection storms, with and without ``max_connecting``.

Three stand-in brokers on one data file (replicas), 64 client threads reading
through one ``Replicas`` as fast as they can.  After a steady phase, all
three brokers are killed and started again at once (``kill -9``, then the
same ports); the threads keep calling.  For each configuration, side by side:

* ``peak_connecting``: the most connects in progress at once per host
  (``stats()["pool"]["connecting_peak"]``, the worst host; target <= ``max_connecting``);
* ``opened_1s``: connections opened per host in the first second after the
  brokers listen again (the mean over hosts, and the worst host);
* ``recover_s``: seconds from the moment the brokers listen again (the first
  connection opened after the kill) until
  throughput is back to 90 % of the steady phase's (over a sliding 0.2 s window);
* ``errors``: calls that raised (``NoHostAvailable`` while all three were down
  is expected: the brokers are down for a moment).

Rows: the default (``max_connecting=2``), ``max_connecting=2`` with a warm
minimum (``min_size=8``, refilled by the maintenance thread), and no limit
(``max_connecting=64``, what a pool without connect permits does).

Run ``python benchmarks/bench_restart.py`` (``--quick`` for a smoke run:
8 threads, short phases).
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

from _common import parser, print_table, write_json

from htcluster import Replicas
from htcluster.events import ConnectionOpened
from htcluster.testing import LocalCluster

THREADS, QUICK_THREADS = 64, 8
#: Seconds of steady load before the restart, and of load after the brokers listen again.
STEADY, AFTER = 3.0, 5.0
QUICK_STEADY, QUICK_AFTER = 0.6, 1.0
#: Pool of each host: a slot for every thread, as a web app sized for its workers has (no overflow churn).
SIZE, MAX_OVERFLOW = 64, 0
NAMESPACE = "bench_restart"
#: Buckets of the throughput series, and the window over which recovery is judged (seconds).
BUCKET, WINDOW = 0.05, 0.2

CONFIGS = [
    ("max_connecting=2 (default)", {"max_connecting": 2}),
    ("max_connecting=2, min_size=8", {"max_connecting": 2, "min_size": 8}),
    ("max_connecting=64 (no limit)", {"max_connecting": 64}),
]


def run(cluster: LocalCluster, options: dict[str, Any], threads: int, steady: float, after: float) -> dict[str, Any]:
    """One configuration: steady load, restart of every broker at once, recovery; the figures."""
    done: list[float] = []  # completion times of the calls that answered
    errors = [0]
    stop = threading.Event()
    opened: dict[str, list[float]] = defaultdict(list)
    with Replicas(cluster.hosts, size=SIZE, max_overflow=MAX_OVERFLOW, socket_timeout=5.0, connect_timeout=2.0,
                  backoff={"base": 0.05, "cap": 0.5}, probe_timeout=0.5, **options) as replicas:
        replicas.listeners.register(
            lambda e: opened[e.host].append(time.monotonic()) if isinstance(e, ConnectionOpened) else None)

        def work() -> None:
            while not stop.is_set():
                try:
                    replicas.call("namespace_exists", NAMESPACE, timeout=5.0)
                    done.append(time.monotonic())
                except Exception:  # noqa: BLE001 - counted; the brokers are down for a moment
                    errors[0] += 1
                    time.sleep(0.005)

        workers = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
        for t in workers:
            t.start()
        time.sleep(0.5)  # warm-up
        t0 = time.monotonic()
        time.sleep(steady)
        steady_rate = sum(1 for t in done if t >= t0) / (time.monotonic() - t0)
        steady_opened = sum(1 for times in opened.values() for t in times if t >= t0) / len(cluster.hosts) / steady
        for broker in cluster:
            broker.kill()
        down = time.monotonic()
        for broker in cluster:
            broker.spawn()
        spawned = time.monotonic()  # a connect made just before the kill may report after it: not before this
        for broker in cluster:
            broker.wait()
        # the brokers are back from the first connection opened after they were started (wait() polls: late)
        up = min([time.monotonic(), *[t for times in list(opened.values()) for t in times if t > spawned]])
        time.sleep(max(0.0, after - (time.monotonic() - up)))
        stop.set()
        for t in workers:
            t.join(30)
        stats = replicas.stats()
    # throughput after the brokers listen again, judged over a sliding window
    recover = float("nan")
    series = sorted(t for t in done if t >= up)
    edge = up
    while edge + WINDOW <= up + after:
        count = sum(1 for t in series if edge <= t < edge + WINDOW)
        if count / WINDOW >= 0.9 * steady_rate:
            recover = edge + WINDOW - up
            break
        edge += BUCKET
    first_second = [sum(1 for t in opened[h] if up <= t < up + 1.0) for h in cluster.hosts]
    return {
        "steady_per_s": round(steady_rate),
        "steady_opened_per_s": round(steady_opened, 1),
        "peak_connecting": max(s["pool"]["connecting_peak"] for s in stats.values()),
        "opened_1s": round(sum(first_second) / len(first_second), 1),
        "opened_1s_max": max(first_second),
        "down_s": round(up - down, 2),  # kill to the first connection opened again
        "recover_s": round(recover, 3),
        "errors": errors[0],
    }


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    threads = QUICK_THREADS if args.quick else THREADS
    steady, after = (QUICK_STEADY, QUICK_AFTER) if args.quick else (STEADY, AFTER)
    rows = []
    with LocalCluster(3) as cluster:
        from htcluster import Resource

        with Resource(cluster.hosts[0]) as r:
            if not r.namespace_exists(NAMESPACE):
                r.namespace_create(NAMESPACE)
        for name, options in CONFIGS:
            rows.append({"config": name, **options, **run(cluster, options, threads, steady, after)})
    table = print_table(
        f"{threads} threads on 3 replicas, all restarted at once (kill -9, same ports); per host: peak connects in "
        "progress (target <= max_connecting), connections opened in the first second (mean, worst host); "
        "recover_s: seconds until throughput is back to 90 % after the brokers listen again; "
        "ratio = recover_s vs the default",
        rows, ["config", "steady_per_s", "steady_opened_per_s", "peak_connecting", "opened_1s", "opened_1s_max",
               "down_s", "recover_s", "errors"], ratio_of="recover_s", higher_is_better=False)
    for row in table:
        limit = row.get("max_connecting")
        if limit is not None:
            row["peak_within_max_connecting"] = row["peak_connecting"] <= limit
    write_json("bench_restart", {"quick": args.quick, "threads": threads, "size": SIZE,
                                 "max_overflow": MAX_OVERFLOW, "results": table}, args.json)


if __name__ == "__main__":
    main()
