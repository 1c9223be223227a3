"""The typed broker methods of routed calls (generated from the IDL) call, and type-check, as declared."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from htcluster import ConfigError, Replicas, Resources, Shards
from htcluster.types import Cell, Key, ScanSpec, Status

ROOT = Path(__file__).resolve().parent.parent


def test_the_generated_module_matches_the_idl():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_typed.py"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_typed_calls_route_like_call(local_broker):
    replicas = Replicas([local_broker.address], socket_timeout=30.0)
    if not replicas.broker.namespace_exists("typed"):
        replicas.broker.namespace_create("typed")
    logs = replicas.namespace("typed")
    if not logs.table_exists("t"):
        logs.hql_query("CREATE TABLE t (a)")
    logs.set_cells("t", [Cell(Key("r1", "a", ""), b"v1")])  # stamped and failed over like call("set_cells")
    cells = logs.get_cells("t", ScanSpec())
    assert [c.key.row for c in cells] == ["r1"] and cells[0].key.timestamp is not None
    assert logs.get_cell("t", "r1", "a") == b"v1"
    assert isinstance(replicas.broker.status(), Status)
    resources = Resources([local_broker.address], namespace="typed")
    assert resources.namespace().get_cell("t", "r1", "a") == b"v1"  # the default namespace
    shards = Shards([(local_broker.address, "only")])
    assert shards.namespace("only", "typed").get_cell("t", "r1", "a") == b"v1"
    with pytest.raises(ConfigError, match="needs a namespace"):
        Resources([local_broker.address]).namespace()
    with pytest.raises(KeyError):
        shards.namespace("elsewhere", "typed")
    for target in (replicas, resources, shards):
        target.close()


def test_mypy_checks_typed_calls(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(textwrap.dedent("""
        from htcluster import Replicas
        from htcluster.types import Cell, ScanSpec

        replicas = Replicas("h1,h2")
        cells: list[Cell] = replicas.namespace("logs").get_cells("LogDb", ScanSpec())
        value: bytes = replicas.namespace("logs").get_cell("LogDb", "row", "cf")
        wrong: str = replicas.namespace("logs").get_cells(7, ScanSpec())
        replicas.namespace("logs").get_cels("LogDb", ScanSpec())
    """))
    done = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--strict", "--follow-imports=silent",
                           str(sample)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    lines = [line for line in done.stdout.splitlines() if "sample.py" in line]
    assert len(lines) == 3, done.stdout  # the two errors of `wrong`, and the misspelt method
    assert any("get_cels" in line for line in lines)
    assert any('"int"' in line and '"str"' in line for line in lines)
