"""HQL through a real stand-in broker over a socket: result fields and every HQL error code."""
from __future__ import annotations

import functools
import gzip
import re
from datetime import datetime

import pytest

from htcluster import codes
from htcluster.hql import parse
from htcluster.types import ClientException, HqlResult, KeyFlag

NAMESPACE = "hqltest"
NOTHING = HqlResult()


def ts(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp()) * 10**9


@pytest.fixture
def ns(client) -> int:
    root = client.namespace_open("")
    client.hql_query(root, f"CREATE NAMESPACE {NAMESPACE} IF NOT EXISTS")
    return client.namespace_open(NAMESPACE)


@pytest.fixture
def q(client, ns):
    """``q("HQL")`` runs one statement in the test namespace."""
    return lambda command: client.hql_query(ns, command)


def code_of(call, *args) -> int:
    with pytest.raises(ClientException) as info:
        call(*args)
    assert info.value.message.startswith(codes.text(info.value.code) + " - ")
    return info.value.code


def row_keys(q, table: str, tail: str = "") -> list[str]:
    """Row of every cell ``SELECT * FROM table tail`` returns."""
    return [c.key.row for c in q(f"SELECT * FROM {table} {tail}").cells]


def rows(result: HqlResult) -> list[tuple]:
    return [(c.key.row, c.key.column_family, c.key.column_qualifier, c.value) for c in result.cells]


# ------------------------------------------------------------------ namespaces

def test_namespaces_are_relative_to_the_current_one(client, ns, q):
    assert q("CREATE NAMESPACE sub") == NOTHING
    assert client.namespace_exists(f"{NAMESPACE}/sub")
    assert q("CREATE NAMESPACE sub IF NOT EXISTS") == NOTHING
    assert code_of(q, "CREATE NAMESPACE sub") == codes.NAMESPACE_EXISTS
    assert q("CREATE DATABASE '/hql_absolute'") == NOTHING
    assert client.namespace_exists("hql_absolute") and not client.namespace_exists(f"{NAMESPACE}/hql_absolute")
    assert "sub\t(namespace)" in q("GET LISTING").results
    assert q("DROP NAMESPACE sub") == NOTHING and not client.namespace_exists(f"{NAMESPACE}/sub")
    assert code_of(q, "DROP NAMESPACE sub") == codes.NAMESPACE_DOES_NOT_EXIST
    assert q("DROP NAMESPACE IF EXISTS sub") == NOTHING
    assert q("DROP NAMESPACE '/hql_absolute'") == NOTHING


def test_use_is_refused(q):
    assert code_of(q, "USE other") == codes.BAD_NAMESPACE
    with pytest.raises(ClientException, match="namespace_open"):
        q("use other")


def test_unknown_namespace_id(client):
    assert code_of(client.hql_query, 987654321, "SHOW TABLES") == codes.THRIFTBROKER_BAD_NAMESPACE_ID


# ------------------------------------------------------------------ tables

def test_table_ddl_and_listings(client, ns, q):
    assert q("CREATE TABLE zeta (a MAX_VERSIONS 2 TTL 2 MONTHS, ACCESS GROUP g (a) IN_MEMORY)") == NOTHING
    assert q("create table alpha (b COUNTER)") == NOTHING
    assert q("CREATE NAMESPACE listed") == NOTHING
    tables = q("SHOW TABLES").results
    assert [t for t in tables if t in ("alpha", "zeta", "listed")] == ["alpha", "zeta"]
    assert tables == sorted(tables)
    listing = q("GET LISTING").results
    assert {"alpha", "zeta", "listed\t(namespace)"} <= set(listing)
    schema = client.table_get_schema(ns, "zeta")
    family = schema.column_families["a"]
    assert (family.access_group, family.options.max_versions, family.options.ttl) == ("g", 2, 60 * 86400)
    assert schema.access_groups["g"].options.in_memory is True
    assert q("EXISTS TABLE zeta").results == ["true"]
    assert q("EXISTS TABLE nothing_here").results == ["false"]
    assert q("RENAME TABLE zeta TO omega") == NOTHING
    assert q("EXISTS TABLE zeta").results == ["false"] and q("EXISTS TABLE omega").results == ["true"]
    assert q("DROP TABLE omega") == NOTHING and q("DROP TABLE IF EXISTS omega") == NOTHING
    assert code_of(q, "DROP TABLE omega") == codes.TABLE_NOT_FOUND
    assert q("DROP NAMESPACE listed") == NOTHING


