"""Requests per second through the Flask extension: connect-per-request, one pool, three replicas.

Starts one local stand-in broker and a cluster of three replicas (one shared
SQLite file), then serves the same request through Flask's test client with:

* ``FlaskHypertable``: a new connection per request (Flask-Hypertable's basic
  class): the baseline;
* ``FlaskPooledHypertable``: one pool to the one broker;
* ``Hypertable`` with ``replicas`` over three brokers, ``ht.connection``
  (the write host's pooled connection);
* the same, through ``ht.namespace()`` (each call routed to a read replica).

Each request reads one cell of LogDb (``get_cell``).  The first table runs requests
one after another; the second from ``THREADS`` threads at once.  Run
``python benchmarks/bench_flask.py`` (``--quick`` for a smoke run).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from _common import parser, print_table, summarize, time_calls, write_json
from flask import Flask

from htcluster.flask_ext import FlaskHypertable, FlaskPooledHypertable, Hypertable
from htcluster.cli.logload import ensure_logdb
from htcluster import Pool
from htcluster.testing import LocalBroker, LocalCluster
from htcluster.cli.weblog import TABLE, generate_lines, iter_entries

#: Requests per row, one after another.
REQUESTS = 2000
QUICK_REQUESTS = 30
#: Threads of the concurrent table, and requests each.
THREADS = 8
THREAD_REQUESTS = 250
QUICK_THREAD_REQUESTS = 5
#: Untimed requests before each row.
WARMUP = 20
POOL_SIZE = 8
NAMESPACE = "bench_flask"


def prepare(address: str) -> str:
    """Create namespace ``bench_flask`` with the LogDb table holding one request; return its row key."""
    entry = next(iter_entries(generate_lines(1)))
    with Pool(address) as pool:
        ensure_logdb(pool.call, NAMESPACE)
        pool.call("set_cells", TABLE, entry.cells(), namespace=NAMESPACE)
    return entry.row


def make_app(ext: Hypertable, hosts: list[str], row: str, routed: bool) -> Flask:
    """An app whose ``/`` reads one cell of ``row`` through ``ht.connection`` (or ``ht.namespace()``)."""
    app = Flask(f"bench-{type(ext).__name__}-{len(hosts)}-{routed}")
    app.config.update(HYPERTABLE_HOSTS=hosts, HYPERTABLE_NAMESPACE=NAMESPACE, HYPERTABLE_POOL_SIZE=POOL_SIZE)
    ext.init_app(app)

    @app.get("/")
    def read() -> bytes:
        if routed:
            return ext.namespace().get_cell(TABLE, row, "ResponseCode")
        r = ext.connection
        return r.get_cell(r.mns[NAMESPACE], TABLE, row, "ResponseCode")

    return app


def request_fn(app: Flask) -> Callable[[], Any]:
    client = app.test_client()

    def one() -> None:
        response = client.get("/")
        if response.status_code != 200 or len(response.data) != 3:
            raise RuntimeError(f"bad answer {response.status_code} {response.data[:200]!r}")
    return one


def concurrent(app: Flask, threads: int, each: int) -> dict[str, float]:
    """Run ``threads`` clients of ``each`` requests at once; throughput and latency percentiles."""
    samples: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        fn, mine = request_fn(app), []
        try:
            for _ in range(each):
                t0 = time.perf_counter()
                fn()
                mine.append(time.perf_counter() - t0)
        except BaseException as exc:  # reported after the run
            errors.append(exc)
        with lock:
            samples.extend(mine)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    seconds = time.perf_counter() - start
    if errors:
        raise errors[0]
    return summarize(samples, seconds)


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    n = QUICK_REQUESTS if args.quick else REQUESTS
    each = QUICK_THREAD_REQUESTS if args.quick else THREAD_REQUESTS
    with LocalBroker() as broker, LocalCluster(3, shared_data=True) as cluster:
        row = prepare(broker.address)
        prepare(cluster.hosts[0])
        apps = {
            "FlaskHypertable (connect per request)": make_app(FlaskHypertable(), [broker.address], row, False),
            "FlaskPooledHypertable": make_app(FlaskPooledHypertable(), [broker.address], row, False),
            "Hypertable replicas x3, ht.connection": make_app(Hypertable(), cluster.hosts, row, False),
            "Hypertable replicas x3, ht.namespace()": make_app(Hypertable(), cluster.hosts, row, True),
        }
        sequential, parallel = [], []
        for name, app in apps.items():
            fn = request_fn(app)
            for _ in range(WARMUP):
                fn()
            sequential.append({"extension": name, **time_calls(fn, n)})
        for name, app in apps.items():
            parallel.append({"extension": name, **concurrent(app, THREADS, each)})
    results = {
        "sequential": print_table(f"GET / (one get_cell), {n} requests one after another; "
                                  "ratio = requests/s vs connect per request",
                                  sequential, ["extension", "calls", "per_s", "p50_ms", "p99_ms"], ratio_of="per_s"),
        "threads": print_table(f"GET / from {THREADS} threads x {each} requests; "
                               "ratio = requests/s vs connect per request",
                               parallel, ["extension", "calls", "per_s", "p50_ms", "p99_ms"], ratio_of="per_s"),
    }
    write_json("bench_flask", {"quick": args.quick, "pool_size": POOL_SIZE, "threads": THREADS,
                               "results": results}, args.json)


if __name__ == "__main__":
    main()
