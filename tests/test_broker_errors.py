"""Every error code of protocol.md section 4, triggered through a real stand-in broker.

``TRIGGERS`` holds, for each code of the section-4 table the stand-in can
raise, one entry per failure the table lists (``cause``, then a call on a raw
client ``c`` given a fresh namespace, by id ``ns`` and by ``name``, holding
table ``t`` with families ``a`` and ``b``).  ``NOT_RAISED`` names the codes
it cannot raise, with the reason, and ``TESTED_APART`` those with a test of
their own; ``test_the_table_covers_section_4`` fails when a code is in none.
"""
from __future__ import annotations

import sqlite3
import struct
from typing import Any, Callable

from pathlib import Path

import pytest
from thrift.Thrift import TApplicationException

from brokertest import cell, family, make_table, raises_code, record, serialized
from htcluster import codes
from htcluster.testing import LocalBroker
from htcluster.types import (AccessGroupOptions, AccessGroupSpec, CellInterval, ColumnPredicate, KeyFlag,
                             RowInterval, ScanSpec, Schema)

#: Every code of the table in protocol.md section 4, in its order.
SECTION_4 = [
    codes.THRIFTBROKER_BAD_NAMESPACE_ID, codes.THRIFTBROKER_BAD_SCANNER_ID, codes.THRIFTBROKER_BAD_MUTATOR_ID,
    codes.THRIFTBROKER_BAD_FUTURE_ID, codes.NAMESPACE_DOES_NOT_EXIST, codes.NAMESPACE_EXISTS,
    codes.NAME_ALREADY_IN_USE, codes.BAD_NAMESPACE, codes.INVALID_OPERATION, codes.TABLE_NOT_FOUND,
    codes.MASTER_TABLE_EXISTS, codes.SYNTAX_ERROR, codes.BAD_SCHEMA, codes.HQL_PARSE_ERROR, codes.HQL_BAD_COMMAND,
    codes.HQL_BAD_LOAD_FILE_FORMAT, codes.BAD_KEY, codes.RANGESERVER_INVALID_COLUMNFAMILY, codes.BAD_SCAN_SPEC,
    codes.FAILED_EXPECTATION, codes.REQUEST_TIMEOUT, codes.ALREADY_EXISTS, codes.SERIALIZATION_VERSION_MISMATCH,
    codes.SERIALIZATION_INPUT_OVERRUN, codes.BAD_FORMAT, codes.NOT_IMPLEMENTED, codes.FILE_NOT_FOUND,
    codes.RANGESERVER_REVISION_ORDER_ERROR, codes.HYPERSPACE_DIR_NOT_EMPTY,
]

#: Codes (and causes) of section 4 the stand-in cannot produce, and why.
NOT_RAISED = {
    codes.THRIFTBROKER_BAD_FUTURE_ID: "futures are not implemented: every future_* method answers NOT_IMPLEMENTED",
    codes.ALREADY_EXISTS: "create_cell_unique answers NOT_IMPLEMENTED (so do its BAD_SCAN_SPEC and "
                          "FAILED_EXPECTATION causes)",
    # Causes of raised codes that cannot occur here:
    # - BAD_KEY for a row starting 0xFF 0xFF: the Thrift decoder turns bytes that are not UTF-8 into
    #   U+FFFD, so the reserved end-of-table row never reaches the broker (a Python client cannot send
    #   it at all: str is encoded as UTF-8).
    # - REQUEST_TIMEOUT from future_get_result or from a backend call: neither exists here; the
    #   stand-in's REQUEST_TIMEOUT is a data file locked by another writer (test below).
    # - NOT_IMPLEMENTED for async mutator results as arrays: async mutators are not implemented.
    # Outside the table: COLUMN_FAMILY_NOT_FOUND (59) is thrown by nothing upstream; PROTOCOL_ERROR,
    # REQUEST_TRUNCATED and COMM_* concern the broker's own links to Hyperspace, the Master and
    # RangeServers, which the stand-in does not have.  INVALID_ARGUMENT answers a required argument
    # left out of a call (test_missing_required_arguments_are_named below).
}

