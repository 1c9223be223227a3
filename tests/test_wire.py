"""The IDL against protocol.md: method names, field ids, and bytes on the wire.

The expected bytes are built by hand with ``struct`` from the Thrift binary
protocol rules, independently of the generated code, so a change to the IDL
that would break interoperability with upstream clients fails here.
"""
from __future__ import annotations

import struct

import pytest
from thrift.protocol import TBinaryProtocol
from thrift.transport import TTransport

from htcluster._thrift import ClientService, HqlService
from htcluster.types import (Cell, CellInterval, ColumnPredicate, HqlResult, Key, KeyFlag,
                             MutateSpec, RowInterval, ScanSpec)

# protocol.md section 2: canonical name <- alias, plus methods without alias.
PAIRS = """namespace_create create_namespace namespace_open open_namespace namespace_close
close_namespace namespace_exists exists_namespace namespace_drop drop_namespace
namespace_get_listing get_listing table_exists exists_table table_get_id get_table_id
table_get_schema_str get_schema_str table_get_schema_str_with_ids get_schema_str_with_ids
table_get_schema get_schema table_get_splits get_table_splits table_rename rename_table
table_drop drop_table scanner_open open_scanner scanner_get_cells next_cells
scanner_get_cells_as_arrays next_cells_as_arrays scanner_get_cells_serialized
next_cells_serialized scanner_get_row next_row scanner_get_row_as_arrays next_row_as_arrays
scanner_get_row_serialized next_row_serialized scanner_close close_scanner future_open
open_future future_get_result get_future_result future_get_result_as_arrays
get_future_result_as_arrays future_get_result_serialized get_future_result_serialized
future_cancel cancel_future future_close close_future async_scanner_open open_scanner_async
async_scanner_cancel cancel_scanner_async async_scanner_close close_scanner_async
mutator_open open_mutator mutator_flush flush_mutator mutator_close close_mutator
async_mutator_open open_mutator_async async_mutator_set_cell set_cell_async
async_mutator_set_cell_as_array set_cell_as_array_async async_mutator_set_cells
set_cells_async async_mutator_set_cells_as_arrays set_cells_as_arrays_async
async_mutator_set_cells_serialized set_cells_serialized_async async_mutator_flush
flush_mutator_async async_mutator_cancel cancel_mutator_async async_mutator_close
close_mutator_async shared_mutator_refresh refresh_shared_mutator shared_mutator_set_cells
offer_cells shared_mutator_set_cell offer_cell shared_mutator_set_cells_as_arrays
offer_cells_as_arrays shared_mutator_set_cell_as_array offer_cell_as_array""".split()
SINGLES = """get_tables table_create table_alter refresh_table get_cell get_row get_row_as_arrays
get_row_serialized get_cells get_cells_as_arrays get_cells_serialized set_cell set_cells
set_cell_as_array set_cells_as_arrays set_cells_serialized future_is_empty future_is_full
future_is_cancelled future_has_outstanding mutator_set_cell mutator_set_cells
mutator_set_cell_as_array mutator_set_cells_as_arrays mutator_set_cells_serialized status
error_get_text generate_guid create_cell_unique shutdown""".split()
HQL = "hql_query hql_exec hql_query_as_arrays hql_exec_as_arrays hql_query2 hql_exec2".split()


def service_methods(service) -> set[str]:
    return {name for name in vars(service.Iface) if not name.startswith("_")}


def test_every_method_of_protocol_md_is_in_the_idl():
    client_service = service_methods(ClientService)
    assert len(PAIRS) == 2 * 48
    assert client_service == set(PAIRS) | set(SINGLES)
    assert len(client_service) == 126
    assert service_methods(HqlService) == set(HQL)


def encode_call(method: str, *args) -> bytes:
    buf = TTransport.TMemoryBuffer()
    client = HqlService.Client(TBinaryProtocol.TBinaryProtocol(buf))
    client._seqid = 0
    getattr(client, "send_" + method)(*args)
    return buf.getvalue()


# -- a hand-written binary-protocol encoder (Thrift spec, strict write) ------------
BOOL, I32, I64, STRING, STRUCT, LIST = 2, 8, 10, 11, 12, 15


def fld(ftype: int, fid: int, payload: bytes) -> bytes:
    return struct.pack(">bh", ftype, fid) + payload


def s(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">i", len(data)) + data


def i32(v: int) -> bytes:
    return struct.pack(">i", v)


def i64(v: int) -> bytes:
    return struct.pack(">q", v)


def b(v: bool) -> bytes:
    return struct.pack(">?", v)


STOP = b"\x00"


def call_header(name: str) -> bytes:
    return struct.pack(">I", 0x80010001) + s(name) + i32(0)


def test_hql_query_bytes():
    expected = call_header("hql_query") + fld(I64, 1, i64(7)) + fld(STRING, 2, s("SHOW TABLES")) + STOP
    assert encode_call("hql_query", 7, "SHOW TABLES") == expected


