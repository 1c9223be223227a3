"""``htcluster load`` of a header-line TSV into ``freebase (name, category, property)`` (issue 10, item 6):
how rows and cells are formed, auto-detection by content, and the errors."""
from __future__ import annotations

import gzip

import pytest
from click.testing import CliRunner

from htcluster.cli import main, tsv
from htcluster.testing import LocalCluster

from conftest import scan_all

HEADER = "name\tid\taircraft_type\tmaiden_flight\tmanufacturer"
ROWS = [
    "Fiat CR.20\t/guid/1\t\t1926-06-19\tFiat",
    "Blackburn Velos\t/guid/2\tbiplane\t\t\textra\tfields",  # two fields beyond the header
    "\t/guid/3\ttrainer\t\t",  # no name: no name cell
    "Nameless row\t\t\t\t",  # no id: skipped
]


def run(*args: str, input: "str | bytes | None" = None):
    return CliRunner().invoke(main, list(args), input=input)


def scan(address: str, namespace: str, table: str = "freebase") -> list:
    return scan_all(address, namespace, table)


def cells_by_row(cells) -> dict[str, dict[str, str]]:
    rows: dict[str, dict[str, str]] = {}
    for c in cells:
        column = c.key.column_family + (f":{c.key.column_qualifier}" if c.key.column_qualifier else "")
        rows.setdefault(c.key.row, {})[column] = c.value.decode()
    return rows


@pytest.fixture
def sample(tmp_path):
    path = tmp_path / "aircraft_model.tsv"
    path.write_text("\n".join([HEADER, *ROWS]) + "\n")
    return path


def test_rows_and_cells_are_formed_as_upstream_did(broker_address, sample):
    result = run("load", "--hosts", broker_address, "--namespace", "tsv_auto", "--input", str(sample))
    assert result.exit_code == 0, result.output
    assert "(tsv) into tsv_auto/freebase" in result.output  # detected by content, default table
    assert "rows written              3" in result.output and "lines skipped             1" in result.output
    assert "skipped line 5: no 'id' value" in result.output
    assert "1 rows had more fields than the header names" in result.output
    assert cells_by_row(scan(broker_address, "tsv_auto")) == {
        "/guid/1": {"name": "Fiat CR.20", "category": "aircraft_model", "property:maiden_flight": "1926-06-19",
                    "property:manufacturer": "Fiat"},
        "/guid/2": {"name": "Blackburn Velos", "category": "aircraft_model", "property:aircraft_type": "biplane"},
        "/guid/3": {"category": "aircraft_model", "property:aircraft_type": "trainer"},
    }


def test_gzip_stdin_with_format_and_category(broker_address, sample):
    packed = gzip.compress(sample.read_bytes())
    no_category = run("load", "--hosts", broker_address, "--format", "tsv", "--input", "-", input=packed)
    assert no_category.exit_code == 2 and "--category" in no_category.output
    result = run("load", "--hosts", broker_address, "--namespace", "tsv_stdin", "--format", "tsv", "--input", "-",
                 "--category", "planes", "--table", "fb", input=packed)
    assert result.exit_code == 0, result.output
    rows = cells_by_row(scan(broker_address, "tsv_stdin", "fb"))
    assert len(rows) == 3 and {r["category"] for r in rows.values()} == {"planes"}


def test_header_without_id_names_the_missing_column(broker_address, tmp_path):
    path = tmp_path / "things.tsv"
    path.write_text("name\tcolour\nball\tred\n")
    result = run("load", "--hosts", broker_address, "--input", str(path))
    assert result.exit_code == 1
    assert "nothing was loaded" in result.output and "no 'id' column" in result.output


def test_a_tsv_read_as_apache_loads_nothing(broker_address, sample):
    result = run("load", "--hosts", broker_address, "--format", "apache", "--input", str(sample))
    assert result.exit_code == 1
    assert "none of the 5 lines" in result.output and "--format tsv" in result.output


def test_tsv_needs_an_input_file():
    result = run("load", "--format", "tsv")
    assert result.exit_code == 2 and "--input" in result.output


def test_tsv_through_replicas(sample):
    with LocalCluster(2, shared_data=True) as cluster:
        result = run("load", "--hosts", ",".join(cluster.hosts), "--namespace", "tsv_rep", "--input", str(sample))
        assert result.exit_code == 0, result.output
        assert "through replicas" in result.output
        for host in cluster.hosts:
            assert len(cells_by_row(scan(host, "tsv_rep"))) == 3


def test_header_detection():
    assert tsv.looks_like_header(HEADER + "\n")
    assert not tsv.looks_like_header('1.2.3.4 - - [26/Jan/2008:00:21:23 -0800] "GET / HTTP/1.1" 200 5')
    assert not tsv.looks_like_header("just one column")
    assert not tsv.looks_like_header("name\tid with spaces")
    with pytest.raises(ValueError, match="more than once"):
        tsv.parse_header("id\tname\tname")
