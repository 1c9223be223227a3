"""Several broker processes opening one brand-new data file at the same moment.

Switching a new SQLite file to WAL answers "database is locked" at once when
another process does the same, without SQLite's busy handler; the store must
retry rather than exit (this is how ``LocalCluster(n, shared_data=True)`` and
``htcluster demo`` start their replicas).
"""
from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from htcluster.broker.store import Store

ROUNDS = 12
PROCESSES = 4


def _open_store(path: str, go, results) -> None:
    go.wait(10)
    try:
        Store(path, busy_timeout=10.0)
        results.put(None)
    except Exception as exc:  # reported to the parent, which fails the test
        results.put(f"{type(exc).__name__}: {exc}")


def test_concurrent_first_open_of_one_file(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    failures = []
    for i in range(ROUNDS):
        path = str(tmp_path / f"shared{i}.sqlite")
        go, results = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_open_store, args=(path, go, results)) for _ in range(PROCESSES)]
        for proc in procs:
            proc.start()
        time.sleep(0.02)
        go.set()
        outcomes = [results.get(timeout=30) for _ in procs]
        for proc in procs:
            proc.join(10)
        failures += [o for o in outcomes if o]
    assert failures == []