def test_scanner_open_bytes_follow_field_ids():
    spec = ScanSpec(row_intervals=[RowInterval(start_row="a", end_row="b", end_inclusive=False)],
                    versions=1, columns=["cf:q"], cell_limit=5, row_offset=None,
                    column_predicates=[ColumnPredicate("cf", None, 257, "v")])
    interval = (fld(STRING, 1, s("a")) + fld(BOOL, 2, b(True)) + fld(STRING, 3, s("b"))
                + fld(BOOL, 4, b(False)) + STOP)
    predicate = fld(STRING, 1, s("cf")) + fld(I32, 3, i32(257)) + fld(STRING, 4, s("v")) + STOP
    # writers emit fields in id order (readers match by id, so order never matters)
    spec_bytes = (fld(LIST, 1, struct.pack(">bi", STRUCT, 1) + interval)
                  + fld(BOOL, 3, b(False)) + fld(I32, 4, i32(1)) + fld(I32, 5, i32(0))
                  + fld(LIST, 8, struct.pack(">bi", STRING, 1) + s("cf:q"))
                  + fld(BOOL, 9, b(False)) + fld(I32, 10, i32(0))
                  + fld(BOOL, 13, b(False)) + fld(I32, 14, i32(5)) + fld(I32, 16, i32(0))
                  + fld(LIST, 17, struct.pack(">bi", STRUCT, 1) + predicate)
                  + fld(BOOL, 18, b(False)) + fld(BOOL, 19, b(False)) + STOP)
    expected = (call_header("scanner_open") + fld(I64, 1, i64(42)) + fld(STRING, 2, s("t"))
                + fld(STRUCT, 3, spec_bytes) + STOP)
    assert encode_call("scanner_open", 42, "t", spec) == expected


def test_set_cells_bytes():
    cell = Cell(Key(row="r", column_family="cf", column_qualifier="", timestamp=9,
                    flag=KeyFlag.DELETE_CELL), b"\x00v")
    key = (fld(STRING, 1, s("r")) + fld(STRING, 2, s("cf")) + fld(STRING, 3, s(""))
           + fld(I64, 4, i64(9)) + fld(I32, 6, i32(2)) + STOP)
    cell_bytes = fld(STRUCT, 1, key) + fld(STRING, 2, i32(2) + b"\x00v") + STOP
    expected = (call_header("set_cells") + fld(I64, 1, i64(3)) + fld(STRING, 2, s("t"))
                + fld(LIST, 3, struct.pack(">bi", STRUCT, 1) + cell_bytes) + STOP)
    assert encode_call("set_cells", 3, "t", [cell]) == expected


@pytest.mark.parametrize("method, args, fields", [
    ("mutator_open", (1, "t", 2, 1000), [(I64, 1), (STRING, 2), (I32, 3), (I32, 4)]),
    ("namespace_drop", ("ns", True), [(STRING, 1), (BOOL, 2)]),
    ("hql_exec", (1, "x", True, False), [(I64, 1), (STRING, 2), (BOOL, 3), (BOOL, 4)]),
    ("get_cell", (1, "t", "r", "cf:q"), [(I64, 1), (STRING, 2), (STRING, 3), (STRING, 4)]),
    ("future_get_result", (5, 100), [(I64, 1), (I32, 2)]),
    ("error_get_text", (22,), [(I32, 1)]),
])
def test_argument_field_ids_and_types(method, args, fields):
    buf = TTransport.TMemoryBuffer(encode_call(method, *args))
    proto = TBinaryProtocol.TBinaryProtocol(buf)
    name, _, _ = proto.readMessageBegin()
    assert name == method
    proto.readStructBegin()
    seen = []
    while True:
        _, ftype, fid = proto.readFieldBegin()
        if ftype == 0:
            break
        seen.append((ftype, fid))
        proto.skip(ftype)
    assert seen == fields


def test_struct_defaults_and_constructor_order():
    assert ScanSpec(None, None, None, 1).versions == 1  # protocol.md 3: field 14 declared before 10
    assert list(ScanSpec.__init__.__code__.co_varnames[1:11]) == [
        "row_intervals", "cell_intervals", "return_deletes", "versions", "row_limit",
        "start_time", "end_time", "columns", "keys_only", "cell_limit"]
    assert (MutateSpec().appname, MutateSpec().flush_interval, MutateSpec().flags) == ("", 1000, 2)
    assert Key().flag == KeyFlag.INSERT == 255
    assert CellInterval().start_inclusive is True and RowInterval().end_inclusive is True
    assert HqlResult().cells is None


def test_accelerated_protocol_writes_the_same_bytes():
    pytest.importorskip("thrift.protocol.fastbinary")
    spec = ScanSpec(row_intervals=[RowInterval("a", True, "z", False)], columns=["x"], versions=2)
    out = []
    for factory in (TBinaryProtocol.TBinaryProtocol, TBinaryProtocol.TBinaryProtocolAccelerated):
        buf = TTransport.TMemoryBuffer()
        client = HqlService.Client(factory(buf))
        client.send_get_cells(1, "t", spec)
        out.append(buf.getvalue())
    assert out[0] == out[1]
