"""Row keys and other Thrift strings must be UTF-8 without NUL; the broker refuses, never replaces (issue 15, item 8).

Thrift's accelerated decoder turned invalid UTF-8 into U+FFFD, so writing row
``b'\\xff'`` = A and then ``b'\\xfe'`` = B stored both under ``'\\ufffd'``: one
row, B, and A lost without an error.  Now such a call is refused whole with
``ClientException`` (BAD_KEY for the parts of a cell key, INVALID_ARGUMENT for
other strings) and nothing of it is done.  The clients here send raw bytes
for ``string`` fields, as a client that does not check them would.
"""
from __future__ import annotations

from typing import Any, Iterator

import pytest
from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
from thrift.transport import TSocket, TTransport

from brokertest import cell, make_table, raises_code, record, serialized
from htcluster import codes
from htcluster._thrift import HqlService
from htcluster.types import Cell, CellInterval, Key, RowInterval, ScanSpec


@pytest.fixture
def raw(broker) -> Iterator[Any]:
    """A client on the accelerated protocol, which sends ``bytes`` given for a ``string`` field unchanged."""
    sock = TSocket.TSocket(broker.host, broker.port)
    sock.setTimeout(30_000)
    transport = TTransport.TFramedTransport(sock)
    transport.open()
    yield HqlService.Client(TBinaryProtocolAccelerated(transport))
    transport.close()


@pytest.fixture
def table(raw, ns_name) -> tuple[int, str]:
    ns = raw.namespace_open(ns_name)
    make_table(raw, ns, "t", "c")
    return ns, "t"


def everything(client, ns: int, name: str) -> list[tuple]:
    return [(c.key.row, c.value) for c in client.get_cells(ns, name, ScanSpec())]


def test_distinct_binary_row_keys_are_refused_not_merged(raw, table):
    ns, name = table
    first = raises_code(codes.BAD_KEY, raw.set_cell, ns, name, Cell(Key(row=b"\xff", column_family="c"), b"A"))
    second = raises_code(codes.BAD_KEY, raw.set_cell, ns, name, Cell(Key(row=b"\xfe", column_family="c"), b"B"))
    assert "cell.key.row" in first.message and "0xff at offset 0" in first.message
    assert "not valid UTF-8" in second.message and "0xfe" in second.message
    assert everything(raw, ns, name) == []  # nothing written, nothing merged
    raises_code(codes.BAD_KEY, raw.get_cell, ns, name, b"\xff", "c")
    raises_code(codes.BAD_KEY, raw.get_row, ns, name, b"ab\xfe")


def test_a_batch_with_one_bad_key_writes_nothing(raw, table):
    ns, name = table
    cells = [Cell(Key(row="ok", column_family="c"), b"1"), Cell(Key(row="fine", column_family="c"), b"2"),
             Cell(Key(row="x", column_family="c", column_qualifier=b"q\xc3"), b"3")]  # a truncated sequence
    error = raises_code(codes.BAD_KEY, raw.set_cells, ns, name, cells)
    assert "cells[2].key.column_qualifier" in error.message
    raises_code(codes.BAD_KEY, raw.set_cells_as_arrays, ns, name, [["ok", "c", "", "v"], [b"\x80", "c", "", "v"]])
    mutator = raw.mutator_open(ns, name, 0, 0)
    raises_code(codes.BAD_KEY, raw.mutator_set_cells, mutator, [Cell(Key(row=b"\xff\xfe", column_family="c"), b"")])
    raw.mutator_close(mutator)
    assert everything(raw, ns, name) == []


def test_a_replacement_character_sent_as_utf8_is_a_key_like_any_other(raw, table):
    ns, name = table
    raw.set_cells(ns, name, [cell("\ufffd", "c", "sent as EF BF BD"), cell("x\ufffdy", "c", "inside")])
    assert everything(raw, ns, name) == [("x\ufffdy", b"inside"), ("\ufffd", b"sent as EF BF BD")]


def test_other_strings_that_are_not_utf8_are_invalid_arguments(raw, table, ns_name):
    ns, name = table
    error = raises_code(codes.INVALID_ARGUMENT, raw.table_exists, ns, b"t\xff")
    assert "table_exists: name" in error.message
    raises_code(codes.INVALID_ARGUMENT, raw.namespace_exists, b"\xc0\xaf")
    raises_code(codes.INVALID_ARGUMENT, raw.hql_query, ns, b"SELECT * FROM t WHERE ROW = '\xff'")
    raises_code(codes.INVALID_ARGUMENT, raw.get_cells, ns, name, ScanSpec(columns=[b"c\xff"]))
    raises_code(codes.BAD_KEY, raw.get_cells, ns, name,
                ScanSpec(row_intervals=[RowInterval(start_row=b"\xff", start_inclusive=True)]))
    assert raw.status().code == 0  # the connection goes on


def test_serialized_cells_with_keys_that_are_not_utf8_are_refused(client, ns):
    make_table(client, ns, "s", "c")
    buffer = serialized(record(b"good", b"c", b"", b"1"), record(b"\xffbad", b"c", b"", b"2"))
    error = raises_code(codes.BAD_KEY, client.set_cells_serialized, ns, "s", buffer)
    assert "row key" in error.message and "not valid UTF-8" in error.message
    buffer = serialized(record(b"good", b"c", b"q\xe2\x82", b"1"))
    raises_code(codes.BAD_KEY, client.set_cells_serialized, ns, "s", buffer)
    assert client.get_cells(ns, "s", ScanSpec()) == []


def test_nul_in_a_row_key_is_refused_for_reads_as_for_writes(client, ns):
    make_table(client, ns, "n", "c")
    raises_code(codes.BAD_KEY, client.set_cell, ns, "n", cell("a\0b", "c", "v"))
    raises_code(codes.BAD_KEY, client.get_row, ns, "n", "a\0b")
    raises_code(codes.BAD_KEY, client.get_cell, ns, "n", "a\0b", "c")
    raises_code(codes.BAD_KEY, client.get_cells, ns, "n",
                ScanSpec(row_intervals=[RowInterval("a", True, "a\0", True)]))
    raises_code(codes.BAD_KEY, client.get_cells, ns, "n",
                ScanSpec(cell_intervals=[CellInterval("a\0", "c", True, "b", "c", True)]))
    raises_code(codes.BAD_KEY, client.get_cells, ns, "n",
                ScanSpec(row_intervals=[RowInterval(start_row_binary=b"a\0b", start_inclusive=True)]))

