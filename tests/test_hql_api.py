"""htcluster.hql as a client library: its public API, its imports, and is_read on the real grammar."""
from __future__ import annotations

import ast as pyast
import pathlib
import subprocess
import sys
import uuid

import pytest

from htcluster import codes, hql
from htcluster.types import ClientException, KeyFlag

HQL_DIR = pathlib.Path(hql.__file__).parent
ALLOWED = ("htcluster._thrift", "htcluster.codes", "htcluster.hql", "lark")


def _imports(path: pathlib.Path) -> set[str]:
    """Absolute names of the htcluster/lark modules a file of htcluster.hql imports."""
    names = set()
    for node in pyast.walk(pyast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, pyast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, pyast.ImportFrom):
            base = {0: "", 1: "htcluster.hql", 2: "htcluster"}[node.level]
            if node.module:
                names.add(f"{base}.{node.module}".lstrip("."))
            else:
                names.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in names if n.startswith(("htcluster", "lark"))}


@pytest.mark.parametrize("path", sorted(HQL_DIR.glob("*.py")), ids=lambda p: p.name)
def test_hql_imports_only_thrift_codes_and_lark(path):
    bad = [n for n in _imports(path) if not n.startswith(ALLOWED)]
    assert not bad, f"{path.name} imports {bad}"


def test_importing_hql_loads_no_broker_module():
    code = ("import sys, htcluster.hql; "
            "print([m for m in sys.modules if m.startswith('htcluster.broker')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    assert out.strip() == "[]"


def test_public_names_exist_and_are_documented():
    assert hql.__doc__
    for name in hql.__all__:
        obj = getattr(hql, name)
        assert name == "Statement" or obj.__doc__, name  # Statement is a Union alias
    assert hql.__all__ == sorted(hql.__all__, key=lambda n: (n[0].islower(), n))


def test_insert_has_table_and_cells():
    statement = hql.parse("INSERT INTO t VALUES ('r', 'cf:q', 'v'), ('r2', 'cf', 'w')")
    assert isinstance(statement, hql.Insert) and statement.table == "t"
    assert [(c.key.row, c.key.column_family, c.key.column_qualifier, c.value)
            for c in statement.cells] == [("r", "cf", "q", b"v"), ("r2", "cf", "", b"w")]


def test_guid_is_fixed_at_parse_time():
    text = "INSERT INTO t VALUES (GUID(), 'cf', GUID())"
    statement = hql.parse(text)
    row, value = statement.cells[0].key.row, statement.cells[0].value
    uuid.UUID(row), uuid.UUID(value.decode())
    assert row != value.decode()
    # the statement holds its GUIDs: every conversion (every retry) sends the same cells
    assert (statement.cells[0].key.row, statement.cells[0].value) == (row, value)
    assert hql.parse(text).cells[0].key.row != row  # a new parse is a new statement


def test_delete_has_markers():
    statement = hql.parse("DELETE 'cf:q', other FROM t WHERE ROW = 'r'")
    assert isinstance(statement, hql.Delete) and statement.table == "t"
    assert [c.key.flag for c in statement.cells] == [KeyFlag.DELETE_CELL, KeyFlag.DELETE_CF]


def test_parse_error_code():
    with pytest.raises(ClientException) as info:
        hql.parse("SELEC * FROM t")
    assert info.value.code == codes.HQL_PARSE_ERROR
    with pytest.raises(ClientException) as info:
        hql.parse(None)  # type: ignore[arg-type]
    assert info.value.code == codes.HQL_PARSE_ERROR and "str" in info.value.message


@pytest.mark.parametrize("text", [
    "SELECT * FROM t", "select cf FROM t WHERE ROW = 'a' LIMIT 3", "SHOW TABLES",
    "show create table t", "DESCRIBE TABLE t", "describe table with ids t", "EXISTS TABLE t",
    "GET LISTING", "  select\n*\nfrom t",
])
def test_reads(text):
    assert hql.is_read(text)


@pytest.mark.parametrize("text", [
    "INSERT INTO t VALUES ('r', 'cf', 'v')", "DELETE * FROM t WHERE ROW = 'r'",
    "CREATE TABLE t (cf)", "DROP TABLE t", "ALTER TABLE t ADD (x)", "RENAME TABLE a TO b",
    "SELECT * FROM t INTO FILE 'out.tsv'", "SELECT * FRM t", "", "select", "SHOW", "selectx * from t",
    "SELECT * FROM t; DROP TABLE t", "LOAD DATA INFILE 'a.tsv' INTO TABLE t", "USE x",
    # the old verb check took these for reads
    "SHOWX", "EXISTS", "GET LISTING NOW",
])
def test_writes_and_unparsable(text):
    assert not hql.is_read(text)


def test_is_read_is_memoised_and_bounded():
    hql.is_read.cache_clear()
    assert hql.is_read("SELECT * FROM memo")
    assert hql.is_read("SELECT * FROM memo")
    info = hql.is_read.cache_info()
    assert info.hits == 1 and info.maxsize is not None and info.maxsize > 0


def test_is_read_of_non_text_is_write():
    assert hql.is_read(None) is False  # type: ignore[arg-type]


def test_parser_cache_is_private_or_unused(tmp_path, monkeypatch):
    import os
    import stat

    from htcluster.hql import parser

    monkeypatch.setattr(parser.tempfile, "gettempdir", lambda: str(tmp_path))
    path = parser._cache_file()
    if path:  # POSIX: a directory only this user may write
        info = os.stat(os.path.dirname(path))
        assert info.st_uid == os.getuid() and not info.st_mode & 0o077
        os.chmod(os.path.dirname(path), 0o777)  # made writable by others: never used again
        assert parser._cache_file() is False
        assert stat.S_ISDIR(info.st_mode)
