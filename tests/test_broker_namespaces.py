"""The stand-in broker: namespaces, tables, schemas, status, aliases and NOT_IMPLEMENTED.

protocol.md sections 2, 4, 5.1 and 5.4.
"""
from __future__ import annotations

import inspect
import re
import uuid

from brokertest import cell, family, keys, make_table, raises_code
from htcluster import codes
from htcluster._thrift import HqlService
from htcluster.broker.handler import ALIASES, Handler
from htcluster.types import AccessGroupSpec, ColumnFamilyOptions, NamespaceListing, ScanSpec, Schema, Status


def unique(prefix: str = "n") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


# ------------------------------------------------------------------ namespaces

def test_namespace_lifecycle_with_nested_names_and_leading_slash(client):
    top = unique()
    assert not client.namespace_exists(top)
    client.namespace_create("/" + top)
    assert client.namespace_exists(top) and client.namespace_exists("/" + top)
    client.namespace_create(f"{top}/inner")
    assert client.namespace_exists(f"/{top}/inner")
    first, second = client.namespace_open(top), client.namespace_open(top)
    assert first != second and 0 < first < 2**32 and 0 < second < 2**32
    client.namespace_close(first)
    raises_code(codes.THRIFTBROKER_BAD_NAMESPACE_ID, client.namespace_close, first)
    raises_code(codes.THRIFTBROKER_BAD_NAMESPACE_ID, client.get_tables, first)
    assert client.get_tables(second) == []  # the other id stays valid
    raises_code(codes.HYPERSPACE_DIR_NOT_EMPTY, client.namespace_drop, top, False)
    client.namespace_drop(f"{top}/inner", False)
    client.namespace_drop(top, False)
    assert not client.namespace_exists(top)


def test_namespace_errors(client, ns):
    name = unique()
    raises_code(codes.NAMESPACE_DOES_NOT_EXIST, client.namespace_open, name)
    raises_code(codes.NAMESPACE_DOES_NOT_EXIST, client.namespace_create, f"{name}/child")
    raises_code(codes.NAMESPACE_DOES_NOT_EXIST, client.namespace_drop, name, False)
    client.namespace_drop(name, True)  # if_exists: no error
    client.namespace_create(name)
    raises_code(codes.NAMESPACE_EXISTS, client.namespace_create, name)
    for system in ("sys", "tmp", "/sys"):
        assert client.namespace_exists(system)
        raises_code(codes.INVALID_OPERATION, client.namespace_drop, system, True)
    raises_code(codes.THRIFTBROKER_BAD_NAMESPACE_ID, client.get_tables, 0)


def test_names_shared_by_tables_and_namespaces(client, ns, ns_name):
    make_table(client, ns, "tbl", "a")
    assert client.namespace_get_listing(ns) == [NamespaceListing("tbl", False)]
    raises_code(codes.NAME_ALREADY_IN_USE, client.namespace_create, f"{ns_name}/tbl")
    raises_code(codes.BAD_NAMESPACE, client.namespace_drop, f"{ns_name}/tbl", True)
    raises_code(codes.NAMESPACE_DOES_NOT_EXIST, client.namespace_open, f"{ns_name}/tbl")
    assert not client.namespace_exists(f"{ns_name}/tbl")
    client.namespace_create(f"{ns_name}/sub")
    raises_code(codes.NAME_ALREADY_IN_USE, make_table, client, ns, "sub", "a")


def test_listing_and_tables_are_sorted_and_not_recursive(client, ns, ns_name):
    for name in ("b", "a", "c"):
        make_table(client, ns, name, "x")
    client.namespace_create(f"{ns_name}/zsub")
    client.namespace_create(f"{ns_name}/zsub/deeper")
    assert client.get_tables(ns) == ["a", "b", "c"]
    assert client.namespace_get_listing(ns) == [NamespaceListing("a", False), NamespaceListing("b", False),
                                                NamespaceListing("c", False), NamespaceListing("zsub", True)]
    assert client.get_listing(ns) == client.namespace_get_listing(ns)  # legacy alias
    nested = client.namespace_open(f"{ns_name}/zsub")
    make_table(client, nested, "deep_table", "x")
    assert client.table_exists(ns, "zsub/deep_table")  # names may reach into sub-namespaces


