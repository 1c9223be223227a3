"""Shared helpers of the benchmarks: timing, percentiles, a table and a JSON file.

Importing this module puts the checkout that holds it first on ``sys.path``:
``python benchmarks/bench_x.py`` measures the code beside it, even where
another copy of htcluster is installed.

Every benchmark prints a side-by-side table whose ratio column compares each
row with the first (the baseline), and writes the same figures as JSON to
``benchmarks/results/<name>.json`` (or ``--json PATH``).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

#: A benchmark measures the htcluster beside it: this checkout's, not whichever is installed (a script's
#: own folder, benchmarks/, is what Python puts first on sys.path).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from htcluster.cli.status import render_table  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parser(description: str) -> argparse.ArgumentParser:
    """Return an argument parser with the options every benchmark takes: ``--quick`` and ``--json``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true",
                   help="a few iterations only: checks that the benchmark still runs (CI)")
    p.add_argument("--json", type=Path, default=None, help="where to write the JSON results")
    return p


def percentile(samples: Sequence[float], pct: float) -> float:
    """Return the ``pct``-th percentile (0..100) of ``samples``, nearest-rank (NaN for none)."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summarize(samples: Sequence[float], seconds: float) -> dict[str, float]:
    """Sum up call latencies taken over ``seconds`` of wall time (several threads may add up).

    :param samples: the seconds each call took.
    :param seconds: the wall time of the whole run.
    :returns: ``calls``, ``seconds``, ``per_s`` (calls per second), ``p50_ms``,
        ``p99_ms`` and ``mean_ms`` (milliseconds).
    """
    return {
        "calls": len(samples),
        "seconds": seconds,
        "per_s": len(samples) / seconds if seconds else float("inf"),
        "p50_ms": percentile(samples, 50) * 1000,
        "p99_ms": percentile(samples, 99) * 1000,
        "mean_ms": statistics.fmean(samples) * 1000 if samples else float("nan"),
    }


def time_calls(fn: Callable[[], Any], n: int) -> dict[str, float]:
    """Call ``fn`` ``n`` times one after another and :func:`summarize` the latencies."""
    samples = []
    start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return summarize(samples, time.perf_counter() - start)


def print_table(title: str, rows: Iterable[dict[str, Any]], columns: Sequence[str],
                ratio_of: str | None = None, higher_is_better: bool = True) -> list[dict[str, Any]]:
    """Print ``rows`` as an aligned table; add a ``ratio`` column relative to the first row.

    :param ratio_of: the column the ratio is computed on (``None``: no ratio).
    :param higher_is_better: ratio = row/baseline if True, baseline/row otherwise,
        so a ratio above 1 always means "better than the baseline".
    :returns: the rows, with ``ratio`` filled in.
    """
    rows = [dict(r) for r in rows]
    cols = list(columns)
    if ratio_of and rows:
        base = rows[0][ratio_of]
        for r in rows:
            value = r[ratio_of]
            if higher_is_better:
                r["ratio"] = value / base if base else float("nan")
            else:
                r["ratio"] = base / value if value else float("nan")
        cols.append("ratio")

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.2f}" if abs(v) < 1e6 else f"{v:,.0f}"
        return str(v)

    print(f"\n{title}")
    print(render_table(cols, [[fmt(r.get(c, "")) for c in cols] for r in rows], numeric=range(len(cols))))
    return rows


def write_json(name: str, payload: dict[str, Any], path: Path | None = None) -> Path:
    """Write ``payload`` plus machine facts to ``path`` or ``benchmarks/results/<name>.json``."""
    target = path or RESULTS_DIR / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": name, "python": sys.version.split()[0], "machine": platform.machine(),
           "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **payload}
    target.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"\nwrote {target}")
    return target
