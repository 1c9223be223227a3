"""The stand-in broker: scanners, mutators and shared mutators (protocol.md 5.1, 5.2, 5.3)."""
from __future__ import annotations

from brokertest import cell, eventually, keys, make_table, raises_code
from htcluster import codes
from htcluster.broker.objects import NEXT_THRESHOLD
from htcluster.types import MutateSpec, RowInterval, ScanSpec


def count(client, ns, table="t"):
    return len(client.get_cells(ns, table, ScanSpec()))


# --------------------------------------------------------------- scanners

def test_scanner_batches_are_capped_and_an_empty_batch_ends(client, ns):
    make_table(client, ns, "t", "a")
    value = b"x" * 10_000
    client.set_cells(ns, "t", [cell(f"r{i:03d}", "a", value) for i in range(120)])  # about 1.2 MB
    scanner = client.scanner_open(ns, "t", ScanSpec())
    batches = []
    while batch := client.scanner_get_cells(scanner):
        batches.append(batch)
    assert len(batches) == 3 and sum(map(len, batches)) == 120
    assert all(sum(len(c.value) for c in b[:-1]) < NEXT_THRESHOLD for b in batches)
    assert client.scanner_get_cells(scanner) == []  # still the end
    client.scanner_close(scanner)
    raises_code(codes.THRIFTBROKER_BAD_SCANNER_ID, client.scanner_get_cells, scanner)
    raises_code(codes.THRIFTBROKER_BAD_SCANNER_ID, client.scanner_close, scanner)


def test_scanner_rows_and_arrays(client, ns):
    make_table(client, ns, "t", "a", "b")
    client.set_cells(ns, "t", [cell(r, c, r + c) for r in ("r1", "r2", "r3") for c in ("a", "b")])
    scanner = client.scanner_open(ns, "t", ScanSpec(row_intervals=[RowInterval("r2", True, None, True)]))
    assert keys(client.scanner_get_row(scanner)) == [("r2", "a", b"r2a"), ("r2", "b", b"r2b")]
    assert client.scanner_get_row_as_arrays(scanner)[0][:4] == ["r3", "a", "", "r3a"]
    assert client.scanner_get_row(scanner) == []
    client.close_scanner(scanner)  # legacy alias
    scanner = client.open_scanner(ns, "t", ScanSpec(cell_limit=3))
    assert [a[3] for a in client.scanner_get_cells_as_arrays(scanner)] == ["r1a", "r1b", "r2a"]
    assert client.next_cells(scanner) == []


def test_scanner_errors_immediate_and_deferred(client, ns):
    make_table(client, ns, "t", "a")
    raises_code(codes.TABLE_NOT_FOUND, client.scanner_open, ns, "missing", ScanSpec())
    raises_code(codes.BAD_SCAN_SPEC, client.scanner_open, ns, "t", ScanSpec(row_offset=1, cell_offset=2))
    scanner = client.scanner_open(ns, "t", ScanSpec(columns=["nope"]))  # opens; the error comes with the fetch
    raises_code(codes.RANGESERVER_INVALID_COLUMNFAMILY, client.scanner_get_cells, scanner)
    client.scanner_close(scanner)
    mutator = client.mutator_open(ns, "t", 0, 0)
    raises_code(codes.THRIFTBROKER_BAD_SCANNER_ID, client.scanner_get_cells, mutator)  # ids do not mix
    raises_code(codes.THRIFTBROKER_BAD_SCANNER_ID, client.scanner_get_row, 12345)


# --------------------------------------------------------------- mutators

def test_mutator_data_is_visible_after_flush_and_close(client, ns):
    make_table(client, ns, "t", "a")
    mutator = client.mutator_open(ns, "t", 0, 0)
    client.mutator_set_cells(mutator, [cell("r1", "a", "1"), cell("r2", "a", "2")])
    client.mutator_set_cell(mutator, cell("r3", "a", "3"))
    assert count(client, ns) == 0
    client.mutator_flush(mutator)
    assert count(client, ns) == 3
    client.mutator_set_cells_as_arrays(mutator, [["r4", "a", "", "4"]])
    client.mutator_set_cell_as_array(mutator, ["r5", "a", "", "5"])
    assert count(client, ns) == 3
    client.mutator_close(mutator)
    assert count(client, ns) == 5
    raises_code(codes.THRIFTBROKER_BAD_MUTATOR_ID, client.mutator_flush, mutator)
    raises_code(codes.THRIFTBROKER_BAD_MUTATOR_ID, client.mutator_close, mutator)


def test_mutator_rejects_bad_cells_at_once(client, ns):
    make_table(client, ns, "t", "a")
    mutator = client.open_mutator(ns, "t", 0, 0)  # legacy alias
    raises_code(codes.BAD_KEY, client.mutator_set_cells, mutator, [cell("r", "nope", "x")])
    raises_code(codes.THRIFTBROKER_BAD_MUTATOR_ID, client.mutator_set_cell, 999, cell("r", "a"))
    raises_code(codes.TABLE_NOT_FOUND, client.mutator_open, ns, "missing", 0, 0)
    client.close_mutator(mutator)


def test_mutator_flush_interval_flushes_periodically(client, ns):
    make_table(client, ns, "t", "a")
    mutator = client.mutator_open(ns, "t", 0, 50)  # milliseconds
    client.mutator_set_cell(mutator, cell("r", "a", "periodic"))
    eventually(lambda: count(client, ns) == 1)
    client.mutator_close(mutator)


def test_disconnect_flushes_pending_mutator_cells(broker, raw_client_factory, client, ns, ns_name):
    make_table(client, ns, "t", "a")
    other = raw_client_factory(broker.address)
    mutator = other.mutator_open(other.namespace_open(ns_name), "t", 0, 0)
    other.mutator_set_cells(mutator, [cell(f"r{i}", "a", "v") for i in range(50)])
    assert count(client, ns) == 0
    other._iprot.trans.close()  # vanish without flushing or closing
    eventually(lambda: count(client, ns) == 50)


# -------------------------------------------------------- shared mutators

def test_shared_mutator_flushes_on_its_interval(client, ns):
    make_table(client, ns, "t", "a")
    spec = MutateSpec(appname="app", flush_interval=50, flags=0)
    client.shared_mutator_set_cells(ns, "t", spec, [cell("r1", "a", "1")])
    client.shared_mutator_set_cell(ns, "t", spec, cell("r2", "a", "2"))
    client.offer_cells_as_arrays(ns, "t", spec, [["r3", "a", "", "3"]])  # legacy alias
    client.shared_mutator_set_cell_as_array(ns, "t", spec, ["r4", "a", "", "4"])
    eventually(lambda: count(client, ns) == 4)


def test_shared_mutator_refresh_flushes_and_is_broker_wide(broker, raw_client_factory, client, ns, ns_name):
    make_table(client, ns, "t", "a")
    spec = MutateSpec(appname="slow", flush_interval=3_600_000, flags=0)  # an hour: only refresh flushes
    other = raw_client_factory(broker.address)
    other.shared_mutator_set_cells(other.namespace_open(ns_name), "t", spec, [cell("r1", "a", "1")])
    other._iprot.trans.close()  # shared mutators outlive the connection that fed them
    client.shared_mutator_set_cell(ns, "t", spec, cell("r2", "a", "2"))
    assert count(client, ns) == 0
    client.shared_mutator_refresh(ns, "t", spec)
    assert count(client, ns) == 2
    raises_code(codes.BAD_KEY, client.shared_mutator_set_cell, ns, "t", spec, cell("r", "nope"))