#: Codes triggered by a test of their own, which needs its own broker.
TESTED_APART = {
    codes.REQUEST_TIMEOUT: "test_a_data_file_locked_by_another_writer_answers_request_timeout",
    # file statements need a broker started with --files DIR
    codes.HQL_BAD_LOAD_FILE_FORMAT: "test_broker_files.py::test_bad_file_writes_nothing",
    codes.FILE_NOT_FOUND: "test_broker_files.py::test_missing_file",
}

Trigger = Callable[[Any, int, str], Any]


def _closed_namespace(c: Any, ns: int, name: str) -> int:
    other = c.namespace_open(name)
    c.namespace_close(other)
    return other


def _closed_scanner(c: Any, ns: int, name: str) -> int:
    scanner = c.scanner_open(ns, "t", ScanSpec())
    c.scanner_close(scanner)
    return scanner


def _stale_revision(c: Any, ns: int, name: str) -> None:
    stale = cell("r", "a", "v")
    stale.key.revision = 1
    c.set_cell(ns, "t", stale)


TRIGGERS: list[tuple[int, str, Trigger]] = [
    (codes.THRIFTBROKER_BAD_NAMESPACE_ID, "closed namespace id", lambda c, ns, name: c.get_tables(_closed_namespace(c, ns, name))),
    (codes.THRIFTBROKER_BAD_NAMESPACE_ID, "unknown id in HQL", lambda c, ns, name: c.hql_query(424242, "SHOW TABLES")),
    (codes.THRIFTBROKER_BAD_SCANNER_ID, "closed scanner", lambda c, ns, name: c.scanner_get_cells(_closed_scanner(c, ns, name))),
    (codes.THRIFTBROKER_BAD_SCANNER_ID, "a mutator id", lambda c, ns, name: c.scanner_close(c.mutator_open(ns, "t", 0, 0))),
    (codes.THRIFTBROKER_BAD_MUTATOR_ID, "a scanner id",
     lambda c, ns, name: c.mutator_flush(c.scanner_open(ns, "t", ScanSpec()))),
    (codes.NAMESPACE_DOES_NOT_EXIST, "open a missing name", lambda c, ns, name: c.namespace_open("no/such/ns")),
    (codes.NAMESPACE_DOES_NOT_EXIST, "open a table name", lambda c, ns, name: c.namespace_open(f"{name}/t")),
    (codes.NAMESPACE_DOES_NOT_EXIST, "drop without if_exists", lambda c, ns, name: c.namespace_drop("no_such_ns", False)),
    (codes.NAMESPACE_DOES_NOT_EXIST, "create a/b without a", lambda c, ns, name: c.namespace_create("no_such_ns/b")),
    (codes.NAMESPACE_EXISTS, "create an existing one", lambda c, ns, name: c.namespace_create(name)),
    (codes.NAME_ALREADY_IN_USE, "namespace over a table", lambda c, ns, name: c.namespace_create(f"{name}/t")),
    (codes.NAME_ALREADY_IN_USE, "table over a namespace",
     lambda c, ns, name: (c.namespace_create(f"{name}/sub"), make_table(c, ns, "sub", "a"))),
    (codes.NAME_ALREADY_IN_USE, "rename onto a table",
     lambda c, ns, name: (make_table(c, ns, "u", "a"), c.table_rename(ns, "t", "u"))),
    (codes.BAD_NAMESPACE, "HQL USE", lambda c, ns, name: c.hql_query(ns, "USE sys")),
    (codes.BAD_NAMESPACE, "drop a table as a namespace", lambda c, ns, name: c.namespace_drop(f"{name}/t", True)),
    (codes.INVALID_OPERATION, "drop sys", lambda c, ns, name: c.namespace_drop("sys", True)),
    (codes.INVALID_OPERATION, "drop tmp", lambda c, ns, name: c.namespace_drop("/tmp", False)),
    (codes.TABLE_NOT_FOUND, "scan", lambda c, ns, name: c.get_cells(ns, "missing", ScanSpec())),
    (codes.TABLE_NOT_FOUND, "write", lambda c, ns, name: c.set_cell(ns, "missing", cell("r", "a"))),
    (codes.TABLE_NOT_FOUND, "open a scanner", lambda c, ns, name: c.scanner_open(ns, "missing", ScanSpec())),
    (codes.TABLE_NOT_FOUND, "open a mutator", lambda c, ns, name: c.mutator_open(ns, "missing", 0, 0)),
    (codes.TABLE_NOT_FOUND, "schema", lambda c, ns, name: c.table_get_schema_str(ns, "missing")),
    (codes.TABLE_NOT_FOUND, "drop without if_exists", lambda c, ns, name: c.table_drop(ns, "missing", False)),
    (codes.MASTER_TABLE_EXISTS, "create an existing table", lambda c, ns, name: make_table(c, ns, "t", "a")),
    (codes.SYNTAX_ERROR, "create ^name", lambda c, ns, name: make_table(c, ns, "^t", "a")),
    (codes.SYNTAX_ERROR, "rename to ^name", lambda c, ns, name: c.table_rename(ns, "t", "^t")),
    (codes.BAD_SCHEMA, "undefined access group",
     lambda c, ns, name: c.table_create(ns, "s", Schema(column_families={"a": family("a", "nowhere")}))),
    (codes.BAD_SCHEMA, "bad bloom filter", lambda c, ns, name: c.table_create(ns, "s", Schema(
        access_groups={"g": AccessGroupSpec(name="g", options=AccessGroupOptions(bloom_filter="sometimes"))}))),
    (codes.HQL_PARSE_ERROR, "trailing ';'", lambda c, ns, name: c.hql_query(ns, "SHOW TABLES;")),
    (codes.HQL_PARSE_ERROR, "unknown statement", lambda c, ns, name: c.hql_query(ns, "COMPACT TABLE t")),
    (codes.HQL_BAD_COMMAND, "duplicate family", lambda c, ns, name: c.hql_query(ns, "CREATE TABLE s (a, a)")),
    (codes.BAD_KEY, "unknown family", lambda c, ns, name: c.set_cell(ns, "t", cell("r", "nope", "v"))),
    (codes.BAD_KEY, "empty row", lambda c, ns, name: c.set_cell(ns, "t", cell("", "a", "v"))),
    (codes.BAD_KEY, "insert without a family", lambda c, ns, name: c.set_cell(ns, "t", cell("r", "", "v"))),
    (codes.BAD_KEY, "DELETE_CF without a family",
     lambda c, ns, name: c.set_cell(ns, "t", cell("r", "", flag=KeyFlag.DELETE_CF))),
    (codes.BAD_KEY, "DELETE_CELL without a family",
     lambda c, ns, name: c.set_cell(ns, "t", cell("r", ":q", flag=KeyFlag.DELETE_CELL))),
    (codes.BAD_KEY, "DELETE_CELL_VERSION without a timestamp",
     lambda c, ns, name: c.set_cell(ns, "t", cell("r", "a", flag=KeyFlag.DELETE_CELL_VERSION))),
    (codes.BAD_KEY, "CellAsArray of 0 items", lambda c, ns, name: c.set_cell_as_array(ns, "t", [])),
    (codes.BAD_KEY, "CellAsArray of 8 items", lambda c, ns, name: c.set_cell_as_array(ns, "t", ["r", "a", "", "v"] * 2)),
    (codes.BAD_KEY, "CellAsArray non-numeric", lambda c, ns, name: c.set_cell_as_array(ns, "t", ["r", "a", "", "v", "x"])),
    (codes.BAD_KEY, "HQL INSERT, unknown family", lambda c, ns, name: c.hql_query(ns, "INSERT INTO t VALUES ('r', 'z', 'v')")),
    (codes.RANGESERVER_INVALID_COLUMNFAMILY, "ScanSpec.columns",
     lambda c, ns, name: c.get_cells(ns, "t", ScanSpec(columns=["nope"]))),
    (codes.RANGESERVER_INVALID_COLUMNFAMILY, "on the first scanner fetch",
     lambda c, ns, name: c.scanner_get_cells(c.scanner_open(ns, "t", ScanSpec(columns=["nope"])))),
    (codes.RANGESERVER_INVALID_COLUMNFAMILY, "HQL SELECT list", lambda c, ns, name: c.hql_query(ns, "SELECT nope FROM t")),
    (codes.BAD_SCAN_SPEC, "row and cell intervals", lambda c, ns, name: c.scanner_open(ns, "t", ScanSpec(
        row_intervals=[RowInterval("a", True, "b", True)], cell_intervals=[CellInterval("a", "a", True, "b", "a", True)]))),
    (codes.BAD_SCAN_SPEC, "start > end",
     lambda c, ns, name: c.get_cells(ns, "t", ScanSpec(row_intervals=[RowInterval("b", True, "a", True)]))),
    (codes.BAD_SCAN_SPEC, "empty interval",
     lambda c, ns, name: c.get_cells(ns, "t", ScanSpec(row_intervals=[RowInterval("a", True, "a", False)]))),
    (codes.BAD_SCAN_SPEC, "both offsets", lambda c, ns, name: c.get_cells(ns, "t", ScanSpec(row_offset=1, cell_offset=1))),
    (codes.FAILED_EXPECTATION, "33 column predicates", lambda c, ns, name: c.get_cells(ns, "t", ScanSpec(
        column_predicates=[ColumnPredicate("a", None, 1, "v")] * 33))),
    (codes.SERIALIZATION_VERSION_MISMATCH, "version 2",
     lambda c, ns, name: c.set_cells_serialized(ns, "t", struct.pack("<i", 2) + b"\x01")),
    (codes.SERIALIZATION_INPUT_OVERRUN, "truncated",
     lambda c, ns, name: c.set_cells_serialized(ns, "t", serialized(record(b"r", b"a", b"", b"v"))[:-3])),
    (codes.BAD_FORMAT, "first row empty", lambda c, ns, name: c.set_cells_serialized(ns, "t", serialized(record(b"", b"a", b"", b"v")))),
    (codes.NOT_IMPLEMENTED, "futures", lambda c, ns, name: c.future_open(0)),
    (codes.NOT_IMPLEMENTED, "HQL LOAD DATA", lambda c, ns, name: c.hql_query(ns, "LOAD DATA INFILE 'x.tsv' INTO TABLE t")),
    (codes.RANGESERVER_REVISION_ORDER_ERROR, "revision not increasing", _stale_revision),
    (codes.HYPERSPACE_DIR_NOT_EMPTY, "drop a namespace holding a table",
     lambda c, ns, name: c.namespace_drop(name, False)),
]


