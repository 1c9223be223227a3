"""Each benchmark still runs: ``--quick`` mode, a table on stdout and a JSON file.

Speed itself is never asserted here (ratios live in the benchmarks' output).
The selected quick runs start together in the background, :data:`PARALLEL`
at a time, the slowest first: most of a quick run waits (sleeps between
faults, proxies adding latency, brokers restarting), so side by side they
take far less wall time than one after another, and each test waits for its
own run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted((ROOT / "benchmarks").glob("bench_*.py"))
#: The scripts import this checkout's htcluster, installed or not (a script's own folder is first on sys.path).
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
#: Quick runs at a time (each starts its own brokers; a run is mostly waiting).
PARALLEL = 3
#: Seconds one quick run may take, side by side with the others on a slow shared machine.
TIMEOUT = 600
#: The longest quick runs (measured), started first so that the short ones fill in around them.
SLOWEST_FIRST = ("bench_failover", "bench_mutator", "bench_restart", "bench_aio", "bench_membership",
                 "mutator chaos", "bench_broadcast", "bench_hedge", "bench_gray")
#: The chaos mode of bench_mutator, run beside the plain quick runs.
CHAOS = "mutator chaos"

Runs = dict[str, "Future[subprocess.CompletedProcess[str]]"]


def _command(name: str, out: Path) -> list[str]:
    if name == CHAOS:
        return [sys.executable, str(ROOT / "benchmarks" / "bench_mutator.py"), "--quick", "--chaos", "--json",
                str(out)]
    return [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--quick", "--json", str(out)]


@pytest.fixture(scope="module")
def quick_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[Runs, Path]]:
    """Start the quick runs of the benchmarks this session selected; yield ``({name: future}, json_dir)``."""
    wanted = set()
    for item in request.session.items:
        if item.module is request.module:
            callspec = getattr(item, "callspec", None)
            wanted.add(callspec.params["script"].stem if callspec is not None else CHAOS)
    order = [n for n in SLOWEST_FIRST if n in wanted] + sorted(wanted - set(SLOWEST_FIRST))
    out = tmp_path_factory.mktemp("benchmarks")
    with ThreadPoolExecutor(PARALLEL, thread_name_prefix="bench") as pool:
        runs: Runs = {name: pool.submit(subprocess.run, _command(name, out / f"{name.replace(' ', '_')}.json"),
                                        capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT, env=ENV)
                      for name in order}
        try:
            yield runs, out
        finally:
            for future in runs.values():
                future.cancel()  # those not started yet (a run that failed early, -x)


def _finished(runs: tuple[Runs, Path], name: str) -> dict:
    """Wait for ``name``'s run; check it ended well and printed a ratio; return its JSON document."""
    futures, out = runs
    proc = futures[name].result()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "ratio" in proc.stdout, proc.stdout
    doc: dict = json.loads((out / f"{name.replace(' ', '_')}.json").read_text())
    return doc


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.stem)
def test_benchmark_quick_mode(script: Path, quick_runs: tuple[Runs, Path]) -> None:
    doc = _finished(quick_runs, script.stem)
    assert doc["benchmark"] and len(doc) > 4


def test_bench_mutator_chaos_quick_mode(quick_runs: tuple[Runs, Path]) -> None:
    """``bench_mutator.py --chaos``: members killed and stopped while loading; nothing lost, nothing duplicated."""
    doc = _finished(quick_runs, CHAOS)
    assert [r["case"] for r in doc["results"]] == ["Replicas.mutator, 3 brokers",
                                                   "Shards.mutator, 2 shards x 2 brokers"]
    for row in doc["results"]:
        assert row["acknowledged"] > 0 and row["lost"] == 0 and row["duplicated"] == 0, row
