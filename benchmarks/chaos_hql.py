"""Chaos run: HQL INSERTs (or stamped set_cells) through Replicas while members are killed, paused and restarted.

Three stand-in brokers share one data file (the ``Replicas`` case).  One
thread writes ``INSERT`` statements through :class:`htcluster.Replicas` as
fast as it can; another, every ``--period`` seconds, does one of kill -9 +
start, SIGSTOP + SIGCONT, or a restart, to a random member, never to all.
At the end every acknowledged INSERT must be found exactly once, and no
call may have raised.  Replicas sends each INSERT as a stamped ``set_cells``
(``htcluster._routing.replicas.hql_write_cells``), so a failover repeats the same
versions instead of adding new ones.

With ``--mode stamped`` the writer sends ``set_cells`` batches of
``BATCH`` cells without timestamps instead: Replicas stamps them (one stamp
per batch, a per-process tag in the low bits), so a failover repeats the same
versions.

Usage::

    python benchmarks/chaos_hql.py --seconds 120                  # HQL INSERTs
    python benchmarks/chaos_hql.py --seconds 120 --mode stamped   # stamped set_cells
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from htcluster import Replicas  # noqa: E402
from htcluster import Backoff  # noqa: E402
from htcluster.testing import LocalCluster  # noqa: E402
from htcluster.types import Cell, Key, ScanSpec  # noqa: E402

NAMESPACE, TABLE = "chaos", "events"
#: Cells per set_cells in ``--mode stamped``.
BATCH = 10


def run(seconds: float = 10.0, period: float = 1.0, seed: int = 7, mode: str = "hql") -> dict[str, Any]:
    """Run the chaos for ``seconds`` (float); return the counts (acknowledged, found, errors, actions)."""
    rng = random.Random(seed)
    with LocalCluster(3, shared_data=True) as cluster, \
            Replicas(cluster.hosts, socket_timeout=1.0, connect_timeout=1.0,
                     backoff=Backoff(base=0.2, cap=1.0), call_timeout=60.0) as replicas:
        replicas.call("hql_query", f"CREATE NAMESPACE {NAMESPACE}", namespace="/")
        replicas.call("hql_query", f"CREATE TABLE {TABLE} (f)", namespace=NAMESPACE)
        acknowledged: list[str] = []
        errors: list[str] = []
        actions: list[str] = []
        stop = threading.Event()

        def write() -> None:
            i = 0
            while not stop.is_set():
                row = f"row-{i:07d}"
                try:
                    if mode == "hql":
                        replicas.call("hql_query", f'INSERT INTO {TABLE} VALUES ("{row}", "f", "v{i}")',
                                      namespace=NAMESPACE)
                        acknowledged.append(row)
                    else:
                        rows = [f"{row}-{j}" for j in range(BATCH)]
                        replicas.call("set_cells", TABLE, [Cell(Key(r, "f", ""), b"v") for r in rows],
                                      namespace=NAMESPACE)
                        acknowledged.extend(rows)
                except Exception as exc:  # counted, never expected
                    errors.append(f"{row}: {type(exc).__name__}: {exc}")
                i += 1

        writer = threading.Thread(target=write, name="chaos-writer")
        writer.start()
        end = time.monotonic() + seconds
        try:
            while time.monotonic() < end:
                time.sleep(period * (0.5 + rng.random()))
                victim = rng.randrange(3)
                action = rng.choice(["kill", "pause", "restart"])
                actions.append(f"{action} {victim}")
                if action == "kill":
                    cluster.kill(victim)
                    time.sleep(period * 0.5)
                    cluster.start(victim)
                elif action == "pause":
                    cluster.pause(victim)
                    time.sleep(period * 0.5)
                    cluster.resume(victim)
                else:
                    cluster.restart(victim)
        finally:
            stop.set()
            writer.join(120)
        rows: dict[str, int] = {}
        for cell in replicas.scan(TABLE, ScanSpec(), namespace=NAMESPACE, timeout=60.0):
            rows[cell.key.row] = rows.get(cell.key.row, 0) + 1
        lost = [r for r in acknowledged if r not in rows]
        duplicated = [r for r, n in rows.items() if n > 1]
        return {"mode": mode, "seconds": seconds, "acknowledged": len(acknowledged), "found": len(rows),
                "lost": len(lost), "duplicated": len(duplicated), "errors": len(errors),
                "first_errors": errors[:5], "actions": len(actions), "failovers": replicas.failovers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--period", type=float, default=1.0, help="seconds between chaos actions (about)")
    parser.add_argument("--mode", choices=("hql", "stamped"), default="hql",
                        help="hql: INSERT statements; stamped: set_cells batches stamped by Replicas")
    parser.add_argument("--json", default="chaos_hql.json")
    args = parser.parse_args()
    result = run(args.seconds, args.period, mode=args.mode)
    for key, value in result.items():
        print(f"{key:>14}  {value}")
    Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
