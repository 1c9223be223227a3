"""COUNTER column families: a write adds a signed integer, ``=N`` resets, reads return the sum.

Issue 10: COUNTER was accepted but the last write won instead of adding.
Same semantics through ``set_cells``, array and serialized writes, mutators,
shared mutators and HQL INSERT.
"""
from __future__ import annotations

import pytest
from brokertest import family, make_table
from htcluster import codes
from htcluster.types import (Cell, ClientException, Key, KeyFlag, MutateSpec, RowInterval,
                             ScanSpec)


def cell(row: str, column: str, value: str, ts=None) -> Cell:
    cf, _, q = column.partition(":")
    return Cell(Key(row, cf, q, timestamp=ts), value.encode())


@pytest.fixture
def table(client, ns) -> str:
    return make_table(client, ns, "c", family("hits", counter=True), "plain")


def counts(client, ns, table="c", **spec) -> dict:
    return {(c.key.row, c.key.column_family, c.key.column_qualifier): c.value
            for c in client.get_cells(ns, table, ScanSpec(**spec))}


def test_set_cells_add_and_reset(client, ns, table):
    client.set_cells(ns, table, [cell("r", "hits", "5"), cell("r", "hits", "+3"), cell("r", "hits:q", "1")])
    client.set_cells(ns, table, [cell("r", "hits", "-2")])
    got = client.get_cells(ns, table, ScanSpec())
    assert [(c.key.column_qualifier, c.value) for c in got] == [("", b"6"), ("q", b"1")]
    client.set_cells(ns, table, [cell("r", "hits", "=100"), cell("r", "hits", "1")])
    assert counts(client, ns)[("r", "hits", "")] == b"101"
    client.set_cells(ns, table, [cell("r", "hits", "=-7")])
    assert counts(client, ns)[("r", "hits", "")] == b"-7"


def test_plain_family_keeps_last_write_wins(client, ns, table):
    client.set_cells(ns, table, [cell("r", "plain", "5"), cell("r", "plain", "3")])
    assert [c.value for c in client.get_cells(ns, table, ScanSpec(versions=1, columns=["plain"]))] == [b"3"]


def test_hql_insert_and_select(client, ns, table):
    q = lambda text: client.hql_query(ns, text)  # noqa: E731
    q("CREATE TABLE hc (n COUNTER, s)")
    for _ in range(3):
        q("INSERT INTO hc VALUES ('a', 'n', '2'), ('b', 'n:x', '10')")
    q("INSERT INTO hc VALUES ('a', 'n', '-1')")
    got = {(c.key.row, c.key.column_qualifier): c.value for c in q("SELECT n FROM hc").cells}
    assert got == {("a", ""): b"5", ("b", "x"): b"30"}
    assert [c.value for c in q("SELECT n FROM hc WHERE ROW = 'a'").cells] == [b"5"]
    assert [c.key.row for c in q("SELECT n FROM hc WHERE n = '30'").cells] == ["b"]
    assert q("SELECT n FROM hc WHERE ROW = 'a' KEYS_ONLY").cells[0].value is None
    assert "COUNTER" in q("SHOW CREATE TABLE hc").results[0]
    with pytest.raises(ClientException) as info:
        q("INSERT INTO hc VALUES ('a', 'n', 'many')")
    assert info.value.code == codes.INVALID_ARGUMENT and "'many'" in info.value.message


def test_mutators_arrays_serialized_and_shared(client, ns, table):
    mutator = client.mutator_open(ns, table, 0, 0)
    client.mutator_set_cells(mutator, [cell("m", "hits", "4"), cell("m", "hits", "4")])
    client.mutator_set_cells_as_arrays(mutator, [["m", "hits", "", "2"]])
    client.mutator_close(mutator)
    client.set_cells_as_arrays(ns, table, [["m", "hits", "", "-10"]])
    spec = MutateSpec(appname="t", flush_interval=0, flags=0)
    client.shared_mutator_set_cells(ns, table, spec, [cell("m", "hits", "+1")])
    assert counts(client, ns)[("m", "hits", "")] == b"1"
    noflush = client.hql_exec(ns, "INSERT INTO c VALUES ('m', 'hits', '9')", True, False).mutator
    client.mutator_close(noflush)
    assert counts(client, ns)[("m", "hits", "")] == b"10"


def test_refused_values_write_nothing(client, ns, table):
    for bad in ["", "abc", "1.5", "=", "--1", "+", "9223372036854775808", "1 2", "=x"]:
        with pytest.raises(ClientException) as info:
            client.set_cells(ns, table, [cell("r", "hits", "1"), cell("r", "hits", bad)])
        assert info.value.code == codes.INVALID_ARGUMENT, bad
        assert "hits" in info.value.message
    mutator = client.mutator_open(ns, table, 0, 0)
    with pytest.raises(ClientException):
        client.mutator_set_cells(mutator, [cell("r", "hits", "x")])
    client.mutator_close(mutator)
    assert counts(client, ns) == {}


def test_one_cell_per_counter_with_newest_stamp_and_deletes(client, ns, table):
    client.set_cells(ns, table, [cell("r", "hits", "1", ts=10), cell("r", "hits", "2", ts=20),
                                 cell("r", "hits", "4", ts=30)])
    got = client.get_cells(ns, table, ScanSpec())
    assert len(got) == 1 and got[0].value == b"7" and got[0].key.timestamp == 30
    # a delete at ts 20 hides the increments at or before it: the counter restarts
    client.set_cells(ns, table, [Cell(Key("r", "hits", "", timestamp=20, flag=KeyFlag.DELETE_CELL))])
    assert counts(client, ns)[("r", "hits", "")] == b"4"
    client.set_cells(ns, table, [Cell(Key("r", "hits", "", flag=KeyFlag.DELETE_CELL))])
    assert counts(client, ns) == {}
    client.set_cells(ns, table, [cell("r", "hits", "3")])
    assert counts(client, ns)[("r", "hits", "")] == b"3"


def test_reset_is_by_time_not_by_arrival(client, ns, table):
    # a reset with an older timestamp than an increment: the increment counts on top of it
    client.set_cells(ns, table, [cell("r", "hits", "5", ts=300), cell("r", "hits", "=1", ts=200),
                                 cell("r", "hits", "100", ts=100)])
    assert counts(client, ns)[("r", "hits", "")] == b"6"


def test_sum_wraps_as_a_signed_64_bit_integer(client, ns, table):
    client.set_cells(ns, table, [cell("r", "hits", "=9223372036854775807"), cell("r", "hits", "1")])
    assert counts(client, ns)[("r", "hits", "")] == b"-9223372036854775808"


def test_row_reads_and_get_cell(client, ns, table):
    client.set_cells(ns, table, [cell("r", "hits", "2"), cell("r", "hits", "3")])
    assert client.get_cell(ns, table, "r", "hits") == b"5"
    assert [c.value for c in client.get_row(ns, table, "r")] == [b"5"]
    spec = ScanSpec(row_intervals=[RowInterval("r", True, "r", True)])
    scanner = client.scanner_open(ns, table, spec)
    assert [c.value for c in client.scanner_get_cells(scanner)] == [b"5"]
    client.scanner_close(scanner)