@pytest.fixture
def env(client, ns, ns_name):
    """``(client, namespace id, namespace name)`` of a fresh namespace holding table 't' (families a, b)."""
    make_table(client, ns, "t", "a", "b")
    return client, ns, ns_name


def test_the_table_covers_section_4():
    raised = {code for code, _, _ in TRIGGERS} | set(TESTED_APART)
    assert raised.isdisjoint(NOT_RAISED)
    assert set(SECTION_4) == raised | set(NOT_RAISED)
    for name in TESTED_APART.values():
        module, _, test = name.rpartition("::")
        source = (Path(__file__).with_name(module).read_text() if module else "")
        assert (f"def {test}(" in source) if module else test in globals(), name
    assert len(SECTION_4) == len(set(SECTION_4)) == 29


@pytest.mark.parametrize("code, cause, trigger", TRIGGERS, ids=[f"{codes.text(c)}: {why}" for c, why, _ in TRIGGERS])
def test_each_cause_answers_its_code(env, code, cause, trigger):
    c, ns, name = env
    error = raises_code(code, trigger, c, ns, name)
    assert error.message.startswith(f"{codes.text(code)} - ") and len(error.message) > len(codes.text(code)) + 3
    assert c.status().code == 0  # an error is an answer: the connection goes on


def test_error_get_text_of_every_code(client):
    for code in SECTION_4:
        assert client.error_get_text(code) == codes.text(code) != "ERROR NOT REGISTERED"
    assert client.error_get_text(59) == "ERROR NOT REGISTERED"  # COLUMN_FAMILY_NOT_FOUND: never thrown upstream


