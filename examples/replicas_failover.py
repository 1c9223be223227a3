"""Replica failover: write through three replicas, kill the primary by its PID, keep writing, read back.

Three local stand-in ThriftBrokers are started in front of one data file (the
way several ThriftBrokers front one Hypertable cluster).  ``Replicas`` writes to
the first healthy broker; after the first half of the rows the script sends
SIGKILL to that broker's process, as a crash would, and goes on writing: the
writes fail over to the next broker.  Each write carries a client timestamp,
so one that is retried elsewhere is stored once.  At the end every row is read
back and the counts are printed; the exit status is 0 when every acknowledged
write was found.

Needs htcluster alone (no extra) on a POSIX system::

    python examples/replicas_failover.py            # 200 rows
    python examples/replicas_failover.py --rows 1000
"""
from __future__ import annotations

import argparse
import os
import signal
import sys

from htcluster import Replicas
from htcluster.errors import ClientException, HtclusterError
from htcluster.testing import LocalCluster
from htcluster.types import Cell, Key

NAMESPACE = "failover_example"
TABLE = "Events"


def ensure_table(replicas: Replicas) -> None:
    """Create the namespace and the table unless they exist."""
    if not replicas.call("namespace_exists", NAMESPACE):
        replicas.call("namespace_create", NAMESPACE)
    if not replicas.call("table_exists", TABLE, namespace=NAMESPACE):
        replicas.call("hql_query", f"CREATE TABLE {TABLE} (payload)", namespace=NAMESPACE)


def write_rows(replicas: Replicas, rows: range) -> tuple[list[str], list[str]]:
    """Write one cell per row; return (acknowledged rows, failed rows)."""
    written, failed = [], []
    for n in rows:
        row = f"event-{n:06d}"
        try:
            replicas.call("set_cells", TABLE, [Cell(Key(row, "payload", ""), f"value {n}".encode())],
                          namespace=NAMESPACE)
            written.append(row)
        except (HtclusterError, ClientException) as exc:  # reported, not hidden
            print(f"  write of {row} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed.append(row)
    return written, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200, help="rows to write (default 200)")
    args = parser.parse_args(argv)

    with LocalCluster(3, shared_data=True) as cluster:
        for broker in cluster:
            print(f"broker {broker.address}  pid {broker.process.pid if broker.process else '-'}")
        replicas = Replicas(cluster.hosts)
        try:
            ensure_table(replicas)
            half = args.rows // 2
            written, failed = write_rows(replicas, range(half))
            print(f"wrote {len(written)} rows through the primary {replicas.order[0]}")

            primary = cluster[0]
            assert primary.process is not None
            pid = primary.process.pid
            os.kill(pid, signal.SIGKILL)  # a crash: no goodbye, the socket just dies
            primary.process.wait()        # reap it (LocalCluster would do it at close)
            print(f"killed the primary {primary.address} (pid {pid}) with SIGKILL")

            more, more_failed = write_rows(replicas, range(half, args.rows))
            written += more
            failed += more_failed
            print(f"wrote {len(more)} more rows after the kill; failovers so far: {replicas.failovers}")

            stored = {cell.key.row for cell in replicas.scan(TABLE, namespace=NAMESPACE)}
        finally:
            replicas.close()

    missing = [row for row in written if row not in stored]
    print(f"rows written: {len(written)}  failed: {len(failed)}  read back: {len(stored)}  "
          f"acknowledged but missing: {len(missing)}")
    return 0 if not missing and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
