"""HQL file statements: LOAD DATA INFILE, SELECT/DUMP TABLE ... INTO FILE, confined to --files DIR.

Issue 10: these answered NOT_IMPLEMENTED, so ``aircraft_model.tsv.gz`` could
not be loaded by any htcluster command.
"""
from __future__ import annotations

import gzip
import os
import shutil
import uuid
from pathlib import Path

import pytest

from htcluster import codes
from htcluster.testing import LocalBroker
from htcluster.types import ClientException, HqlResult, KeyFlag, ScanSpec

AIRCRAFT = "aircraft_model.tsv.gz"
#: Data rows of aircraft_model.tsv.gz (its README; every row has a distinct id).
AIRCRAFT_ROWS = 3684


def shared_file(name: str) -> Path:
    """``../shared/data/<name>`` seen from the repository (or a worktree beside it); skip if absent."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "data" / name
        if candidate.exists():
            return candidate
    pytest.skip(f"shared data {name} not found beside the repository")


@pytest.fixture(scope="module")
def files_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("broker-files")


@pytest.fixture(scope="module")
def broker(files_dir):
    with LocalBroker(extra_args=("--files", str(files_dir))) as local:
        yield local


@pytest.fixture(scope="module")
def closed_broker():
    with LocalBroker() as local:
        yield local


@pytest.fixture
def client(broker, raw_client_factory):
    return raw_client_factory(broker.address)


@pytest.fixture
def ns(client) -> int:
    name = f"f_{uuid.uuid4().hex[:10]}"
    client.namespace_create(name)
    return client.namespace_open(name)


@pytest.fixture
def q(client, ns):
    return lambda command: client.hql_query(ns, command)


def code_of(call, *args) -> ClientException:
    with pytest.raises(ClientException) as info:
        call(*args)
    return info.value


def cells_of(q, table: str, tail: str = "") -> list[tuple]:
    return [(c.key.row, c.key.column_family, c.key.column_qualifier, c.value)
            for c in q(f"SELECT * FROM {table} {tail}").cells]


def write(path: Path, text: str) -> str:
    data = text.encode("utf-8")
    if path.name.endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
    return path.name


# ------------------------------------------------------------------ refusals

@pytest.mark.parametrize("command", [
    "LOAD DATA INFILE 'x.tsv' INTO TABLE t",
    "SELECT * FROM t INTO FILE 'x.tsv'",
    "DUMP TABLE t INTO FILE 'x.tsv'",
])
def test_without_files_every_file_statement_is_refused(closed_broker, raw_client_factory, command):
    client = raw_client_factory(closed_broker.address)
    ns = client.namespace_open("")
    if "t" not in client.get_tables(ns):
        client.hql_query(ns, "CREATE TABLE t (a)")
    error = code_of(client.hql_query, ns, command)
    assert error.code == codes.NOT_IMPLEMENTED and "--files" in error.message


@pytest.mark.parametrize("name", ["../outside.tsv", "/etc/hosts", "sub/../../outside.tsv",
                                  "fs://../outside.tsv", "link/hosts", "escape.tsv", "."])
def test_names_outside_the_directory_are_refused(q, files_dir, name):
    (files_dir / "link").mkdir(exist_ok=True)
    if not (files_dir / "link" / "hosts").is_symlink():
        os.symlink("/etc/hosts", files_dir / "link" / "hosts")
    if not (files_dir / "escape.tsv").is_symlink():
        os.symlink(files_dir.parent / "escape-target.tsv", files_dir / "escape.tsv")
    q("CREATE TABLE t (a)")
    q("INSERT INTO t VALUES ('r', 'a', 'v')")
    for command in (f"LOAD DATA INFILE '{name}' INTO TABLE t", f"SELECT * FROM t INTO FILE '{name}'"):
        error = code_of(q, command)
        assert error.code == codes.INVALID_OPERATION, error
        assert "outside" in error.message or "bad file name" in error.message, error
    assert not (files_dir.parent / "outside.tsv").exists()
    assert not (files_dir.parent / "escape-target.tsv").exists()


def test_missing_file(q):
    q("CREATE TABLE t (a)")
    assert code_of(q, "LOAD DATA INFILE 'nope.tsv' INTO TABLE t").code == codes.FILE_NOT_FOUND
    assert code_of(q, "SELECT * FROM t INTO FILE 'no/such/dir.tsv'").code == codes.FILE_NOT_FOUND
    assert code_of(q, "LOAD DATA INFILE HEADER_FILE='nope.h' 'nope.tsv' INTO TABLE t"
                   ).code == codes.FILE_NOT_FOUND


# ------------------------------------------------------------------ round trips

@pytest.mark.parametrize("name", ["out.tsv", "out.tsv.gz"])
def test_select_into_file_then_load_it_back(q, files_dir, name):
    q("CREATE TABLE t (a, b)")
    q("CREATE TABLE back (a, b)")
    q("INSERT INTO t VALUES ('r1', 'a', 'tab\there'), ('r1', 'b:q', 'new\nline'), "
      "('r2', 'a', 'back\\\\slash'), ('r 3', 'b', 'plain')")
    assert q(f"SELECT * FROM t INTO FILE '{name}'") == HqlResult()
    raw = (files_dir / name).read_bytes()
    text = (gzip.decompress(raw) if name.endswith(".gz") else raw).decode()
    lines = text.splitlines()
    assert lines[0] == "#row\tcolumn\tvalue" and "r1\ta\ttab\\there" in lines
    assert "r1\tb:q\tnew\\nline" in lines and len(lines) == 5
    assert q(f"LOAD DATA INFILE '{name}' INTO TABLE back") == HqlResult()
    assert cells_of(q, "back") == cells_of(q, "t")


def test_dump_table_keeps_timestamps_and_versions(q, files_dir):
    q("CREATE TABLE t (a)")
    q("INSERT INTO t VALUES ('2015-01-02 03:04:05', 'r', 'a', 'old'), ('2016-01-02 03:04:05', 'r', 'a', 'new')")
    q("DUMP TABLE t INTO FILE 'dump.gz'")
    lines = gzip.decompress((files_dir / "dump.gz").read_bytes()).decode().splitlines()
    assert lines[0] == "#timestamp\trow\tcolumn\tvalue" and len(lines) == 3
    q("CREATE TABLE again (a)")
    q("LOAD DATA INFILE 'dump.gz' INTO TABLE again")
    before = [(c.key.timestamp, c.value) for c in q("SELECT * FROM t").cells]
    assert [(c.key.timestamp, c.value) for c in q("SELECT * FROM again").cells] == before
    assert len(before) == 2
    assert code_of(q, "DUMP TABLE t").code == codes.HQL_PARSE_ERROR  # INTO FILE is needed


def test_select_options_into_file(q, files_dir):
    q("CREATE TABLE t (a)")
    q("INSERT INTO t VALUES ('r1', 'a', 'x,y'), ('r2', 'a', 'z')")
    q("SELECT a FROM t WHERE ROW = 'r1' FS=',' NO_ESCAPE DISPLAY_TIMESTAMPS INTO FILE 'sel.csv'")
    lines = (files_dir / "sel.csv").read_text().splitlines()
    assert lines[0] == "#timestamp,row,column,value"
    stamp, rest = lines[1].split(",", 1)
    assert int(stamp) > 0 and rest == "r1,a,x,y" and len(lines) == 2
    q("SELECT a FROM t FS=',' INTO FILE 'esc.csv'")  # with escapes, the separator is escaped
    assert "r1,a,x\\,y" in (files_dir / "esc.csv").read_text().splitlines()
    q("CREATE TABLE back (a)")
    q("LOAD DATA INFILE FS=',' 'esc.csv' INTO TABLE back")
    assert cells_of(q, "back") == cells_of(q, "t")


def test_failed_select_leaves_no_file(q, files_dir):
    error = code_of(q, "SELECT * FROM missing INTO FILE 'never.tsv'")
    assert error.code == codes.TABLE_NOT_FOUND
    assert not any(p.name.startswith(("never", ".never")) for p in files_dir.iterdir())


# ------------------------------------------------------------------ load formats

def test_two_and_three_tab_forms_and_deletes(q, files_dir):
    q("CREATE TABLE t (a, b)")
    write(files_dir / "two.tsv", "r1\ta\tone\nr1\tb:q\ttwo\n\nr2\ta\tthree\n")
    q("LOAD DATA INFILE 'two.tsv' INTO TABLE t")
    assert cells_of(q, "t") == [("r1", "a", "", b"one"), ("r1", "b", "q", b"two"), ("r2", "a", "", b"three")]
    write(files_dir / "three.tsv", "#timestamp\trow\tcolumn\tvalue\n"
          "1420070400000000000\tr3\ta\tnanos\n2015-01-01 00:00:01\tr3\tb\tliteral\n")
    q("LOAD DATA INFILE 'three.tsv' INTO TABLE t")
    stamps = {c.value: c.key.timestamp for c in q("SELECT * FROM t WHERE ROW = 'r3'").cells}
    assert stamps[b"nanos"] == 1420070400000000000 and stamps[b"literal"] > 0
    write(files_dir / "del.tsv", "r1\tb:q\t\tDELETE\nr2\t\t\tDELETE\n")
    q("LOAD DATA INFILE 'del.tsv' INTO TABLE t")
    assert [c[:2] for c in cells_of(q, "t")] == [("r1", "a"), ("r3", "a"), ("r3", "b")]


def test_header_form_with_key_and_timestamp_columns(q, files_dir):
    q("CREATE TABLE people (name, city, 'info')")
    write(files_dir / "people.tsv.gz", "first\tlast\twhen\tcity\tinfo:age\tname\n"
          "ann\tlee\t2015-01-02 03:04:05\tParis\t31\tAnn Lee\n"
          "bob\tray\t1420070400000000000\t\t\tBob Ray\n")
    q("LOAD DATA INFILE ROW_KEY_COLUMN=first+last TIMESTAMP_COLUMN=when 'people.tsv.gz' INTO TABLE people")
    got = cells_of(q, "people")
    assert got == [("ann lee", "name", "", b"Ann Lee"), ("ann lee", "city", "", b"Paris"),
                   ("ann lee", "info", "age", b"31"), ("bob ray", "name", "", b"Bob Ray")]
    assert {c.key.timestamp for c in q("SELECT * FROM people WHERE ROW = 'bob ray'").cells} == \
        {1420070400000000000}


def test_unknown_columns_and_the_options_that_skip_them(q, files_dir):
    q("CREATE TABLE t (a)")
    write(files_dir / "h.tsv", "#key\ta\tzzz\nr1\tv1\tjunk\n")
    error = code_of(q, "LOAD DATA INFILE 'h.tsv' INTO TABLE t")
    assert error.code == codes.BAD_KEY and "'zzz'" in error.message and "IGNORE_UNKNOWN_COLUMNS" in error.message
    assert cells_of(q, "t") == []
    q("LOAD DATA INFILE IGNORE_UNKNOWN_COLUMNS 'h.tsv' INTO TABLE t")
    assert cells_of(q, "t") == [("r1", "a", "", b"v1")]
    # the header from another file; DUP_KEY_COLS stores the key column (here 'a') as a cell too
    write(files_dir / "names.h", "a\tjunk\n")
    write(files_dir / "body.tsv", "r9\tx\n")
    q("LOAD DATA INFILE DUP_KEY_COLS IGNORE_UNKNOWN_COLUMNS HEADER_FILE='names.h' 'body.tsv' INTO TABLE t")
    assert ("r9", "a", "", b"r9") in cells_of(q, "t")
    write(files_dir / "extra.tsv", "#key\ta\nr1\tv\tpast the header\n")
    error = code_of(q, "LOAD DATA INFILE 'extra.tsv' INTO TABLE t")
    assert error.code == codes.HQL_BAD_LOAD_FILE_FORMAT and "line 2" in error.message


def test_bad_file_writes_nothing(q, files_dir):
    q("CREATE TABLE t (a)")
    write(files_dir / "bad.tsv", "r1\ta\tok\nr2\ta\n")
    error = code_of(q, "LOAD DATA INFILE 'bad.tsv' INTO TABLE t")
    assert error.code == codes.HQL_BAD_LOAD_FILE_FORMAT and "line 2" in error.message
    write(files_dir / "badts.tsv", "1420070400000000000\tr\ta\tv\n2015-13-45\tr\ta\tv\n")
    error = code_of(q, "LOAD DATA INFILE 'badts.tsv' INTO TABLE t")
    assert error.code == codes.HQL_BAD_LOAD_FILE_FORMAT and "timestamp" in error.message
    assert "line 2" in error.message
    assert cells_of(q, "t") == []
    write(files_dir / "hdr.tsv", "#key\ta\nr1\tv\n")
    error = code_of(q, "LOAD DATA INFILE ROW_KEY_COLUMN=nope 'hdr.tsv' INTO TABLE t")
    assert error.code == codes.HQL_BAD_COMMAND and "'nope'" in error.message
    (files_dir / "trunc.tsv.gz").write_bytes(gzip.compress(b"r\ta\tv\n" * 100)[:-20])
    assert code_of(q, "LOAD DATA INFILE 'trunc.tsv.gz' INTO TABLE t").code == codes.INVALID_OPERATION
    assert cells_of(q, "t") == []


def test_noflush_returns_a_mutator(client, ns, q, files_dir):
    q("CREATE TABLE t (a)")
    write(files_dir / "nf.tsv", "r1\ta\tv\n")
    result = client.hql_exec(ns, "LOAD DATA INFILE 'nf.tsv' INTO TABLE t", True, False)
    assert result.mutator
    client.mutator_close(result.mutator)
    assert cells_of(q, "t") == [("r1", "a", "", b"v")]


def test_counter_family_loads_add(q, files_dir):
    q("CREATE TABLE c (n COUNTER)")
    write(files_dir / "inc.tsv", "r\tn\t5\nr\tn\t-2\n")
    q("LOAD DATA INFILE 'inc.tsv' INTO TABLE c")
    q("LOAD DATA INFILE 'inc.tsv' INTO TABLE c")
    assert cells_of(q, "c") == [("r", "n", "", b"6")]
    write(files_dir / "badinc.tsv", "r\tn\t1\nr\tn\tlots\n")
    error = code_of(q, "LOAD DATA INFILE 'badinc.tsv' INTO TABLE c")
    assert error.code == codes.INVALID_ARGUMENT and "line 2" in error.message
    assert cells_of(q, "c") == [("r", "n", "", b"6")]  # nothing of the bad file was written


def test_load_into_file_converts(q, files_dir):
    write(files_dir / "conv.tsv", "#k\tx\ty:q\nrow1\t1\t2\n")
    assert q("LOAD DATA INFILE 'conv.tsv' INTO FILE 'conv.out'") == HqlResult()
    assert (files_dir / "conv.out").read_text().splitlines() == ["#row\tcolumn\tvalue", "row1\tx\t1",
                                                                "row1\ty:q\t2"]


# ------------------------------------------------------------------ the shared data

def test_aircraft_model_loads_every_row(client, ns, q, files_dir):
    shutil.copy(shared_file(AIRCRAFT), files_dir / AIRCRAFT)
    q("CREATE TABLE freebase (name, category, property)")
    error = code_of(q, f"LOAD DATA INFILE ROW_KEY_COLUMN=id '{AIRCRAFT}' INTO TABLE freebase")
    assert error.code == codes.BAD_KEY and "IGNORE_UNKNOWN_COLUMNS" in error.message
    q(f"LOAD DATA INFILE ROW_KEY_COLUMN=id IGNORE_UNKNOWN_COLUMNS '{AIRCRAFT}' INTO TABLE freebase")
    cells = client.get_cells(ns, "freebase", ScanSpec(columns=["name"]))
    assert len({c.key.row for c in cells}) == len(cells) == AIRCRAFT_ROWS
    by_row = {c.key.row: c.value for c in cells}
    assert by_row["/guid/9202a8c04000641f80000000056e10b4"] == b"Fiat CR.20"
    assert all(c.key.flag == KeyFlag.INSERT for c in cells)


def test_aircraft_model_with_a_header_file_naming_properties(client, ns, q, files_dir):
    # with HEADER_FILE every line of the data file is data: give it the lines after the header
    with gzip.open(shared_file(AIRCRAFT), "rb") as source:
        names = source.readline().decode().rstrip("\n").split("\t")
        (files_dir / "aircraft_body.tsv.gz").write_bytes(gzip.compress(source.read()))
    header = ["name", "id"] + [f"property:{n}" for n in names[2:]]
    write(files_dir / "freebase.header", "\t".join(header) + "\n")
    q("CREATE TABLE freebase (name, category, property)")
    q("LOAD DATA INFILE ROW_KEY_COLUMN=id HEADER_FILE='freebase.header' IGNORE_UNKNOWN_COLUMNS "
      "'aircraft_body.tsv.gz' INTO TABLE freebase")
    rows = {c.key.row for c in client.get_cells(ns, "freebase", ScanSpec(columns=["name"]))}
    assert len(rows) == AIRCRAFT_ROWS
    fiat = q("SELECT property FROM freebase WHERE ROW = '/guid/9202a8c04000641f80000000056e10b4'").cells
    assert ("introduced", b"1926-06-19") in {(c.key.column_qualifier, c.value) for c in fiat}


def test_files_must_be_a_directory(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "htcluster.broker", "--port", "0", "--files",
                           str(tmp_path / "missing")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--files" in done.stderr and "does not exist" in done.stderr
    (tmp_path / "plain").write_text("a file")
    done = subprocess.run([sys.executable, "-m", "htcluster.broker", "--port", "0", "--files",
                           str(tmp_path / "plain")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--files" in done.stderr and "is a file" in done.stderr