def test_get_cell_with_an_empty_row_is_an_application_exception(env):
    c, ns, _ = env
    with pytest.raises(TApplicationException) as info:  # thrown outside the declared exceptions (protocol.md 1.1)
        c.get_cell(ns, "t", "", "a")
    assert info.value.message.startswith(codes.text(codes.BAD_KEY))
    assert c.status().code == 0


def test_ids_belong_to_their_connection(broker, raw_client_factory, env):
    c, ns, _ = env
    scanner = c.scanner_open(ns, "t", ScanSpec())
    mutator = c.mutator_open(ns, "t", 0, 0)
    other = raw_client_factory(broker.address)
    raises_code(codes.THRIFTBROKER_BAD_NAMESPACE_ID, other.get_tables, ns)
    raises_code(codes.THRIFTBROKER_BAD_SCANNER_ID, other.scanner_get_cells, scanner)
    raises_code(codes.THRIFTBROKER_BAD_MUTATOR_ID, other.mutator_close, mutator)
    assert c.scanner_get_cells(scanner) == [] and c.get_tables(ns) == ["t"]  # still valid where they were made
    c.mutator_close(mutator)


def test_a_data_file_locked_by_another_writer_answers_request_timeout(tmp_path, raw_client_factory):
    data = tmp_path / "locked.sqlite"
    with LocalBroker(data, extra_args=("--busy-timeout", "0.3")) as local:
        c = raw_client_factory(local.address)
        c.namespace_create("locked")
        ns = c.namespace_open("locked")
        make_table(c, ns, "t", "a")
        holder = sqlite3.connect(data, isolation_level=None)  # a writer stalled mid-write (a SIGSTOPped broker)
        holder.execute("BEGIN IMMEDIATE")
        try:
            error = raises_code(codes.REQUEST_TIMEOUT, c.set_cell, ns, "t", cell("r", "a", "v"))
            assert "retry later" in error.message
            assert c.get_tables(ns) == ["t"]  # reads do not wait for the writer
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        c.set_cell(ns, "t", cell("r", "a", "v"))  # the lock is gone: writes go through again
        assert len(c.get_cells(ns, "t", ScanSpec())) == 1  # and the refused write left nothing behind


