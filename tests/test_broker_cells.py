"""The stand-in broker: writing and reading cells, every ScanSpec field (protocol.md 5.2, 5.3, appendix C)."""
from __future__ import annotations

import struct
import time

import pytest
from thrift.Thrift import TApplicationException

from brokertest import cell, family, keys, make_table, raises_code, record, serialized
from htcluster import codes
from htcluster.types import (CellInterval, ColumnPredicate, ColumnPredicateOperation as Op, KeyFlag, RowInterval,
                             ScanSpec)

NS = 1_000_000_000  # nanoseconds per second
T0 = 1_400_000_000 * NS  # a fixed client timestamp (2014)


def scan(client, ns, table="t", **spec):
    return keys(client.get_cells(ns, table, ScanSpec(**spec)))


@pytest.fixture
def abc(client, ns):
    """Table 't' (families a, b) with rows r1..r5, one cell per family each."""
    make_table(client, ns, "t", "a", "b")
    client.set_cells(ns, "t", [cell(f"r{i}", f, f"{f}{i}") for i in range(1, 6) for f in ("a", "b")])
    return "t"


# ---------------------------------------------------------------- writing

def test_returned_cell_encoding(client, ns):
    make_table(client, ns, "t", "a")
    before = time.time_ns()
    client.set_cells(ns, "t", [cell("r", "a", b""), cell("r", "a:q", b"v", ts=T0)])
    first, second = client.get_cells(ns, "t", ScanSpec())
    assert first.key.column_qualifier == "" and first.value is None  # empty value comes back as None
    assert first.key.timestamp == first.key.revision >= before  # auto timestamp = revision
    assert first.key.flag == KeyFlag.INSERT
    assert second.key.column_qualifier == "q" and second.value == b"v"
    assert second.key.timestamp == T0 and second.key.revision > first.key.revision  # client timestamp kept


def test_bad_keys_reject_the_whole_batch(client, ns):
    make_table(client, ns, "t", "a")
    raises_code(codes.BAD_KEY, client.set_cells, ns, "t", [cell("r", "a", "ok"), cell("r", "nope", "x")])
    raises_code(codes.BAD_KEY, client.set_cells, ns, "t", [cell("", "a", "x")])
    raises_code(codes.BAD_KEY, client.set_cell, ns, "t", cell("r", "", "x"))
    raises_code(codes.BAD_KEY, client.set_cell, ns, "t", cell("r", "a", flag=KeyFlag.DELETE_CELL_VERSION))
    raises_code(codes.BAD_KEY, client.set_cell_as_array, ns, "t", [])
    raises_code(codes.BAD_KEY, client.set_cell_as_array, ns, "t", ["r", "a", "", "v", "soon"])
    raises_code(codes.TABLE_NOT_FOUND, client.set_cells, ns, "missing", [cell("r", "a")])
    assert client.get_cells(ns, "t", ScanSpec()) == []


def test_cells_as_arrays_in_and_out(client, ns):
    make_table(client, ns, "t", "a")
    client.set_cells_as_arrays(ns, "t", [["r1", "a", "q", "v1"], ["r2", "a", "", "v2", str(T0)], ["r3"][:1] + ["a"]])
    client.set_cell_as_array(ns, "t", ["r4", "a", "x", "v4", hex(T0)])
    rows = client.get_cells_as_arrays(ns, "t", ScanSpec())
    assert [r[:4] for r in rows] == [["r1", "a", "q", "v1"], ["r2", "a", "", "v2"], ["r3", "a", "", ""],
                                     ["r4", "a", "x", "v4"]]
    assert rows[1][4] == str(T0) and rows[3][4] == str(T0) and all(len(r) == 5 for r in rows)
    assert client.get_row_as_arrays(ns, "t", "r1") == [rows[0]]


def test_supplied_revision_must_increase(client, ns):
    make_table(client, ns, "t", "a")
    client.set_cell(ns, "t", cell("r", "a", "v"))
    stale = cell("r", "a", "old")
    stale.key.revision = 5
    raises_code(codes.RANGESERVER_REVISION_ORDER_ERROR, client.set_cell, ns, "t", stale)


