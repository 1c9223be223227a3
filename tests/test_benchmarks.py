"""Each benchmark still runs: ``--quick`` mode, a table on stdout and a JSON file.

Speed itself is never asserted here (ratios live in the benchmarks' output).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted((ROOT / "benchmarks").glob("bench_*.py"))
#: The scripts import this checkout's htcluster, installed or not (a script's own folder is first on sys.path).
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.stem)
def test_benchmark_quick_mode(script: Path, tmp_path: Path) -> None:
    out = tmp_path / f"{script.stem}.json"
    proc = subprocess.run([sys.executable, str(script), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=180, cwd=ROOT, env=ENV)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "ratio" in proc.stdout, proc.stdout
    doc = json.loads(out.read_text())
    assert doc["benchmark"] and len(doc) > 4


def test_bench_mutator_chaos_quick_mode(tmp_path: Path) -> None:
    """``bench_mutator.py --chaos``: members killed and stopped while loading; nothing lost, nothing duplicated."""
    script = ROOT / "benchmarks" / "bench_mutator.py"
    out = tmp_path / "chaos.json"
    proc = subprocess.run([sys.executable, str(script), "--quick", "--chaos", "--json", str(out)],
                          capture_output=True, text=True, timeout=180, cwd=ROOT, env=ENV)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "ratio" in proc.stdout, proc.stdout
    doc = json.loads(out.read_text())
    assert [r["case"] for r in doc["results"]] == ["Replicas.mutator, 3 brokers",
                                                   "Shards.mutator, 2 shards x 2 brokers"]
    for row in doc["results"]:
        assert row["acknowledged"] > 0 and row["lost"] == 0 and row["duplicated"] == 0, row