# ------------------------------------------------- keys and missing arguments (issue 10)

@pytest.mark.parametrize("row, column, part, offset", [
    ("a\0b", "a", "row key", 1),
    ("\0", "a", "row key", 0),
    ("r", "a:q\0x", "column qualifier", 1),
    ("r", "a\0:q", "column family", 1),
    ("\u00e9t\u00e9\0", "a", "row key", 5),  # the offset counts UTF-8 bytes
])
def test_a_nul_byte_in_a_key_is_refused_with_its_offset(env, row, column, part, offset):
    c, ns, _ = env
    for write in (lambda: c.set_cell(ns, "t", cell(row, column, "v")),
                  lambda: c.set_cells_as_arrays(ns, "t", [[row, *column.split(":", 1), "v"]]),
                  lambda: c.mutator_set_cells(c.mutator_open(ns, "t", 0, 0), [cell(row, column, "v")])):
        error = raises_code(codes.BAD_KEY, write)
        assert f"{part} " in error.message and f"byte offset {offset}" in error.message, error.message
    assert c.get_cells(ns, "t", ScanSpec()) == []  # nothing was stored under a cut key


@pytest.mark.parametrize("method, args, argument", [
    ("hql_query", lambda ns: (ns, None), "command"),
    ("hql_exec", lambda ns: (ns, None, False, False), "command"),
    ("hql_query", lambda ns: (None, "SHOW TABLES"), "ns"),
    ("get_cells", lambda ns: (ns, None, ScanSpec()), "table_name"),
    ("set_cell", lambda ns: (ns, "t", None), "cell"),
    ("table_create", lambda ns: (ns, "u", None), "schema"),
    ("namespace_exists", lambda ns: (None,), "ns"),
    ("namespace_open", lambda ns: (None,), "ns"),
    ("scanner_get_cells", lambda ns: (None,), "scanner"),
])
def test_missing_required_arguments_are_named(env, method, args, argument):
    c, ns, _ = env
    error = raises_code(codes.INVALID_ARGUMENT, getattr(c, method), *args(ns))
    assert f"'{argument}'" in error.message and method in error.message, error.message
    assert c.status().code == 0


def test_namespace_open_without_a_name_is_refused_but_the_root_opens(env):
    c, ns, name = env
    raises_code(codes.INVALID_ARGUMENT, c.namespace_open, None)
    for root in ("/", ""):
        listing = c.namespace_get_listing(c.namespace_open(root))
        assert any(entry.name == name and entry.is_namespace for entry in listing)


def test_absent_optional_arguments_keep_their_meaning(env):
    c, ns, _ = env
    c.set_cells(ns, "t", None)  # no cells: nothing written
    c.set_cell(ns, "t", cell("r", "a", "v"))
    assert len(c.get_cells(ns, "t", None)) == 1  # no ScanSpec: every cell