# --------------------------------------------------------------- ordering

def test_order_row_bytes_then_family_id_then_qualifier_then_newest(client, ns):
    make_table(client, ns, "t", "z", "a")  # z has id 1, a has id 2
    client.set_cells(ns, "t", [cell("b", "a:y", "1"), cell("B", "a", "2"), cell("b", "z", "3"),
                               cell("b", "a:x", "4", ts=T0), cell("b", "a:x", "5", ts=T0 + 1), cell("é", "a", "6"),
                               cell("b", "a:x", "7", ts=T0 - 1)])
    assert scan(client, ns) == [("B", "a", b"2"), ("b", "z", b"3"), ("b", "a:x", b"5"), ("b", "a:x", b"4"),
                                ("b", "a:x", b"7"), ("b", "a:y", b"1"), ("é", "a", b"6")]


def test_repeated_timestamp_is_a_second_revision(client, ns):
    make_table(client, ns, "t", "a")
    client.set_cell(ns, "t", cell("r", "a", "first", ts=T0))
    client.set_cell(ns, "t", cell("r", "a", "retry", ts=T0))
    both = client.get_cells(ns, "t", ScanSpec())
    assert [c.value for c in both] == [b"retry", b"first"]  # newest revision first (appendix C)
    assert both[0].key.revision > both[1].key.revision
    assert scan(client, ns, versions=1) == [("r", "a", b"retry")]


def test_time_order_desc_family_returns_oldest_first(client, ns):
    make_table(client, ns, "t", family("a", time_order_desc=True))
    client.set_cells(ns, "t", [cell("r", "a", "new", ts=T0 + 2), cell("r", "a", "old", ts=T0)])
    assert scan(client, ns) == [("r", "a", b"old"), ("r", "a", b"new")]
    assert scan(client, ns, versions=1) == [("r", "a", b"old")]


# --------------------------------------------------------------- versions

def test_versions_spec_and_family_max_versions(client, ns):
    make_table(client, ns, "t", "a", family("b", max_versions=2))
    client.set_cells(ns, "t", [cell("r", f, f"{f}{i}", ts=T0 + i) for i in range(4) for f in ("a", "b")])
    assert scan(client, ns, columns=["a"]) == [("r", "a", f"a{i}".encode()) for i in (3, 2, 1, 0)]
    assert scan(client, ns, columns=["b"]) == [("r", "b", b"b3"), ("r", "b", b"b2")]
    assert scan(client, ns, versions=3) == [("r", "a", b"a3"), ("r", "a", b"a2"), ("r", "a", b"a1"),
                                            ("r", "b", b"b3"), ("r", "b", b"b2")]
    assert scan(client, ns, versions=1) == [("r", "a", b"a3"), ("r", "b", b"b3")]
    assert keys(client.get_row(ns, "t", "r")) == [("r", "a", b"a3"), ("r", "b", b"b3")]


def test_get_cell(client, ns):
    make_table(client, ns, "t", "a")
    client.set_cells(ns, "t", [cell("r", "a:q", "old", ts=T0), cell("r", "a:q", "new", ts=T0 + 1),
                               cell("r", "a", "bare")])
    assert client.get_cell(ns, "t", "r", "a:q") == b"new"
    assert client.get_cell(ns, "t", "r", "a") == b"bare"
    assert client.get_cell(ns, "t", "r", "a:missing") == b""
    assert client.get_cell(ns, "t", "other", "a") == b""
    with pytest.raises(TApplicationException):
        client.get_cell(ns, "t", "", "a")
    raises_code(codes.RANGESERVER_INVALID_COLUMNFAMILY, client.get_cell, ns, "t", "r", "nope")
    raises_code(codes.TABLE_NOT_FOUND, client.get_cell, ns, "missing", "r", "a")


# ---------------------------------------------------------------- deletes

@pytest.fixture
def versions3(client, ns):
    """Table 't' with row r holding a:x, a:y, b at T0, T0+1, T0+2, and row s holding a:x."""
    make_table(client, ns, "t", "a", "b")
    client.set_cells(ns, "t", [cell("r", col, f"{col}@{i}", ts=T0 + i) for i in range(3) for col in ("a:x", "a:y", "b")]
                     + [cell("s", "a:x", "other", ts=T0)])
    return "t"


