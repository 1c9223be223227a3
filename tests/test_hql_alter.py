"""HQL ALTER TABLE through a real broker: ADD, MODIFY, DROP, RENAME COLUMN FAMILY.

Issue 10: HQL answered NOT_IMPLEMENTED while the Thrift ``table_alter`` worked.
"""
from __future__ import annotations

import pytest

from htcluster import codes
from htcluster.hql import AlterTable, parse
from htcluster.hql.alter import AddDefinitions, DropFamilies, ModifyDefinitions, RenameFamily
from htcluster.types import ClientException, HqlResult


@pytest.fixture
def q(client, ns):
    return lambda command: client.hql_query(ns, command)


def code_of(q, command: str) -> int:
    with pytest.raises(ClientException) as info:
        q(command)
    return info.value.code


def families(client, ns, table="t") -> dict:
    schema = client.table_get_schema(ns, table)
    return {name: (cf.id, cf.access_group, cf.options) for name, cf in schema.column_families.items()}


def values(q, table="t") -> list[tuple]:
    return [(c.key.row, c.key.column_family, c.key.column_qualifier, c.value)
            for c in q(f"SELECT * FROM {table}").cells]


def test_parse_actions_in_order():
    statement = parse("ALTER TABLE t ADD (c MAX_VERSIONS 2) DROP (b, x) "
                      "RENAME COLUMN FAMILY (a, z) MODIFY (c TTL 3 DAYS)")
    assert isinstance(statement, AlterTable) and statement.name == "t"
    assert [type(a) for a in statement.actions] == [AddDefinitions, DropFamilies, RenameFamily,
                                                   ModifyDefinitions]
    assert statement.actions[1] == DropFamilies(("b", "x"))
    assert statement.actions[2] == RenameFamily("a", "z")


def test_add_modify_drop_rename(client, ns, q):
    q("CREATE TABLE t (a, b MAX_VERSIONS 1)")
    q("INSERT INTO t VALUES ('r', 'a', '1'), ('r', 'b', '2')")
    assert q("ALTER TABLE t ADD (c MAX_VERSIONS 2, ACCESS GROUP hot (d) IN_MEMORY)") == HqlResult()
    got = families(client, ns)
    assert set(got) == {"a", "b", "c", "d"} and got["d"][1] == "hot" and got["c"][2].max_versions == 2
    assert client.table_get_schema(ns, "t").access_groups["hot"].options.in_memory
    q("INSERT INTO t VALUES ('r', 'c', '3'), ('r', 'd', '4')")

    q("ALTER TABLE t MODIFY (b MAX_VERSIONS 3)")
    assert families(client, ns)["b"][2].max_versions == 3
    q("INSERT INTO t VALUES ('r', 'b', '2b')")
    assert [v for _, f, _, v in values(q) if f == "b"] == [b"2b", b"2"]  # now 2 versions kept

    ids = {name: fid for name, (fid, _, _) in families(client, ns).items()}
    q("ALTER TABLE t RENAME COLUMN FAMILY (a, alpha)")
    after = families(client, ns)
    assert "a" not in after and after["alpha"][0] == ids["a"]
    assert ("r", "alpha", "", b"1") in values(q)  # the cells stay with the family
    assert q("SELECT alpha FROM t").cells[0].value == b"1"

    q("ALTER TABLE t DROP (c)")
    assert "c" not in families(client, ns)
    assert all(f != "c" for _, f, _, _ in values(q))
    q("ALTER TABLE t ADD (c)")  # a new family: a new id, the old cells stay gone
    assert families(client, ns)["c"][0] > max(ids.values())
    assert all(f != "c" for _, f, _, _ in values(q))
    assert "alpha" in q("SHOW CREATE TABLE t").results[0]


def test_several_actions_in_one_statement(client, ns, q):
    q("CREATE TABLE t (a, b)")
    q("ALTER TABLE t ADD (c) DROP (b) RENAME COLUMN FAMILY (c, cc)")
    assert set(families(client, ns)) == {"a", "cc"}


@pytest.mark.parametrize("command", [
    "ALTER TABLE t ADD (a)",                            # exists
    "ALTER TABLE t ADD (ACCESS GROUP default (x))",     # group exists
    "ALTER TABLE t ADD (ACCESS GROUP g (a))",           # existing family into a new group
    "ALTER TABLE t MODIFY (nope MAX_VERSIONS 2)",       # unknown
    "ALTER TABLE t MODIFY (ACCESS GROUP nope ())",      # unknown group
    "ALTER TABLE t DROP (nope)",
    "ALTER TABLE t RENAME COLUMN FAMILY (nope, x)",
    "ALTER TABLE t RENAME COLUMN FAMILY (a, b)",        # target in use
    "ALTER TABLE t RENAME COLUMN FAMILY (a, 'bad:name')",
    "ALTER TABLE t MODIFY (a COUNTER)",                 # meaning of cells would change
    "ALTER TABLE t ADD (x, x)",                         # defined twice
])
def test_hql_bad_command(client, ns, q, command):
    q("CREATE TABLE t (a, b)")
    before = client.table_get_schema(ns, "t")
    assert code_of(q, command) == codes.HQL_BAD_COMMAND
    assert client.table_get_schema(ns, "t") == before  # nothing applied


def test_checks_of_table_alter_apply(client, ns, q):
    q("CREATE TABLE t (a)")
    assert code_of(q, "ALTER TABLE t ADD (ACCESS GROUP g (x) BLOOMFILTER 'bogus')") == codes.BAD_SCHEMA
    assert code_of(q, "ALTER TABLE t ADD (x MAX_VERSIONS 1 MAX_VERSIONS 2)") == codes.HQL_PARSE_ERROR
    assert code_of(q, "ALTER TABLE missing DROP (a)") == codes.TABLE_NOT_FOUND
    assert code_of(q, "ALTER TABLE t") == codes.HQL_PARSE_ERROR


def test_add_index_to_existing_family(client, ns, q):
    q("CREATE TABLE t (a)")
    q("ALTER TABLE t ADD (INDEX a, QUALIFIER INDEX a)")
    spec = client.table_get_schema(ns, "t").column_families["a"]
    assert spec.value_index and spec.qualifier_index


def test_alter_is_a_write_for_routing():
    from htcluster.hql import is_read

    assert not is_read("ALTER TABLE t ADD (c)")
