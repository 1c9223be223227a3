"""The README's main job on the real Apache log (../shared/data/access.log.gz, 3,282 lines),
as issue 2's "Done when" runs it: the installed ``htcluster broker --port P --data F`` command,
then ``htcluster load`` and ``htcluster hql`` against it; and ``htcluster demo``."""
from __future__ import annotations

import collections
import gzip
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from htcluster.cli import main
from htcluster.testing import free_port, wait_for_port

from conftest import open_raw_client, scan_all

LINES = 3282
NAMESPACE = "logs"
#: Data rows of ../shared/data/aircraft_model.tsv.gz (its header line not counted).
TSV_ROWS = 3684
#: The console script that ``pip install`` puts beside the interpreter (setup.cfg entry point).
HTCLUSTER = Path(sys.executable).with_name("htcluster")


def direct_counts(path) -> collections.Counter:
    """Response codes of the file by plain splitting, independent of htcluster.cli.weblog."""
    with gzip.open(path, "rt", encoding="latin-1") as f:
        return collections.Counter(line.split('"')[2].split()[0] for line in f)


@pytest.fixture(scope="module")
def broker_address(tmp_path_factory):
    """``htcluster broker --port P --data F``, started through the installed console script."""
    assert HTCLUSTER.exists(), f"no console script at {HTCLUSTER}: install with pip install -e '.[flask,test]'"
    port = free_port()
    proc = subprocess.Popen([str(HTCLUSTER), "broker", "--port", str(port),
                             "--data", str(tmp_path_factory.mktemp("main_job") / "logs.sqlite")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port, process=proc)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.fixture(scope="module")
def loaded(broker_address, shared_data) -> str:
    """The real log loaded once with ``htcluster load``; returns the load's output."""
    result = CliRunner().invoke(main, ["load", "--hosts", broker_address, "--namespace", NAMESPACE,
                                       "--input", str(shared_data / "access.log.gz")])
    assert result.exit_code == 0, result.output
    return result.output


def test_load_reports_every_line(loaded):
    assert re.search(r"lines read\s+3,282\n", loaded)
    assert re.search(r"lines skipped\s+0  \(malformed\)\n", loaded)
    assert re.search(r"cells written\s+22,974\n", loaded)  # seven families per request
    assert float(re.search(r"cells/s\s+([\d,]+)\s+\([\d.]+ s\)\n", loaded).group(1).replace(",", "")) > 0


def test_one_row_per_line_and_one_response_code_each(loaded, broker_address, shared_data):
    client = open_raw_client(broker_address)
    try:
        ns = client.namespace_open(NAMESPACE)
        cells = client.hql_query(ns, "SELECT ResponseCode FROM LogDb").cells
        rows = {c.key.row for c in client.hql_query(ns, "SELECT ClientIpAddress FROM LogDb").cells}
    finally:
        client._iprot.trans.close()
    assert len(cells) == LINES and len(rows) == LINES
    assert collections.Counter(c.value.decode() for c in cells) == direct_counts(shared_data / "access.log.gz")


def test_hql_command_shows_the_response_codes(loaded, broker_address, shared_data):
    result = CliRunner().invoke(main, ["hql", "--hosts", broker_address, "--namespace", NAMESPACE,
                                       "SELECT ResponseCode FROM LogDb"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[-1] == f"({LINES} cells)"
    shown = collections.Counter(line.split()[-1] for line in lines[2:-1])
    assert all(" ResponseCode " in line for line in lines[2:-1])
    assert shown == direct_counts(shared_data / "access.log.gz")


def direct_tsv(path) -> dict[str, tuple[str, int]]:
    """``{id: (name, non-empty property fields)}`` of the TSV by plain splitting, independent of htcluster."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        rows = {}
        for line in f:
            values = line.rstrip("\n").split("\t")[:len(header)]
            rows[values[1]] = (values[0], sum(1 for v in values[2:] if v))
    return rows


def test_the_freebase_tsv_loads_every_row(broker_address, shared_data):
    """``htcluster load`` tells the TSV by its header line and writes ``freebase`` as upstream's loader did."""
    path = shared_data / "aircraft_model.tsv.gz"
    result = CliRunner().invoke(main, ["load", "--hosts", broker_address, "--namespace", "freebase",
                                       "--input", str(path)])
    assert result.exit_code == 0, result.output
    assert re.search(rf"rows written\s+{TSV_ROWS:,}\n", result.output)
    cells = scan_all(broker_address, "freebase", "freebase")
    expected = direct_tsv(path)
    assert len(expected) == TSV_ROWS
    assert len({c.key.row for c in cells}) == TSV_ROWS  # distinct rows, by scanning
    names = {c.key.row: c.value.decode() for c in cells if c.key.column_family == "name"}
    properties = collections.Counter(c.key.row for c in cells if c.key.column_family == "property")
    assert {c.value for c in cells if c.key.column_family == "category"} == {b"aircraft_model"}
    assert names == {row: name for row, (name, _) in expected.items() if name}
    assert properties == collections.Counter({row: n for row, (_, n) in expected.items() if n})


def test_demo_on_the_real_log_finds_every_acknowledged_cell(shared_data):
    proc = subprocess.run([sys.executable, "-m", "htcluster", "demo", "--input", str(shared_data / "access.log.gz")],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert re.search(r"lines read\s+3,282", out)
    assert_demo_output(out, acknowledged=2 * 7 * LINES)


def assert_demo_output(out: str, acknowledged: int) -> None:
    """The demo's promises: the kill in flight, acknowledged == found, timed queries, per-host latency."""
    assert re.search(r"killed the primary replica \S+ \(SIGKILL\) after [\d,]+ requests, while a set_cells "
                     r"of [\d,]+ cells was in flight to it", out)
    summary = {name: re.search(rf"{re.escape(name)}\s+([\d,]+)", out).group(1)
               for name in ("cells acknowledged (replicas + shards)", "cells found afterwards",
                            "failovers (replicas + shards)")}
    assert summary["cells acknowledged (replicas + shards)"] == summary["cells found afterwards"] == f"{acknowledged:,}"
    assert int(summary["failovers (replicas + shards)"]) >= 1
    for query in ("per response code", "top ten paths", "one client by row prefix", "broadcast count to shards"):
        assert re.search(rf"query: {query}\s+[\d.]+ ms", out), query
    latency = out[out.index("per-host latency"):].splitlines()[3:8]
    assert [line.split()[1] for line in latency].count("up") == 4 and "down" in latency[0]  # the killed primary
    assert "shards and replicas agree" in out
    assert "OK: every acknowledged cell was found" in out


def test_demo_on_a_generated_log():
    result = CliRunner().invoke(main, ["demo", "--lines", "700"])
    assert result.exit_code == 0, result.output
    assert re.search(r"lines read\s+700\n", result.output)
    assert_demo_output(result.output, acknowledged=2 * 7 * 700)