def test_delete_row_hides_versions_up_to_its_timestamp(client, ns, versions3):
    client.set_cell(ns, "t", cell("r", "", ts=T0 + 1, flag=KeyFlag.DELETE_ROW))
    assert scan(client, ns) == [("r", "a:x", b"a:x@2"), ("r", "a:y", b"a:y@2"), ("r", "b", b"b@2"),
                                ("s", "a:x", b"other")]
    client.set_cell(ns, "t", cell("r", "", flag=KeyFlag.DELETE_ROW))  # auto timestamp: hides everything before
    client.set_cell(ns, "t", cell("r", "a:x", "older", ts=T0 + 5))  # explicit older timestamp stays hidden
    client.set_cell(ns, "t", cell("r", "b", "later"))
    assert scan(client, ns) == [("r", "b", b"later"), ("s", "a:x", b"other")]


def test_delete_column_family(client, ns, versions3):
    client.set_cell(ns, "t", cell("r", "a", ts=T0 + 1, flag=KeyFlag.DELETE_CF))
    assert scan(client, ns, row_intervals=[RowInterval("r", True, "r", True)]) == [
        ("r", "a:x", b"a:x@2"), ("r", "a:y", b"a:y@2"), ("r", "b", b"b@2"), ("r", "b", b"b@1"), ("r", "b", b"b@0")]


def test_delete_cell_and_delete_cell_version(client, ns, versions3):
    client.set_cells(ns, "t", [cell("r", "a:x", flag=KeyFlag.DELETE_CELL),
                               cell("r", "a:y", ts=T0 + 1, flag=KeyFlag.DELETE_CELL_VERSION)])
    assert scan(client, ns, columns=["a"]) == [("r", "a:y", b"a:y@2"), ("r", "a:y", b"a:y@0"),
                                               ("s", "a:x", b"other")]
    assert scan(client, ns, columns=["a"], versions=1) == [("r", "a:y", b"a:y@2"), ("s", "a:x", b"other")]


def test_return_deletes_adds_the_markers_and_still_hides_what_they_delete(client, ns, versions3):
    client.set_cells(ns, "t", [cell("s", "", ts=T0 - 5, flag=KeyFlag.DELETE_ROW),
                               cell("r", "b", ts=T0, flag=KeyFlag.DELETE_CF),
                               cell("r", "a:x", ts=T0 + 9, flag=KeyFlag.DELETE_CELL)])

    def got(**spec):
        return [(c.key.row, c.key.column_family, c.key.column_qualifier, c.key.flag, c.key.timestamp, c.value)
                for c in client.get_cells(ns, "t", ScanSpec(return_deletes=True, **spec))]
    # b@0 stays hidden by the DELETE_CF at T0: deletes apply to inserts whatever return_deletes says
    assert got(columns=["b"]) == [("r", "b", "", KeyFlag.DELETE_CF, T0, None), ("r", "b", "", 255, T0 + 2, b"b@2"),
                                  ("r", "b", "", 255, T0 + 1, b"b@1"), ("s", "", "", KeyFlag.DELETE_ROW, T0 - 5, None)]
    # markers ignore end_time and the qualifier selection, which filter inserts only
    assert got(columns=["a:y"], end_time=T0 + 1) == [
        ("r", "a", "x", KeyFlag.DELETE_CELL, T0 + 9, None), ("r", "a", "y", 255, T0, b"a:y@0"),
        ("s", "", "", KeyFlag.DELETE_ROW, T0 - 5, None)]
    # ... but not start_time
    assert got(columns=["a"], start_time=T0 + 1) == [
        ("r", "a", "x", KeyFlag.DELETE_CELL, T0 + 9, None), ("r", "a", "y", 255, T0 + 2, b"a:y@2"),
        ("r", "a", "y", 255, T0 + 1, b"a:y@1")]
    assert scan(client, ns, columns=["a:y"], end_time=T0 + 1) == [("r", "a:y", b"a:y@0")]  # no markers without it


