"""Each benchmark still runs: ``--quick`` mode, a table on stdout and a JSON file.

Speed itself is never asserted here (ratios live in the benchmarks' output).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("bench_*.py"))


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.stem)
def test_benchmark_quick_mode(script: Path, tmp_path: Path) -> None:
    out = tmp_path / f"{script.stem}.json"
    proc = subprocess.run([sys.executable, str(script), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=180, cwd=script.parent.parent)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "ratio" in proc.stdout, proc.stdout
    doc = json.loads(out.read_text())
    assert doc["benchmark"] and len(doc) > 4