def test_describe_and_show_create_table(client, ns, q):
    q("CREATE TABLE described (a MAX_VERSIONS 3, b TTL 60 TIME_ORDER DESC, "
      "ACCESS GROUP hot (b) BLOCKSIZE 1024) GROUP_COMMIT_INTERVAL 5")
    (xml,) = q("DESCRIBE TABLE described").results
    assert xml == client.table_get_schema_str(ns, "described")
    assert "<MaxVersions>3</MaxVersions>" in xml and '<AccessGroup name="hot">' in xml
    (with_ids,) = q("DESCRIBE TABLE WITH IDS described").results
    assert with_ids == client.table_get_schema_str_with_ids(ns, "described")
    (text,) = q("SHOW CREATE TABLE described").results
    assert text.startswith("CREATE TABLE described (") and text.endswith(";\n")
    q(text[:-2].replace("CREATE TABLE described", "CREATE TABLE described_copy"))
    assert client.table_get_schema_str(ns, "described_copy") == xml
    q("CREATE TABLE described_like LIKE described")
    assert client.table_get_schema_str(ns, "described_like") == xml


def test_create_table_errors(q):
    q("CREATE TABLE twice (a)")
    assert code_of(q, "CREATE TABLE twice (a)") == codes.MASTER_TABLE_EXISTS
    assert code_of(q, "CREATE TABLE dup (a, a)") == codes.HQL_BAD_COMMAND
    assert code_of(q, "CREATE TABLE dup (a TTL 1 TTL 2)") == codes.HQL_PARSE_ERROR
    assert q("EXISTS TABLE dup").results == ["false"]


# ------------------------------------------------------------------ cells

def test_insert_select_and_result_fields(q):
    q("CREATE TABLE cells (a, b)")
    assert q("INSERT INTO cells VALUES ('r1', 'a:x', 'one'), ('r2', 'b', 'two'), "
             "('2015-01-02 03:04:05', 'r3', 'a', 'three')") == NOTHING
    result = q("SELECT * FROM cells")
    assert result.results is None and result.scanner is None and result.mutator is None
    assert rows(result) == [("r1", "a", "x", b"one"), ("r2", "b", "", b"two"), ("r3", "a", "", b"three")]
    assert result.cells[2].key.timestamp == ts("2015-01-02 03:04:05")
    empty = q("SELECT * FROM cells WHERE ROW = 'missing'")
    assert empty.cells == [] and empty == HqlResult(cells=[])
    assert rows(q("SELECT a:x, b FROM cells")) == [("r1", "a", "x", b"one"), ("r2", "b", "", b"two")]
    assert rows(q("select cells a from cells where row >= 'r2'")) == [("r3", "a", "", b"three")]


def test_array_variants(client, ns, q):
    q("CREATE TABLE arrays (a)")
    q("INSERT INTO arrays VALUES ('2015-01-02 03:04:05', 'r1', 'a:x', 'one'), ('r2', 'a', '')")
    stamp = str(ts("2015-01-02 03:04:05"))
    for result in (client.hql_query_as_arrays(ns, "SELECT * FROM arrays"),
                   client.hql_query2(ns, "SELECT * FROM arrays"),
                   client.hql_exec_as_arrays(ns, "SELECT * FROM arrays", False, False),
                   client.hql_exec2(ns, "SELECT * FROM arrays", True, False)):
        assert (result.results, result.scanner, result.mutator) == (None, None, None)
        assert result.cells[0] == ["r1", "a", "x", "one", stamp]  # [row, cf, cq, value, timestamp]
        assert result.cells[1][:4] == ["r2", "a", "", ""] and int(result.cells[1][4]) > int(stamp)
    assert client.hql_query2(ns, "SHOW TABLES").results == q("SHOW TABLES").results
    assert client.hql_query_as_arrays(ns, "SELECT * FROM arrays WHERE ROW = 'none'").cells == []
    scanned = client.hql_exec2(ns, "SELECT * FROM arrays", False, True)
    assert scanned.cells is None and [c.key.row for c in client.scanner_get_cells(scanned.scanner)] == ["r1", "r2"]
    client.scanner_close(scanned.scanner)
    buffered = client.hql_exec_as_arrays(ns, "INSERT INTO arrays VALUES ('r3', 'a', 'v')", True, False)
    assert buffered.mutator and buffered.cells is None
    client.mutator_close(buffered.mutator)
    assert len(q("SELECT * FROM arrays").cells) == 3


