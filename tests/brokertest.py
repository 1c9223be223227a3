"""Helpers shared by the ``test_broker_*`` modules (the stand-in broker's own tests).

Builders of cells, families, tables and serialized buffers, and assertion
helpers.  The fixtures these modules use (``broker``, ``client``, ``ns_name``,
``ns``) live in ``conftest.py``: pytest shares them, no import needed.
"""
from __future__ import annotations

import contextlib
import os
import struct
import time
from typing import Any, Callable, Iterator, Optional, Sequence

import pytest

from htcluster import Replicas
from htcluster.testing import LocalBroker, LocalCluster
from htcluster.types import Cell, ClientException, ColumnFamilyOptions, ColumnFamilySpec, Key, Schema

#: Seconds a test waits for something asynchronous (a periodic flush, a disconnect).
EVENTUALLY = 10.0


def stop_gracefully(*brokers: "LocalBroker | LocalCluster") -> None:
    """Stop brokers (or every broker of clusters) with SIGTERM, before their ``with`` block kills them.

    A broker that exits cleanly saves its coverage data; a SIGKILL (what
    ``close()`` does) saves nothing, so what the tests made it run would not count.
    """
    for item in brokers:
        for local in (item.brokers if isinstance(item, LocalCluster) else [item]):
            local.stop(timeout=15.0)


def family(name: str, access_group: str = "", **options: Any) -> ColumnFamilySpec:
    """Return a ``ColumnFamilySpec``; ``options`` are ``ColumnFamilyOptions`` fields."""
    return ColumnFamilySpec(name=name, access_group=access_group,
                            options=ColumnFamilyOptions(**options) if options else None)


def make_table(client: Any, ns: int, name: str, *families: "str | ColumnFamilySpec", **schema: Any) -> str:
    """Create table ``name`` with the given families (names or specs); return ``name``."""
    specs = [family(f) if isinstance(f, str) else f for f in families]
    client.table_create(ns, name, Schema(column_families={f.name: f for f in specs}, **schema))
    return name


def cell(row: str, column: str, value: "bytes | str | None" = b"", ts: Optional[int] = None,
         flag: Optional[int] = None) -> Cell:
    """Return a ``Cell`` for ``column`` 'cf' or 'cf:qualifier'."""
    cf, _, cq = column.partition(":")
    if isinstance(value, str):
        value = value.encode()
    key = Key(row=row, column_family=cf, column_qualifier=cq, timestamp=ts)
    if flag is not None:
        key.flag = flag
    return Cell(key, value)


def keys(cells: Sequence[Cell]) -> list[tuple]:
    """Return ``(row, 'cf:q' or 'cf', value)`` of each cell, for compact assertions."""
    out = []
    for c in cells:
        column = f"{c.key.column_family}:{c.key.column_qualifier}" if c.key.column_qualifier else c.key.column_family
        out.append((c.key.row, column, c.value))
    return out


def raises_code(code: int, call: Callable, *args: Any, **kwargs: Any) -> ClientException:
    """Call ``call(*args, **kwargs)``, assert it raises ``ClientException`` with ``code``, and return it."""
    with pytest.raises(ClientException) as info:
        call(*args, **kwargs)
    assert info.value.code == code, info.value.message
    return info.value


def eventually(check: Callable[[], Any], timeout: float = EVENTUALLY, interval: float = 0.05) -> Any:
    """Return the first truthy ``check()`` result; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s: last result {result!r}")
        time.sleep(interval)


def serialized(*records: bytes, end: int = 0x01) -> bytes:
    """Build a serialized-cells buffer (protocol.md appendix A): version 1, the records, the end byte."""
    return struct.pack("<i", 1) + b"".join(records) + bytes([end])


def record(row: bytes, cf: bytes, cq: bytes, value: bytes, ts: Optional[int] = None, flag: int = 255) -> bytes:
    """Build one cell record of a serialized-cells buffer; ``ts`` None means an automatic timestamp."""
    head = bytes([0x40]) + struct.pack("<q", ts) if ts is not None else bytes([0x20])
    return head + row + b"\0" + cf + b"\0" + cq + b"\0" + struct.pack("<i", len(value)) + value + bytes([flag])


def socket_fds() -> set[int]:
    """This process's descriptors that are sockets (a subprocess's pipes are not counted)."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                found.add(int(name))
        except OSError:  # closed meanwhile (listdir's own descriptor)
            pass
    return found


@contextlib.contextmanager
def cluster_with_namespace(n: int, namespace: str, **options: Any) -> Iterator[LocalCluster]:
    """``n`` brokers of one data file holding ``namespace`` (made through ``Replicas(**options)``);
    stopped gracefully at the end."""
    with LocalCluster(n, shared_data=True) as cluster:
        with Replicas(cluster.hosts, **options) as replicas:
            replicas.call("hql_query", f"CREATE NAMESPACE {namespace} IF NOT EXISTS", namespace="/")
        yield cluster
        stop_gracefully(cluster)