# -------------------------------------------------------------------- TTL

def test_ttl_hides_cells_older_than_now_minus_ttl(client, ns):
    make_table(client, ns, "t", family("a", ttl=3600), "b")
    old = time.time_ns() - 2 * 3600 * NS
    client.set_cells(ns, "t", [cell("r", "a", "expired", ts=old), cell("r", "a", "fresh"),
                               cell("r", "b", "kept", ts=old)])
    assert scan(client, ns) == [("r", "a", b"fresh"), ("r", "b", b"kept")]


# -------------------------------------------------------------- intervals

@pytest.mark.parametrize("start_inclusive, end_inclusive, rows", [
    (True, True, ["r2", "r3", "r4"]), (False, True, ["r3", "r4"]), (True, False, ["r2", "r3"]),
    (False, False, ["r3"]), (None, None, ["r3"]),  # an omitted *_inclusive counts as exclusive
])
def test_row_interval_inclusivity(client, ns, abc, start_inclusive, end_inclusive, rows):
    spec = ScanSpec(row_intervals=[RowInterval("r2", start_inclusive, "r4", end_inclusive)], columns=["a"])
    assert [row for row, _, _ in keys(client.get_cells(ns, "t", spec))] == rows


def test_row_interval_open_ends_and_order_given(client, ns, abc):
    def rows(*intervals, **spec):
        return [r for r, col, _ in scan(client, ns, row_intervals=list(intervals), columns=["a"], **spec)]
    assert rows(RowInterval(None, True, "r2", True)) == ["r1", "r2"]
    assert rows(RowInterval("r4", True, "", True)) == ["r4", "r5"]
    assert rows(RowInterval("r4", True, "r5", True), RowInterval("r1", True, "r1", True)) == ["r4", "r5", "r1"]
    assert rows(RowInterval("r1", True, "r3", True), RowInterval("r4", True, None, True), row_limit=1) == ["r1", "r4"]


def test_bad_row_intervals(client, ns, abc):
    raises_code(codes.BAD_SCAN_SPEC, scan, client, ns, row_intervals=[RowInterval("r4", True, "r2", True)])
    raises_code(codes.BAD_SCAN_SPEC, scan, client, ns, row_intervals=[RowInterval("r2", False, "r2", True)])
    raises_code(codes.BAD_SCAN_SPEC, scan, client, ns, row_intervals=[RowInterval("r1", True, "r2", True)],
                cell_intervals=[CellInterval("r1", "a", True, "r2", "a", True)])


def test_cell_intervals(client, ns):
    make_table(client, ns, "t", "a", "b")
    client.set_cells(ns, "t", [cell(r, c, f"{r}{c}") for r in ("r1", "r2") for c in ("a:p", "a:q", "b:p")])

    def cells(*args):
        return [(r, c) for r, c, _ in scan(client, ns, cell_intervals=[CellInterval(*args)])]
    assert cells("r1", "a:q", True, "r2", "a:p", True) == [("r1", "a:q"), ("r1", "b:p"), ("r2", "a:p")]
    assert cells("r1", "a:q", False, "r2", "a:p", False) == [("r1", "b:p")]
    assert cells("r1", "a", True, "r1", "a", True) == [("r1", "a:p"), ("r1", "a:q")]  # bare family: all qualifiers
    assert cells("r1", "b", False, "r2", "b", False) == [("r2", "a:p"), ("r2", "a:q")]
    assert cells("r2", "a:q", None, "r2", "b:p", None) == []  # omitted inclusive fields: both exclusive
    raises_code(codes.BAD_SCAN_SPEC, cells, "r2", "a", True, "r1", "a", True)


# --------------------------------------------------------- ScanSpec fields

