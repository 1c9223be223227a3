"""HQL parsing without a broker: grammar, statement values and every parse-time error."""
from __future__ import annotations

import os
import time
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from htcluster import codes
from htcluster.hql import parse
from htcluster.hql import statements as ast
from htcluster.hql.scan import prefix_end
from htcluster.hql.schema import render_create_table
from htcluster.hql.timestamps import duration_seconds, parse_timestamp
from htcluster.types import (CellInterval, ClientException, ColumnPredicateOperation as Op,
                             KeyFlag, RowInterval)

NS = 10**9


def ts(text: str) -> int:
    """Nanoseconds of a local date and time, computed independently of hql_time."""
    return int(datetime.fromisoformat(text).timestamp()) * NS


def error_of(command: str) -> ClientException:
    with pytest.raises(ClientException) as info:
        parse(command)
    return info.value


def spec_of(command: str):
    statement = parse(command)
    assert isinstance(statement, ast.Select)
    return statement.spec


@pytest.fixture
def utc_minus_5():
    """Run in a local time zone five hours behind UTC (POSIX TZ, no tz database needed)."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "HQL+05"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


# ------------------------------------------------------------------ namespaces

@pytest.mark.parametrize("command, expected", [
    ("CREATE NAMESPACE app", ast.CreateNamespace("app")),
    ("create database app if not exists", ast.CreateNamespace("app", if_not_exists=True)),
    ('CREATE NAMESPACE "/top/sub-1" IF NOT EXISTS', ast.CreateNamespace("/top/sub-1", True)),
    ("DROP NAMESPACE app", ast.DropNamespace("app")),
    ("Drop Database If Exists 'a/b'", ast.DropNamespace("a/b", if_exists=True)),
    ("USE app", ast.UseNamespace("app")),
    ("SHOW TABLES", ast.ShowTables()),
    ("get listing", ast.GetListing()),
    ("DESCRIBE TABLE t", ast.DescribeTable("t")),
    ("describe table with ids t", ast.DescribeTable("t", with_ids=True)),
    ("SHOW CREATE TABLE t", ast.ShowCreateTable("t")),
    ("EXISTS TABLE 'my table'", ast.ExistsTable("my table")),
    ("DROP TABLE t", ast.DropTable("t")),
    ("DROP TABLE IF EXISTS t", ast.DropTable("t", if_exists=True)),
    ("RENAME TABLE a TO b", ast.RenameTable("a", "b")),
    ("CREATE TABLE t2 LIKE t", ast.CreateTable("t2", like="t")),
    ("HELP select", ast.Help("select")),
])
def test_simple_statements(command, expected):
    assert parse(command) == expected


def test_if_not_exists_goes_after_the_name():
    assert error_of("CREATE NAMESPACE IF NOT EXISTS app").code == codes.HQL_PARSE_ERROR


@pytest.mark.parametrize("command, statement", [
    ("ALTER TABLE t WITH 'schema.xml'", "ALTER TABLE ... WITH (schema file)"),
    ("CREATE TABLE t WITH 'schema.xml'", "CREATE TABLE ... WITH (schema file)"),
])
def test_statements_the_stand_in_does_not_run(command, statement):
    assert parse(command) == ast.NotImplementedStatement(statement)


# ------------------------------------------------------------------ CREATE TABLE

def test_create_table_options():
    schema = parse("""CREATE TABLE users (
        profile MAX_VERSIONS 3, events TTL = 30 DAYS TIME_ORDER DESC, hits COUNTER,
        quiet COUNTER false REVS==2 TTL 1.5 MONTHS, 'x-y' TTL 90,
        ACCESS GROUP hot (profile, hits) IN_MEMORY BLOCKSIZE 65536 REPLICATION 3
            COMPRESSOR "ZLIB" BLOOMFILTER 'ROWS' MAX_VERSIONS 5,
        INDEX profile, QUALIFIER INDEX events
    ) GROUP_COMMIT_INTERVAL 100 IN_MEMORY false TTL 1 WEEK""").schema
    cfs = schema.column_families
    assert list(cfs) == ["profile", "events", "hits", "quiet", "x-y"]
    assert cfs["profile"].options.max_versions == 3 and cfs["profile"].value_index
    assert (cfs["events"].options.ttl, cfs["events"].options.time_order_desc) == (30 * 86400, True)
    assert cfs["events"].qualifier_index and not cfs["events"].value_index
    assert cfs["hits"].options.counter is True
    quiet = cfs["quiet"].options
    assert (quiet.counter, quiet.max_versions, quiet.ttl) == (False, 2, 45 * 86400)
    assert cfs["x-y"].options.ttl == 90 and cfs["x-y"].options.max_versions is None
    assert [cfs[n].access_group for n in cfs] == ["hot", "default", "hot", "default", "default"]
    assert list(schema.access_groups) == ["default", "hot"]
    hot = schema.access_groups["hot"]
    assert (hot.options.in_memory, hot.options.blocksize, hot.options.replication) == (True, 65536, 3)
    assert (hot.options.compressor, hot.options.bloom_filter) == ("zlib", "rows")
    assert hot.defaults.max_versions == 5
    assert schema.access_groups["default"].options is None
    assert schema.group_commit_interval == 100
    assert schema.access_group_defaults.in_memory is False
    assert schema.column_family_defaults.ttl == 7 * 86400


def test_family_named_only_in_an_access_group_is_created():
    schema = parse("CREATE TABLE t (ACCESS GROUP g (a, b), b MAX_VERSIONS 1)").schema
    assert list(schema.access_groups) == ["g"]
    assert [(cf.name, cf.access_group) for cf in schema.column_families.values()] == [("a", "g"), ("b", "g")]
    assert schema.column_families["a"].options is None


@pytest.mark.parametrize("command, code", [
    ("CREATE TABLE t (a, b, a)", codes.HQL_BAD_COMMAND),
    ("CREATE TABLE t (ACCESS GROUP g (a), ACCESS GROUP g (b))", codes.HQL_BAD_COMMAND),
    ("CREATE TABLE t (ACCESS GROUP g (a), ACCESS GROUP h (a))", codes.HQL_BAD_COMMAND),
    ("CREATE TABLE t ('a.b')", codes.HQL_BAD_COMMAND),
    ("CREATE TABLE t (a COUNTER, INDEX a)", codes.HQL_BAD_COMMAND),
    ("CREATE TABLE t (a, INDEX a, INDEX a)", codes.HQL_BAD_COMMAND),
    ("CREATE TABLE t (ACCESS GROUP g (a) REPLICATION 40000)", codes.HQL_BAD_COMMAND),
    ("CREATE TABLE t (a MAX_VERSIONS 1 REVS 2)", codes.HQL_PARSE_ERROR),
    ("CREATE TABLE t (a TTL 1 TTL 2)", codes.HQL_PARSE_ERROR),
    ("CREATE TABLE t (ACCESS GROUP g (a) IN_MEMORY IN_MEMORY false)", codes.HQL_PARSE_ERROR),
    ("CREATE TABLE t (a) GROUP_COMMIT_INTERVAL 1 GROUP_COMMIT_INTERVAL 2", codes.HQL_PARSE_ERROR),
    ("CREATE TABLE t (a TTL 3 YEARS)", codes.HQL_PARSE_ERROR),
    ("CREATE TABLE t (a MAX_VERSIONS 3000000000)", codes.HQL_PARSE_ERROR),
    ("CREATE TABLE t ()", codes.HQL_PARSE_ERROR),
    ("CREATE TABLE IF NOT EXISTS t (a)", codes.HQL_PARSE_ERROR),
])
def test_create_table_errors(command, code):
    exc = error_of(command)
    assert exc.code == code, exc.message
    assert exc.message.startswith(codes.text(code) + " - ")


def test_show_create_table_round_trips():
    original = parse("CREATE TABLE t (a MAX_VERSIONS 2 TTL 60 TIME_ORDER ASC, b COUNTER false, "
                     "\"index\", ACCESS GROUP g (b, \"index\") IN_MEMORY BLOCKSIZE 10 REPLICATION 2 "
                     "COMPRESSOR 'lz4' BLOOMFILTER 'none' TTL 5, INDEX a, QUALIFIER INDEX a) "
                     "GROUP_COMMIT_INTERVAL 7 MAX_VERSIONS 4 IN_MEMORY").schema
    text = render_create_table("my-t", original)
    assert text.startswith('CREATE TABLE "my-t" (\n') and text.endswith(";\n")
    again = parse(text[:-2])
    assert again.name == "my-t" and again.schema == original


# ------------------------------------------------------------------ INSERT / DELETE

def test_insert_three_and_four_tuples():
    cells = parse("INSERT INTO t VALUES ('r1', 'cf:q', 'v'), "
                  "(\"2015-01-02 03:04:05\", \"r2\", \"cf\", ''), "
                  "('r3', '\"cf:x\"', '\"quoted\"')").cells
    keys = [(c.key.row, c.key.column_family, c.key.column_qualifier, c.key.timestamp, c.key.flag)
            for c in cells]
    assert keys == [("r1", "cf", "q", None, KeyFlag.INSERT),
                    ("r2", "cf", "", ts("2015-01-02 03:04:05"), KeyFlag.INSERT),
                    ("r3", "cf", "x", None, KeyFlag.INSERT)]
    assert [c.value for c in cells] == [b"v", b"", b"quoted"]


def test_insert_keeps_backslashes_verbatim():
    cell = parse(r"INSERT INTO t VALUES ('it\'s', 'cf', 'a\\b')").cells[0]
    assert (cell.key.row, cell.value) == ("it\\'s", b"a\\\\b")


def test_insert_guid():
    cells = parse("INSERT INTO t VALUES (GUID(), 'cf', guid()), (Guid(), 'cf', 'x')").cells
    generated = [cells[0].key.row, cells[0].value.decode(), cells[1].key.row]
    assert all(len(g) == 36 and g.count("-") == 4 for g in generated)
    assert len(set(generated)) == 3


@pytest.mark.parametrize("command", [
    "INSERT INTO t VALUES ('r', 'cf')",
    "INSERT INTO t VALUES ('2015-01-01', 'r', 'cf', 'v', 'extra')",
    "INSERT INTO t VALUES (NOW(), 'cf', 'v')",
    "INSERT INTO t VALUES (GUID(), 'r', 'cf', 'v')",
    "INSERT INTO t VALUES ('r', GUID(), 'v')",
    "INSERT INTO t VALUES ('1420070400000000000', 'r', 'cf', 'v')",
    "INSERT INTO t VALUES (r, 'cf', 'v')",
])
def test_insert_errors(command):
    assert error_of(command).code == codes.HQL_PARSE_ERROR


@pytest.mark.parametrize("command, expected", [
    ("DELETE * FROM t WHERE ROW = 'r'", [("", "", None, KeyFlag.DELETE_ROW)]),
    ("DELETE * FROM t WHERE ROW = 'r' TIMESTAMP '2015-01-01'",
     [("", "", ts("2015-01-01"), KeyFlag.DELETE_ROW)]),
    ("DELETE * FROM t WHERE ROW = 'r' VERSION '2015-01-01'",
     [("", "", ts("2015-01-01"), KeyFlag.DELETE_ROW)]),
    ("DELETE cf, 'cf:q' FROM t WHERE ROW = 'r'",
     [("cf", "", None, KeyFlag.DELETE_CF), ("cf", "q", None, KeyFlag.DELETE_CELL)]),
    ("DELETE cf, 'cf:q' FROM t WHERE ROW = 'r' TIMESTAMP '2015-01-01 10:00'",
     [("cf", "", ts("2015-01-01 10:00"), KeyFlag.DELETE_CELL),
      ("cf", "q", ts("2015-01-01 10:00"), KeyFlag.DELETE_CELL)]),
    ("delete \"cf:q\", cf from t where row = 'r' version '2015-01-01 10:00:01'",
     [("cf", "q", ts("2015-01-01 10:00:01"), KeyFlag.DELETE_CELL_VERSION),
      ("cf", "", ts("2015-01-01 10:00:01"), KeyFlag.DELETE_CELL_VERSION)]),
])
def test_delete_marker_flags(command, expected):
    statement = parse(command)
    assert statement.table == "t"
    assert [(c.key.row, c.key.column_family, c.key.column_qualifier, c.key.timestamp, c.key.flag)
            for c in statement.cells] == [("r",) + e for e in expected]


@pytest.mark.parametrize("command", [
    "DELETE cf:q FROM t WHERE ROW = 'r'",          # "cf:q" must be quoted
    "DELETE * FROM t WHERE ROW > 'r'",
    "DELETE * FROM t",
    "DELETE * FROM t WHERE ROW = 'r' TIMESTAMP '1420070400000000000'",
    "DELETE * FROM t WHERE ROW = 'r' TIMESTAMP '2015-01-01' VERSION '2015-01-01'",
])
def test_delete_errors(command):
    assert error_of(command).code == codes.HQL_PARSE_ERROR


# ------------------------------------------------------------------ SELECT

def test_select_columns():
    spec = spec_of("SELECT CELLS a, b:q, c:^pre, d:*, e:/^x.*$/, 'f:quoted q' FROM t")
    assert spec.columns == ["a", "b:q", "c:^pre", "d", "e:/^x.*$/", "f:quoted q"]
    assert spec_of("select * from t").columns is None


def test_keyword_case_and_keywords_as_names():
    spec = spec_of("sElEcT value, row FROM select WhErE RoW = 'x' LiMiT 3")
    assert spec.columns == ["value", "row"] and spec.row_limit == 3
    assert parse("SELECT * FROM select").table == "select"


@pytest.mark.parametrize("where, interval", [
    ("ROW = 'm'", RowInterval("m", True, "m", True)),
    ("ROW < 'm'", RowInterval(None, True, "m", False)),
    ("ROW <= 'm'", RowInterval(None, True, "m", True)),
    ("ROW > 'm'", RowInterval("m", False, None, True)),
    ("ROW >= 'm'", RowInterval("m", True, None, True)),
    ("ROW =^ 'abc'", RowInterval("abc", True, "abd", False)),
    ("ROW =^ ''", RowInterval("", True, None, False)),
    ("'a' < ROW <= 'm'", RowInterval("a", False, "m", True)),
    ("'m' >= ROW > 'a'", RowInterval("a", False, "m", True)),
])
def test_row_predicates(where, interval):
    assert spec_of(f"SELECT * FROM t WHERE {where}").row_intervals == [interval]


def test_row_predicates_and_or():
    spec = spec_of("SELECT * FROM t WHERE ROW > 'a' AND ROW < 'm'")
    assert spec.row_intervals == [RowInterval("a", False, None, True), RowInterval(None, True, "m", False)]
    spec = spec_of("SELECT * FROM t WHERE ('a' <= ROW < 'm' OR ROW = 'z' OR ROW =^ 'q')")
    assert spec.row_intervals == [RowInterval("a", True, "m", False), RowInterval("z", True, "z", True),
                                  RowInterval("q", True, "r", False)]
    assert spec_of("SELECT * FROM t WHERE ROW REGEXP '^a.*'").row_regexp == "^a.*"


@pytest.mark.parametrize("where, interval", [
    ("CELL = 'r', 'cf:q'", CellInterval("r", "cf:q", True, "r", "cf:q", True)),
    ("'a','cf' < CELL <= 'b','cf:z'", CellInterval("a", "cf", False, "b", "cf:z", True)),
    ("CELL >= 'r','cf'", CellInterval("r", "cf", True, None, None, True)),
    ("CELL =^ 'r','cf:ab'", CellInterval("r", "cf:ab", True, "r", "cf:ab\U0010ffff", False)),
])
def test_cell_predicates(where, interval):
    spec = spec_of(f"SELECT * FROM t WHERE {where}")
    assert spec.cell_intervals == [interval] and spec.row_intervals is None


def test_cell_predicates_or():
    spec = spec_of("SELECT * FROM t WHERE (CELL = 'a','cf' OR CELL = 'b','cf')")
    assert [ci.start_row for ci in spec.cell_intervals] == ["a", "b"]


@pytest.mark.parametrize("where, start, end", [
    ("TIMESTAMP < '2015-01-01'", None, ts("2015-01-01")),
    ("TIMESTAMP <= '2015-01-01'", None, ts("2015-01-01") + 1),
    ("TIMESTAMP > '2015-01-01'", ts("2015-01-01") + 1, None),
    ("TIMESTAMP >= '2015-01-01'", ts("2015-01-01"), None),
    ("TIMESTAMP = '2015-01-01'", ts("2015-01-01"), ts("2015-01-01") + 1),
    ("'2015-01-01' < TIMESTAMP <= '2015-02-01'", ts("2015-01-01") + 1, ts("2015-02-01") + 1),
    ("'2015-02-01' > TIMESTAMP >= '2015-01-01'", ts("2015-01-01"), ts("2015-02-01")),
])
def test_timestamp_predicates(where, start, end):
    spec = spec_of(f"SELECT * FROM t WHERE {where}")
    assert (spec.start_time, spec.end_time) == (start, end)


def test_value_regexp_and_column_predicates():
    spec = spec_of("SELECT a FROM t WHERE VALUE REGEXP 'x+' AND a = 'v'")
    assert spec.value_regexp == "x+"
    assert [(p.column_family, p.column_qualifier, p.operation, p.value) for p in spec.column_predicates] \
        == [("a", None, Op.EXACT_MATCH, "v")]
    assert spec.and_column_predicates is True
    spec = spec_of("SELECT a FROM t WHERE a:q = 'v' OR a =^ 'p' OR a:* =~ /r.g/ OR "
                   "REGEXP(a:/^q/, 'w') OR EXISTS(a:q2) OR EXISTS(a:*) OR EXISTS(a:/z/)")
    assert [(p.column_qualifier, p.operation, p.value) for p in spec.column_predicates] == [
        ("q", Op.EXACT_MATCH | Op.QUALIFIER_EXACT_MATCH, "v"),
        (None, Op.PREFIX_MATCH, "p"),
        ("", Op.REGEX_MATCH | Op.QUALIFIER_PREFIX_MATCH, "r.g"),
        ("^q", Op.REGEX_MATCH | Op.QUALIFIER_REGEX_MATCH, "w"),
        ("q2", Op.QUALIFIER_EXACT_MATCH, ""),
        ("", Op.QUALIFIER_PREFIX_MATCH, ""),
        ("z", Op.QUALIFIER_REGEX_MATCH, "")]
    assert spec.and_column_predicates is False
    spec = spec_of("SELECT a FROM t WHERE a = 'x' AND b:q = 'y'")
    assert spec.and_column_predicates is True and len(spec.column_predicates) == 2


def test_select_options():
    spec = spec_of("SELECT * FROM t MAX_VERSIONS = 2 LIMIT=10 CELL_LIMIT 5 CELL_LIMIT_PER_FAMILY 3 "
                   "OFFSET 4 KEYS_ONLY RETURN_DELETES SCAN_AND_FILTER_ROWS NO_CACHE "
                   "DISPLAY_TIMESTAMPS DISPLAY_REVISIONS NO_ESCAPE FS='|'")
    assert (spec.versions, spec.row_limit, spec.cell_limit, spec.cell_limit_per_family) == (2, 10, 5, 3)
    assert (spec.row_offset, spec.cell_offset) == (4, 0)
    assert spec.keys_only and spec.return_deletes and spec.scan_and_filter_rows and spec.do_not_cache
    assert spec_of("SELECT * FROM t REVS 1 CELL_OFFSET 7").cell_offset == 7
    assert spec_of("SELECT * FROM t REVS 1").versions == 1


@pytest.mark.parametrize("command, code", [
    ("SELECT * FROM t LIMIT 1 LIMIT 2", codes.HQL_PARSE_ERROR),
    ("SELECT * FROM t MAX_VERSIONS 1 REVS 2", codes.HQL_PARSE_ERROR),
    ("SELECT * FROM t CELL_LIMIT 1 CELL_LIMIT 1", codes.HQL_PARSE_ERROR),
    ("SELECT * FROM t CELL_LIMIT_PER_FAMILY 1 CELL_LIMIT_PER_FAMILY 1", codes.HQL_PARSE_ERROR),
    ("SELECT * FROM t OFFSET 1 OFFSET 1", codes.HQL_PARSE_ERROR),
    ("SELECT * FROM t CELL_OFFSET 1 CELL_OFFSET 1", codes.HQL_PARSE_ERROR),
    ("SELECT * FROM t OFFSET 1 CELL_OFFSET 2", codes.HQL_PARSE_ERROR),
    ("SELECT * FROM t LIMIT 2147483648", codes.HQL_PARSE_ERROR),
    ("SELECT * FROM t FS='ab'", codes.HQL_PARSE_ERROR),
    ("SELECT * FROM t WHERE TIMESTAMP > '2015-01-01' AND TIMESTAMP < '2016-01-01'", codes.HQL_PARSE_ERROR),
    ("SELECT * FROM t WHERE TIMESTAMP =^ '2015-01-01'", codes.HQL_PARSE_ERROR),
    ("SELECT * FROM t WHERE TIMESTAMP > 1420070400000000000", codes.HQL_PARSE_ERROR),
    ("SELECT * FROM t WHERE TIMESTAMP > '1420070400000000000'", codes.HQL_PARSE_ERROR),
    ("SELECT * FROM t WHERE TIMESTAMP > '2015-13-01'", codes.HQL_PARSE_ERROR),
    ("SELECT * FROM t WHERE 'a' = ROW < 'b'", codes.HQL_PARSE_ERROR),
    ("SELECT * FROM t WHERE 'a' < ROW > 'b'", codes.HQL_PARSE_ERROR),
    ("SELECT * FROM t WHERE 'a','c' < CELL >= 'b','c'", codes.HQL_PARSE_ERROR),
    ("SELECT * FROM t WHERE ROW != 'a'", codes.HQL_PARSE_ERROR),
    ("SELECT * FROM t WHERE 'a' <= ROW", codes.HQL_PARSE_ERROR),
    ("SELECT * FROM t WHERE '2015-01-01' < TIMESTAMP", codes.HQL_PARSE_ERROR),
    ("SELECT * FROM t WHERE ROW REGEXP 'a' AND ROW REGEXP 'b'", codes.HQL_PARSE_ERROR),
    ("SELECT * FROM t WHERE a = 'x' OR b = 'y' AND c = 'z'", codes.HQL_PARSE_ERROR),
    ("SELECT * FROM t WHERE EXISTS(a)", codes.HQL_PARSE_ERROR),
    ("SELECT * FROM t WHERE ROW = 'a' AND CELL = 'a','cf'", codes.BAD_SCAN_SPEC),
])
def test_select_errors(command, code):
    exc = error_of(command)
    assert exc.code == code, exc.message


# ------------------------------------------------------------------ syntax errors

def test_trailing_semicolon_is_a_parse_error_with_position():
    exc = error_of("SELECT * FROM t;")
    assert exc.code == codes.HQL_PARSE_ERROR
    assert "line 1, column 16" in exc.message and "';'" in exc.message
    assert "trailing ';'" in exc.message and "'LIMIT'" in exc.message and "'WHERE'" in exc.message


def test_syntax_error_names_line_column_and_expectation():
    exc = error_of("SELECT *\n  FORM t")
    assert exc.message == ("HYPERTABLE HQL parse error - syntax error at line 2, column 3: "
                           "unexpected 'FORM'; expected 'FROM'")
    exc = error_of("SELECT * FROM t WHERE ROW = 'a' LIMIT")
    assert "line 1, column 38: unexpected end of statement; expected one of '=', a number" in exc.message


@pytest.mark.parametrize("command", ["", "   ", "SELECT", "SHOW TABLES; SHOW TABLES",
                                     "SHOW TABLES SHOW TABLES", "SELECT * FROM t WHERE ROW = \"open",
                                     "COMPACT TABLE t", "select * from t where row = 'a' limit -1"])
def test_syntax_errors(command):
    exc = error_of(command)
    assert exc.code == codes.HQL_PARSE_ERROR and "line " in exc.message


# ------------------------------------------------------------------ timestamps and helpers

@pytest.mark.usefixtures("utc_minus_5")
@pytest.mark.parametrize("text, nanos", [
    ("1970-01-01", 5 * 3600 * NS),
    ("1970-01-01 00:01", (5 * 3600 + 60) * NS),
    ("2015-01-02 03:04:05", (1420167845 + 5 * 3600) * NS),
    ("2015-01-02 03:04:05.25", (1420167845 + 5 * 3600) * NS + 250_000_000),
    ("2015-01-02 03:04:05:17", (1420167845 + 5 * 3600) * NS + 17),
    ("1969-12-31 19:00:00", 0),
])
def test_timestamps_use_the_local_time_zone(text, nanos):
    assert parse_timestamp(text) == nanos


@pytest.mark.parametrize("text", ["12345", "2015-1-2", "2015-02-30", "2015-01-01 24:00",
                                  "2015-01-01T00:00", "2015-01-01 00:00:00.1234567891", "yesterday"])
def test_bad_timestamps(text):
    with pytest.raises(ClientException) as info:
        parse_timestamp(text)
    assert info.value.code == codes.HQL_PARSE_ERROR
    assert info.value.message.startswith(f"HYPERTABLE HQL parse error - bad timestamp {text!r}")


@pytest.mark.parametrize("amount, unit, seconds", [
    ("10", None, 10), ("2", "MINUTES", 120), ("1", "hour", 3600), ("1.5", "Days", 129600),
    ("2", "weeks", 14 * 86400), ("1", "MONTH", 30 * 86400), (".5", "second", 0),
])
def test_durations(amount, unit, seconds):
    assert duration_seconds(amount, unit) == seconds


def test_prefix_end_edges():
    assert prefix_end("abc") == "abd"
    assert prefix_end("") is None
    assert prefix_end("\U0010ffff") is None
    assert prefix_end("a\U0010ffff") == "b"
    assert prefix_end("\ud7ff") == "\ue000"


@given(st.text(max_size=4), st.text(max_size=6))
def test_prefix_end_bounds_exactly_the_strings_with_the_prefix(prefix, other):
    end = prefix_end(prefix)
    inside = other.startswith(prefix)
    below_end = end is None or other < end
    assert inside == (prefix <= other and below_end)
    if inside:  # the same order holds on UTF-8 bytes, which is how rows compare
        assert end is None or other.encode("utf-8", "surrogatepass") < end.encode("utf-8", "surrogatepass")


# ------------------------------------------------------------------ file statements

def test_load_data_options():
    statement = parse("LOAD DATA INFILE ROW_KEY_COLUMN=a+b TIMESTAMP_COLUMN=ts HEADER_FILE='h' "
                      "ROW_UNIQUIFY_CHARS=4 DUP_KEY_COLS=true IGNORE_UNKNOWN_CFS SINGLE_CELL_FORMAT "
                      "NO_ESCAPE NO_LOG FS=',' '/tmp/x.tsv' INTO TABLE t")
    assert isinstance(statement, ast.LoadData) and statement.table == "t"
    assert statement.path == "/tmp/x.tsv" and statement.into_file is None
    o = statement.options
    assert (o.row_key_columns, o.timestamp_column, o.header_file, o.row_uniquify_chars) == (("a", "b"), "ts", "h", 4)
    assert o.dup_key_cols and o.ignore_unknown and o.single_cell
    assert o.format == ast.FileFormat(separator=",", escape=False)
    assert parse("LOAD DATA INFILE 'x' INTO FILE 'y'") == ast.LoadData("x", into_file="y")


@pytest.mark.parametrize("command", [
    "LOAD DATA INFILE FS=',' FS=';' 'x' INTO TABLE t",
    "LOAD DATA INFILE FS='ab' 'x' INTO TABLE t",
    "LOAD DATA INFILE ROW_KEY_COLUMN=a TIMESTAMP_COLUMN=a 'x' INTO TABLE t",
    "LOAD DATA INFILE ROW_UNIQUIFY_CHARS=1000 'x' INTO TABLE t",
    "SELECT * FROM t INTO FILE 'a' INTO FILE 'b'",
    "DUMP TABLE t",
])
def test_file_statement_errors(command):
    assert error_of(command).code == codes.HQL_PARSE_ERROR


def test_select_and_dump_into_file():
    statement = parse("SELECT a FROM t WHERE ROW = 'r' DISPLAY_TIMESTAMPS FS=',' INTO FILE 'o.gz'")
    assert statement.into_file == "o.gz" and statement.spec.columns == ["a"]
    assert statement.output == ast.FileFormat(separator=",", timestamps=True)
    dump = parse("DUMP TABLE t WHERE ROW =^ 'a' MAX_VERSIONS 2 INTO FILE 'd'")
    assert isinstance(dump, ast.Select) and dump.into_file == "d" and dump.output.timestamps
    assert dump.spec.versions == 2 and dump.spec.columns is None
    plain = parse("SELECT * FROM t DISPLAY_TIMESTAMPS")  # no effect without INTO FILE
    assert plain.into_file is None