def test_guid_rows(q):
    q("CREATE TABLE guids (a)")
    q("INSERT INTO guids VALUES (GUID(), 'a', GUID()), (guid(), 'a', 'x')")
    cells = q("SELECT * FROM guids").cells
    assert len(cells) == 2 and all(re.fullmatch(r"[0-9a-f-]{36}", c.key.row) for c in cells)


def test_noflush_returns_a_mutator(client, ns, q):
    q("CREATE TABLE buffered (a)")
    result = client.hql_exec(ns, "INSERT INTO buffered VALUES ('r', 'a', 'v')", True, False)
    assert result.mutator and (result.results, result.cells, result.scanner) == (None, None, None)
    client.mutator_close(result.mutator)
    assert rows(q("SELECT * FROM buffered")) == [("r", "a", "", b"v")]
    result = client.hql_exec(ns, "DELETE * FROM buffered WHERE ROW = 'r'", True, False)
    assert result.mutator
    client.mutator_flush(result.mutator)
    client.mutator_close(result.mutator)
    assert q("SELECT * FROM buffered").cells == []
    assert client.hql_exec(ns, "SHOW TABLES", True, True).mutator is None
    bad = "INSERT INTO buffered VALUES ('r', 'nope', 'v')"
    assert code_of(client.hql_exec, ns, bad, True, False) == codes.BAD_KEY


def test_unbuffered_returns_a_scanner(client, ns, q):
    q("CREATE TABLE scanned (a)")
    q("INSERT INTO scanned VALUES ('r1', 'a', '1'), ('r2', 'a', '2')")
    result = client.hql_exec(ns, "SELECT * FROM scanned", False, True)
    assert result.scanner and (result.results, result.cells, result.mutator) == (None, None, None)
    got = []
    while True:
        batch = client.scanner_get_cells(result.scanner)
        if not batch:
            break
        got += batch
    client.scanner_close(result.scanner)
    assert [c.key.row for c in got] == ["r1", "r2"]


def test_delete_rules(q):
    q("CREATE TABLE deletes (a, b)")
    q("INSERT INTO deletes VALUES ('r', 'a:x', '1'), ('r', 'a:y', '2'), ('r', 'b', '3'), ('s', 'a', '4')")
    q("DELETE 'a:x' FROM deletes WHERE ROW = 'r'")
    assert rows(q("SELECT * FROM deletes WHERE ROW = 'r'")) == [("r", "a", "y", b"2"), ("r", "b", "", b"3")]
    q("DELETE a FROM deletes WHERE ROW = 'r'")
    assert rows(q("SELECT * FROM deletes WHERE ROW = 'r'")) == [("r", "b", "", b"3")]
    q("DELETE * FROM deletes WHERE ROW = 'r'")
    assert rows(q("SELECT * FROM deletes")) == [("s", "a", "", b"4")]
    markers = q("SELECT * FROM deletes RETURN_DELETES").cells  # the markers, never the cells they delete
    assert [(c.key.row, c.key.column_family, c.key.column_qualifier, c.key.flag) for c in markers] == [
        ("r", "", "", KeyFlag.DELETE_ROW), ("r", "a", "", KeyFlag.DELETE_CF), ("r", "a", "x", KeyFlag.DELETE_CELL),
        ("s", "a", "", KeyFlag.INSERT)]


def test_delete_timestamp_and_version(q):
    q("CREATE TABLE versions (a MAX_VERSIONS 5)")
    q("INSERT INTO versions VALUES ('2015-01-01', 'r', 'a', 'jan'), ('2015-02-01', 'r', 'a', 'feb'), "
      "('2015-03-01', 'r', 'a', 'mar')")
    values = lambda: [c.value for c in q("SELECT * FROM versions").cells]  # noqa: E731
    assert values() == [b"mar", b"feb", b"jan"]
    assert [c.value for c in q("SELECT * FROM versions MAX_VERSIONS 1").cells] == [b"mar"]
    q("DELETE a FROM versions WHERE ROW = 'r' VERSION '2015-02-01'")
    assert values() == [b"mar", b"jan"]
    q("DELETE a FROM versions WHERE ROW = 'r' TIMESTAMP '2015-02-15'")  # hides <= the marker
    assert values() == [b"mar"]