def test_columns_with_qualifier_forms(client, ns):
    make_table(client, ns, "t", "a", "b")
    client.set_cells(ns, "t", [cell("r", c, c) for c in ("a:apple", "a:avocado", "a:banana", "a", "b:x")])

    def cols(*columns):
        return [c for _, c, _ in scan(client, ns, columns=list(columns))]
    assert cols("b") == ["b:x"]
    assert cols("a:banana", "b") == ["a:banana", "b:x"]
    assert cols("a:^a") == ["a:apple", "a:avocado"]
    assert cols("a:/an+a$/") == ["a:banana"]
    assert cols("a:") == ["a"]
    assert cols("a:*") == ["a", "a:apple", "a:avocado", "a:banana"]
    raises_code(codes.RANGESERVER_INVALID_COLUMNFAMILY, cols, "nope")


def test_limits_and_offsets(client, ns, abc):
    assert [r for r, _, _ in scan(client, ns, row_limit=2, do_not_cache=True)] == ["r1", "r1", "r2", "r2"]
    assert [r for r, _, _ in scan(client, ns, cell_limit=3)] == ["r1", "r1", "r2"]
    assert [r for r, _, _ in scan(client, ns, row_offset=3)] == ["r4", "r4", "r5", "r5"]
    assert [(r, c) for r, c, _ in scan(client, ns, cell_offset=7)] == [("r4", "b"), ("r5", "a"), ("r5", "b")]
    assert [(r, c) for r, c, _ in scan(client, ns, cell_offset=1, cell_limit=2)] == [("r1", "b"), ("r2", "a")]
    raises_code(codes.BAD_SCAN_SPEC, scan, client, ns, row_offset=1, cell_offset=1)


def test_cell_limit_per_family(client, ns):
    make_table(client, ns, "t", "a", "b")
    client.set_cells(ns, "t", [cell("r", c, c) for c in ("a:1", "a:2", "a:3", "b:1", "b:2")]
                     + [cell("s", "a:1", "s")])
    assert [(r, c) for r, c, _ in scan(client, ns, cell_limit_per_family=2)] == [
        ("r", "a:1"), ("r", "a:2"), ("r", "b:1"), ("r", "b:2"), ("s", "a:1")]


def test_time_window_is_start_inclusive_end_exclusive(client, ns):
    make_table(client, ns, "t", "a")
    client.set_cells(ns, "t", [cell("r", "a", str(i), ts=T0 + i) for i in range(5)])
    assert [v for _, _, v in scan(client, ns, start_time=T0 + 1, end_time=T0 + 3)] == [b"2", b"1"]
    assert [v for _, _, v in scan(client, ns, start_time=T0 + 3)] == [b"4", b"3"]
    assert [v for _, _, v in scan(client, ns, end_time=T0 + 1)] == [b"0"]


def test_regexps_and_keys_only(client, ns, abc):
    assert [r for r, _, _ in scan(client, ns, row_regexp="[24]$", columns=["a"])] == ["r2", "r4"]
    assert scan(client, ns, value_regexp="^b[35]") == [("r3", "b", b"b3"), ("r5", "b", b"b5")]
    only = client.get_cells(ns, "t", ScanSpec(keys_only=True, cell_limit=2))
    assert [c.value for c in only] == [None, None] and [c.key.row for c in only] == ["r1", "r1"]
    raises_code(codes.BAD_SCAN_SPEC, scan, client, ns, row_regexp="(unclosed")