# ---------------------------------------------------------------------- tables

def test_table_create_exists_drop_rename(client, ns):
    make_table(client, ns, "t1", "a", "b")
    assert client.table_exists(ns, "t1") and not client.table_exists(ns, "nope")
    raises_code(codes.MASTER_TABLE_EXISTS, make_table, client, ns, "t1", "a")
    raises_code(codes.SYNTAX_ERROR, make_table, client, ns, "^index", "a")
    client.table_rename(ns, "t1", "t2")
    assert client.get_tables(ns) == ["t2"]
    raises_code(codes.TABLE_NOT_FOUND, client.table_get_schema, ns, "t1")
    client.table_drop(ns, "t2", False)
    client.table_drop(ns, "t2", True)
    raises_code(codes.TABLE_NOT_FOUND, client.table_drop, ns, "t2", False)
    raises_code(codes.TABLE_NOT_FOUND, client.table_get_schema_str, ns, "t2")
    assert client.get_tables(ns) == []


def test_table_rename_within_and_across_namespaces(client, ns, ns_name):
    make_table(client, ns, "t", "a")
    client.set_cell(ns, "t", cell("r", "a", "v"))
    make_table(client, ns, "taken", "a")
    raises_code(codes.NAME_ALREADY_IN_USE, client.table_rename, ns, "t", "taken")
    client.namespace_create(f"{ns_name}/sub")
    raises_code(codes.NAME_ALREADY_IN_USE, client.rename_table, ns, "t", "sub")  # legacy alias
    raises_code(codes.NAMESPACE_DOES_NOT_EXIST, client.table_rename, ns, "t", "nowhere/t")
    raises_code(codes.SYNTAX_ERROR, client.table_rename, ns, "t", "sub/^t")
    raises_code(codes.TABLE_NOT_FOUND, client.table_rename, ns, "missing", "other")
    client.table_rename(ns, "t", "sub/moved")  # a path moves the table, cells and all
    assert client.get_tables(ns) == ["taken"]
    sub = client.namespace_open(f"{ns_name}/sub")
    assert client.get_tables(sub) == ["moved"]
    assert keys(client.get_cells(sub, "moved", ScanSpec())) == [("r", "a", b"v")]
    client.table_rename(sub, "moved", f"/{ns_name}/back")  # a leading '/' is absolute
    assert client.get_tables(ns) == ["back", "taken"] and client.get_tables(sub) == []


def test_table_drop_removes_cells_of_a_recreated_table(client, ns):
    make_table(client, ns, "t", "a")
    client.set_cells(ns, "t", [cell("r", "a", "old")])
    client.table_drop(ns, "t", False)
    make_table(client, ns, "t", "a")
    assert client.get_cells(ns, "t", ScanSpec()) == []


def test_schema_defaults_ids_and_thrift_round_trip(client, ns):
    schema = Schema(access_groups={"hot": AccessGroupSpec(name="hot")},
                    column_families={"z": family("z"), "a": family("a", "hot", max_versions=3, ttl=86400),
                                     "m": family("m", time_order_desc=True)})
    client.table_create(ns, "t", schema)
    got = client.table_get_schema(ns, "t")
    assert list(got.access_groups) == ["default", "hot"]
    ids = {name: spec.id for name, spec in got.column_families.items()}
    assert ids == {"z": 1, "m": 2, "a": 3}  # access groups in order, then families in definition order
    assert got.column_families["a"].access_group == "hot"
    assert got.column_families["a"].options == ColumnFamilyOptions(max_versions=3, ttl=86400)
    assert got.column_families["z"].options is None
    assert got.column_families["m"].options.time_order_desc is True
    raises_code(codes.BAD_SCHEMA, client.table_create, ns, "bad",
                Schema(column_families={"a": family("a", "missing_group")}))
    raises_code(codes.BAD_SCHEMA, client.table_create, ns, "bad2", Schema(column_families={"a": family("")}))


