"""The cell-file reader and writer of htcluster.hql.tsv without a broker: forms and round trips."""
from __future__ import annotations

import gzip
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from htcluster import codes
from htcluster.hql.statements import FileFormat, LoadOptions
from htcluster.hql.tsv import (CellFileReader, cell_line, escape, header_line, open_for_reading,
                               open_for_writing, unescape)
from htcluster.types import Cell, ClientException, Key, KeyFlag

SEPARATORS = ["\t", ",", ";", "|"]


@given(st.binary(max_size=60), st.sampled_from(SEPARATORS))
def test_escape_round_trips(data, sep):
    sep_bytes = sep.encode()
    escaped = escape(data, sep_bytes)
    assert b"\n" not in escaped and b"\t" not in escaped and b"\r" not in escaped
    assert unescape(escaped, sep_bytes) == data


_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
_cells = st.lists(st.tuples(_text.filter(str.strip), st.sampled_from(["a", "b"]),
                            st.text(max_size=6), st.binary(max_size=20),
                            st.integers(1, 2**62)), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(_cells, st.sampled_from(SEPARATORS), st.booleans())
def test_written_cells_read_back(cells, sep, timestamps):
    fmt = FileFormat(separator=sep, timestamps=timestamps)
    written = [Cell(Key(row, cf, q, timestamp=ts, flag=KeyFlag.INSERT), value) for row, cf, q, value, ts in cells]
    data = header_line(fmt) + b"".join(cell_line(c, fmt) for c in written)
    reader = CellFileReader(io.BytesIO(data), LoadOptions(format=fmt), {"a", "b"}, "mem")
    back = list(reader.cells())
    assert [(c.key.row, c.key.column_family, c.key.column_qualifier, c.value or b"") for c in back] == \
        [(row, cf, q, value) for row, cf, q, value, _ in cells]
    if timestamps:
        assert [c.key.timestamp for c in back] == [ts for *_, ts in cells]


def test_delete_markers_round_trip():
    fmt = FileFormat(timestamps=True)
    markers = [Cell(Key("r", "", "", timestamp=5, flag=KeyFlag.DELETE_ROW)),
               Cell(Key("r", "a", "", timestamp=6, flag=KeyFlag.DELETE_CF)),
               Cell(Key("r", "a", "q", timestamp=7, flag=KeyFlag.DELETE_CELL))]
    data = header_line(fmt) + b"".join(cell_line(c, fmt) for c in markers)
    back = list(CellFileReader(data.splitlines(), LoadOptions(), {"a"}, "mem").cells())
    assert [(c.key.flag, c.key.column_family, c.key.column_qualifier, c.key.timestamp) for c in back] == [
        (KeyFlag.DELETE_ROW, "", "", 5), (KeyFlag.DELETE_CELL, "a", "", 6), (KeyFlag.DELETE_CELL, "a", "q", 7)]


@pytest.mark.parametrize("lines, message", [
    ([b"r\ta\tv\n", b"r\ta\n"], "line 2"),
    ([b"#row\tcolumn\tvalue\n", b"r\ta\tv\textra\n"], "line 2"),
    ([b"\xff\ta\tv\n"], "UTF-8"),
    ([b"\ta\tv\n"], "empty"),
    ([b"r\t\tv\n"], "column is empty"),
])
def test_bad_lines_name_the_line(lines, message):
    with pytest.raises(ClientException) as info:
        list(CellFileReader(lines, LoadOptions(), {"a"}, "f.tsv").cells())
    assert info.value.code == codes.HQL_BAD_LOAD_FILE_FORMAT and message in info.value.message
    assert "f.tsv" in info.value.message


def test_header_form_details():
    lines = [b"id\tname\tage:years\tjunk\n", b"1\tAnn\t31\t\n", b"2\t\t\t\n", b"\n", b"3\tCy\r\n"]
    reader = CellFileReader(lines, LoadOptions(ignore_unknown=True), {"name", "age"}, "h")
    got = [(c.key.row, c.key.column_family, c.key.column_qualifier, c.value) for c in reader.cells()]
    assert got == [("1", "name", "", b"Ann"), ("1", "age", "years", b"31"), ("3", "name", "", b"Cy")]
    assert reader.rows == 3 and reader.lines == 5
    unique = CellFileReader([b"#k\tname\n", b"x\tv\n", b"x\tw\n"], LoadOptions(row_uniquify_chars=6),
                            {"name"}, "u")
    rows = [c.key.row for c in unique.cells()]
    assert len(set(rows)) == 2 and all(r.startswith("x") and len(r) == 7 for r in rows)


def test_atomic_gzip_writing(tmp_path):
    target = tmp_path / "out.tsv.gz"
    with open_for_writing(target) as out:
        out.write(b"#row\tcolumn\tvalue\nr\ta\tv\n")
    with open_for_reading(target) as source:
        assert source.read() == b"#row\tcolumn\tvalue\nr\ta\tv\n"
    assert gzip.decompress(target.read_bytes()).startswith(b"#row")
    with pytest.raises(RuntimeError):
        with open_for_writing(target) as out:
            out.write(b"partial")
            raise RuntimeError("stop")
    with open_for_reading(target) as source:  # the old file is intact, no temporary is left
        assert source.read().endswith(b"r\ta\tv\n")
    assert [p.name for p in tmp_path.iterdir()] == ["out.tsv.gz"]
