"""Shards: place rows with ``locate``, then ask every shard at once with ``broadcast`` and ``multicast``.

Four local stand-in ThriftBrokers are started: two in front of one data file
(shard ``eu``, two replicas of it) and one each for shards ``us`` and ``asia``.
Each row goes to the shard ``Shards.locate(row)`` names (rendezvous hashing:
the same answer in every process, part of htcluster's contract), ``broadcast``
asks every broker of one shard, and ``multicast`` asks a smallest set of
brokers that together cover the shards named (one broker per shard here).
The counts per shard are printed; the exit status is 0 when every row was
found on the shard that ``locate`` named.

Needs htcluster alone (no extra) on a POSIX system::

    python examples/shards_broadcast.py            # 300 rows
    python examples/shards_broadcast.py --rows 1000
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter

from htcluster import Shards
from htcluster.testing import LocalBroker, LocalCluster
from htcluster.types import Cell, Key

NAMESPACE = "shards_example"
TABLE = "Visits"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300, help="rows to write (default 300)")
    args = parser.parse_args(argv)

    with LocalCluster(2, shared_data=True) as eu, LocalBroker() as us, LocalBroker() as asia:
        pairs = [(host, "eu") for host in eu.hosts] + [(us.address, "us"), (asia.address, "asia")]
        for host, key in pairs:
            print(f"shard {key:<5} broker {host}")
        shards = Shards(pairs)
        keys = sorted(shards, key=str)
        try:
            # Schema on every shard: a multicast reaches one broker per shard.
            for host, exists in shards.multicast(keys, "namespace_exists", NAMESPACE).items():
                if not exists:
                    shards.unicast(_key_of(pairs, host), "namespace_create", NAMESPACE)
            for key in keys:
                if not shards.unicast(key, "table_exists", TABLE, namespace=NAMESPACE):
                    shards.unicast(key, "hql_query", f"CREATE TABLE {TABLE} (page)", namespace=NAMESPACE)

            placed: Counter[str] = Counter()
            for n in range(args.rows):
                row = f"visitor-{n:05d}"
                key = shards.locate(row)
                shards.unicast(key, "set_cells", TABLE, [Cell(Key(row, "page", ""), b"/index.html")],
                               namespace=NAMESPACE)
                placed[str(key)] += 1
            for row in ("visitor-00000", "visitor-00001", "visitor-00002"):
                print(f"locate({row!r}) -> {shards.locate(row)!r}")

            # broadcast: every broker of one shard (both eu replicas see the same rows)
            eu_answers = shards.broadcast("eu", "hql_query", f"SELECT page FROM {TABLE}", namespace=NAMESPACE)
            for host, result in sorted(eu_answers.items()):
                print(f"broadcast eu: {host} has {len(result.cells)} cells")

            # multicast: one broker per shard, all shards at once
            answers = shards.multicast(keys, "hql_query", f"SELECT page FROM {TABLE}", namespace=NAMESPACE)
            found: Counter[str] = Counter()
            wrong = 0
            for host, result in answers.items():
                key = _key_of(pairs, host)
                found[key] += len(result.cells)
                wrong += sum(1 for cell in result.cells if shards.locate(cell.key.row) != key)
        finally:
            shards.close()

    for key in keys:
        print(f"shard {key:<5} rows placed {placed[str(key)]:>5}  found {found[str(key)]:>5}")
    print(f"total placed {sum(placed.values())}  found {sum(found.values())}  on the wrong shard {wrong}")
    return 0 if found == placed and wrong == 0 else 1


def _key_of(pairs: list[tuple[str, str]], host: str) -> str:
    """The shard key of ``host`` (each broker here serves one shard)."""
    return next(key for address, key in pairs if address == host)


if __name__ == "__main__":
    sys.exit(main())