def table_once(q, create: str, insert: str) -> functools.partial:
    """Create and fill a table unless an earlier test did; return its ``row_keys`` query."""
    name = create.split()[2]
    if q(f"EXISTS TABLE {name}").results == ["false"]:
        q(create)
        q(insert)
    return functools.partial(row_keys, q, name)


@pytest.fixture
def times(q):
    return table_once(q, "CREATE TABLE times (a)",
                      "INSERT INTO times VALUES ('2015-01-01', 'r1', 'a', 'jan'), "
                      "('2015-02-01', 'r2', 'a', 'feb'), ('2015-03-01', 'r3', 'a', 'mar')")


@pytest.mark.parametrize("where, expected", [
    ("TIMESTAMP >= '2015-02-01'", ["r2", "r3"]),
    ("TIMESTAMP > '2015-02-01'", ["r3"]),
    ("TIMESTAMP = '2015-02-01'", ["r2"]),
    ("TIMESTAMP <= '2015-02-01'", ["r1", "r2"]),
    ("TIMESTAMP < '2015-02-01'", ["r1"]),
    ("'2015-01-01' < TIMESTAMP < '2015-03-01'", ["r2"]),
    ("ROW > 'r1' AND TIMESTAMP < '2015-03-01 00:00:00.000000001'", ["r2", "r3"]),
])
def test_timestamp_predicates(times, where, expected):
    assert times(f"WHERE {where}") == expected


@pytest.fixture
def fruit(q):
    return table_once(q, "CREATE TABLE fruit (a, b)",
                      "INSERT INTO fruit VALUES ('apple', 'a:color', 'red'), "
                      "('apricot', 'a:color', 'orange'), ('banana', 'a:color', 'yellow'), "
                      "('banana', 'b', 'bunch'), ('cherry', 'a:size', 'small')")


@pytest.mark.parametrize("tail, expected", [
    ("WHERE ROW =^ 'ap'", ["apple", "apricot"]),
    ("WHERE ('a' <= ROW < 'b' OR ROW = 'cherry')", ["apple", "apricot", "cherry"]),
    ("WHERE ROW > 'a' AND ROW < 'b'",  # two intervals, scanned one after the other
     ["apple", "apricot", "banana", "banana", "cherry", "apple", "apricot"]),
    ("WHERE ROW REGEXP 'an+a'", ["banana", "banana"]),
    ("WHERE VALUE REGEXP '^(red|small)$'", ["apple", "cherry"]),
    ("WHERE CELL = 'banana','b'", ["banana"]),
    ("WHERE a:color = 'yellow'", ["banana", "banana"]),
    ("WHERE a =^ 'ora' OR a:size = 'small'", ["apricot", "cherry"]),
    ("WHERE EXISTS(a:size)", ["cherry"]),
    ("LIMIT 2", ["apple", "apricot"]),
    ("OFFSET 3", ["cherry"]),
    ("CELL_LIMIT 3", ["apple", "apricot", "banana"]),
    ("CELL_OFFSET 4", ["cherry"]),
    ("WHERE ROW = 'banana' CELL_LIMIT_PER_FAMILY 1", ["banana", "banana"]),
    ("WHERE ROW > 'b' SCAN_AND_FILTER_ROWS NO_CACHE DISPLAY_TIMESTAMPS", ["banana", "banana", "cherry"]),
])
def test_select_predicates_and_options(fruit, tail, expected):
    assert fruit(tail) == expected


def test_keys_only(fruit, q):
    cells = q("SELECT * FROM fruit KEYS_ONLY").cells
    assert len(cells) == 5 and all(c.value is None for c in cells)


# ------------------------------------------------------------------ error codes