def test_schema_xml_shape(client, ns):
    make_table(client, ns, "t", family("a", max_versions=2))
    xml = client.table_get_schema_str(ns, "t")
    assert xml.startswith("<Schema>\n  <AccessGroupDefaults>\n  </AccessGroupDefaults>\n")
    assert '  <AccessGroup name="default">\n    <Options>\n    </Options>\n' in xml
    assert ("    <ColumnFamily>\n      <Name>a</Name>\n      <AccessGroup>default</AccessGroup>\n"
            "      <Deleted>false</Deleted>\n      <Options>\n        <MaxVersions>2</MaxVersions>\n"
            "      </Options>\n    </ColumnFamily>\n") in xml
    with_ids = client.table_get_schema_str_with_ids(ns, "t")
    assert '<ColumnFamily id="1">' in with_ids and "<Generation>" in with_ids
    assert client.get_schema_str(ns, "t") == xml  # legacy alias
    assert re.fullmatch(r"\d+/\d+", client.table_get_id(ns, "t"))


def test_table_alter_keeps_ids_and_drops_cells_of_removed_families(client, ns):
    make_table(client, ns, "t", "a", "b")
    client.set_cells(ns, "t", [cell("r", "a", "1"), cell("r", "b", "2")])
    client.table_alter(ns, "t", Schema(column_families={"b": family("b"), "c": family("c")}))
    got = client.table_get_schema(ns, "t")
    assert {n: s.id for n, s in got.column_families.items()} == {"b": 2, "c": 3}
    assert keys(client.get_cells(ns, "t", ScanSpec())) == [("r", "b", b"2")]


# ------------------------------------------------------------------------ misc

def test_status_error_text_and_guid(client):
    assert client.status() == Status(code=0, text="")
    assert client.error_get_text(codes.TABLE_NOT_FOUND) == "HYPERTABLE table does not exist"
    assert client.error_get_text(123456789) == "ERROR NOT REGISTERED"
    guids = {client.generate_guid() for _ in range(3)}
    assert len(guids) == 3 and all(len(g) == 36 for g in guids)


def test_the_48_aliases_are_idl_methods():
    iface = set(dir(HqlService.Iface))
    assert len(ALIASES) == 48
    assert set(ALIASES) <= iface and set(ALIASES.values()) <= iface


def test_legacy_aliases_forward(client):
    name = unique()
    client.create_namespace(name)
    assert client.exists_namespace(name)
    handle = client.open_namespace(name)
    client.close_namespace(handle)
    client.drop_namespace(name, False)
    assert not client.namespace_exists(name)


#: What the stand-in leaves out: futures, asynchronous scanners and mutators, create_cell_unique, shutdown.
LEFT_OUT = ("future", "async", "create_cell_unique", "shutdown")


def test_every_method_left_out_answers_not_implemented_naming_it(client):
    missing = sorted(name for name in dir(HqlService.Iface) if not name.startswith("_")
                     and not any(name in cls.__dict__ for cls in Handler.__mro__))
    assert len(missing) == 42 and all(any(part in name for part in LEFT_OUT) for name in missing), missing
    for method in missing:  # every argument absent on the wire: the broker must still answer, not hang or drop
        nargs = len(inspect.signature(getattr(HqlService.Iface, method)).parameters) - 1
        error = raises_code(codes.NOT_IMPLEMENTED, getattr(client, method), *[None] * nargs)
        assert method in error.message and "does not implement" in error.message
    assert client.status().code == 0  # the connection is still usable