def test_column_predicates(client, ns):
    make_table(client, ns, "t", "a", "b")
    client.set_cells(ns, "t", [cell("r1", "a:x", "apple"), cell("r1", "b", "one"), cell("r2", "a:y", "apricot"),
                               cell("r2", "b", "two"), cell("r3", "a:x", "banana"), cell("r3", "b", "three")])

    def rows(*predicates, **spec):
        return scan(client, ns, column_predicates=list(predicates), **spec)
    exact = ColumnPredicate("a", None, Op.EXACT_MATCH, "apple")
    assert rows(exact, columns=["a"]) == [("r1", "a:x", b"apple")]
    assert rows(exact) == [("r1", "a:x", b"apple"), ("r1", "b", b"one")]  # other families of matching rows
    assert [r for r, _, _ in rows(ColumnPredicate("a", None, Op.PREFIX_MATCH, "ap"), columns=["a"])] == ["r1", "r2"]
    assert rows(ColumnPredicate("a", None, Op.REGEX_MATCH, "an+a"), columns=["a"]) == [("r3", "a:x", b"banana")]
    assert rows(ColumnPredicate("a", "x", Op.QUALIFIER_EXACT_MATCH), columns=["a"]) == [
        ("r1", "a:x", b"apple"), ("r3", "a:x", b"banana")]
    assert rows(ColumnPredicate("a", "x", Op.QUALIFIER_EXACT_MATCH | Op.PREFIX_MATCH, "b"), columns=["a"]) == [
        ("r3", "a:x", b"banana")]
    either = [exact, ColumnPredicate("b", None, Op.EXACT_MATCH, "two")]
    assert [r for r, _, _ in rows(*either)] == ["r1", "r2"]
    assert rows(*either, and_column_predicates=True) == []
    both = [exact, ColumnPredicate("b", None, Op.EXACT_MATCH, "one")]
    assert rows(*both, and_column_predicates=True) == [("r1", "a:x", b"apple"), ("r1", "b", b"one")]
    raises_code(codes.RANGESERVER_INVALID_COLUMNFAMILY, rows, ColumnPredicate("zz", None, Op.EXACT_MATCH, "v"))
    raises_code(codes.FAILED_EXPECTATION, rows, *[exact] * 33)


def test_scan_and_filter_rows(client, ns, abc):
    spec = dict(row_intervals=[RowInterval(r, True, r, True) for r in ("r4", "r2", "r4")], columns=["a"])
    assert [r for r, _, _ in scan(client, ns, **spec)] == ["r4", "r2", "r4"]
    assert [r for r, _, _ in scan(client, ns, scan_and_filter_rows=True, **spec)] == ["r2", "r4"]


# ------------------------------------------------------- serialized cells

def test_serialized_cells_in_and_out(client, ns):
    make_table(client, ns, "t", "a")
    client.set_cells_serialized(ns, "t", serialized(record(b"r1", b"a", b"q", b"v1", ts=T0),
                                                    record(b"", b"a", b"", b"same row")))  # empty row: previous
    assert scan(client, ns) == [("r1", "a", b"same row"), ("r1", "a:q", b"v1")]
    out = client.get_cells_serialized(ns, "t", ScanSpec(columns=["a:q"]))
    assert out == serialized(record(b"r1", b"a", b"q", b"v1", ts=T0), end=0x03)  # EOB|EOS: finished
    row = client.get_row_serialized(ns, "t", "r1")
    assert b"same row\xff" in row and row.endswith(b"v1\xff\x03")
    raises_code(codes.SERIALIZATION_VERSION_MISMATCH, client.set_cells_serialized, ns, "t", struct.pack("<i", 2))
    raises_code(codes.SERIALIZATION_INPUT_OVERRUN, client.set_cells_serialized, ns, "t",
                serialized(record(b"r", b"a", b"", b"v"))[:-4])
    raises_code(codes.BAD_FORMAT, client.set_cells_serialized, ns, "t", serialized(record(b"", b"a", b"", b"v")))


def test_serialized_scanner_and_mutator(client, ns):
    make_table(client, ns, "t", "a")
    mutator = client.mutator_open(ns, "t", 0, 0)
    client.mutator_set_cells_serialized(mutator, serialized(record(b"r1", b"a", b"", b"1")), False)
    assert scan(client, ns) == []
    client.mutator_set_cells_serialized(mutator, serialized(record(b"r2", b"a", b"", b"2"), end=0x05), False)
    assert [r for r, _, _ in scan(client, ns)] == ["r1", "r2"]  # FLUSH in the end byte flushed
    client.mutator_close(mutator)
    scanner = client.scanner_open(ns, "t", ScanSpec())
    first = client.scanner_get_row_serialized(scanner)
    assert b"r1\0" in first and first[-1] == 0x01  # more rows follow
    assert client.next_row_serialized(scanner)[-1] == 0x03  # legacy alias; the last row ends the scan
    scanner = client.scanner_open(ns, "t", ScanSpec())
    assert client.scanner_get_cells_serialized(scanner)[-1] == 0x03