@pytest.mark.parametrize("command, code", [
    ("SELECT * FROM t;", codes.HQL_PARSE_ERROR),
    ("SELEKT * FROM t", codes.HQL_PARSE_ERROR),
    ("SELECT * FROM t LIMIT 1 LIMIT 2", codes.HQL_PARSE_ERROR),
    ("SELECT * FROM t OFFSET 1 CELL_OFFSET 1", codes.HQL_PARSE_ERROR),
    ("SELECT * FROM t WHERE TIMESTAMP > '1420070400000000000'", codes.HQL_PARSE_ERROR),
    ("INSERT INTO t VALUES (1420070400, 'r', 'a', 'v')", codes.HQL_PARSE_ERROR),
    ("CREATE TABLE bad (a, ACCESS GROUP g (a), ACCESS GROUP h (a))", codes.HQL_BAD_COMMAND),
    ("LOAD DATA INFILE '/etc/hosts' INTO TABLE t", codes.NOT_IMPLEMENTED),  # no --files
    ("SELECT * FROM t INTO FILE '/tmp/hql-out'", codes.NOT_IMPLEMENTED),
    ("DUMP TABLE t INTO FILE 'out'", codes.NOT_IMPLEMENTED),
    ("DUMP TABLE t", codes.HQL_PARSE_ERROR),
    ("ALTER TABLE missing ADD (c)", codes.TABLE_NOT_FOUND),
    ("ALTER TABLE t WITH 'schema.xml'", codes.NOT_IMPLEMENTED),
    ("USE sys", codes.BAD_NAMESPACE),
    ("SELECT * FROM missing", codes.TABLE_NOT_FOUND),
    ("INSERT INTO missing VALUES ('r', 'a', 'v')", codes.TABLE_NOT_FOUND),
    ("DESCRIBE TABLE missing", codes.TABLE_NOT_FOUND),
])
def test_error_codes(q, command, code):
    assert code_of(q, command) == code


def test_error_codes_that_need_a_table(q):
    q("CREATE TABLE errs (a)")
    assert code_of(q, "INSERT INTO errs VALUES ('r', 'nope', 'v')") == codes.BAD_KEY
    assert code_of(q, "INSERT INTO errs VALUES ('', 'a', 'v')") == codes.BAD_KEY
    assert code_of(q, "SELECT nope FROM errs") == codes.RANGESERVER_INVALID_COLUMNFAMILY
    assert code_of(q, "SELECT * FROM errs WHERE ROW = 'a' AND CELL = 'a','a'") == codes.BAD_SCAN_SPEC
    assert code_of(q, "SELECT * FROM errs WHERE 'm' <= ROW < 'a'") == codes.BAD_SCAN_SPEC
    with pytest.raises(ClientException, match=r"line 1, column 16: unexpected ';'"):
        q("SELECT * FROM t;")
    with pytest.raises(ClientException, match="CREATE TABLE ... WITH .schema file. is not implemented"):
        q("CREATE TABLE errs2 WITH 'schema.xml'")


# ------------------------------------------------------------------ real data

def test_access_log_selects(client, ns, q, shared_data):
    """3,282 Apache log lines: one INSERT, then SELECTs checked against Python."""
    with gzip.open(shared_data / "access.log.gz", "rt", encoding="utf-8", errors="replace") as log:
        lines = [line.split() for line in log if line.strip()]
    records = [(f"{i:05d}", parts[0], parts[8]) for i, parts in enumerate(lines)]
    q("CREATE TABLE access (ip, status)")
    values = ", ".join(f"('{row}', 'ip', '{ip}'), ('{row}', 'status', '{status}')"
                       for row, ip, status in records)
    assert q(f"INSERT INTO access VALUES {values}") == NOTHING
    assert len(q("SELECT * FROM access").cells) == 2 * len(records) > 6000
    window = q("SELECT status FROM access WHERE '01000' <= ROW < '02000'").cells
    assert [c.value.decode() for c in window] == [s for row, _, s in records if "01000" <= row < "02000"]
    not_found = {c.key.row for c in q("SELECT status FROM access WHERE status = '404'").cells}
    assert not_found == {row for row, _, s in records if s == "404"} and not_found
    prefix = q("SELECT ip FROM access WHERE ROW =^ '012' KEYS_ONLY").cells
    assert [c.key.row for c in prefix] == [f"012{i:02d}" for i in range(100)]
    first_ip = records[0][1]
    same_ip = q(f"SELECT ip FROM access WHERE ip = '{first_ip}' LIMIT 1000").cells
    assert len(same_ip) == sum(1 for _, ip, _ in records if ip == first_ip)
    statement = parse("SELECT * FROM access WHERE ROW =^ '012'")
    assert statement.spec.row_intervals[0].end_row == "013"
