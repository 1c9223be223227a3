"""The example scripts run as a user runs them, and the example app test passes (issue 16, item 8).

Each runs in a subprocess with a bounded time.  The two scripts run with the
optional packages (Flask, pydantic, pytest, ...) made unimportable, as after
``pip install htcluster`` with no extra: they need htcluster alone.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
#: Seconds one example may take at most (three brokers start in a few seconds; loaded CI machines are slow).
BOUND = 240

#: Runs a script as ``__main__`` after making the optional packages unimportable.
WITHOUT_EXTRAS = """
import runpy, sys
for name in ("flask", "werkzeug", "pydantic", "pytest", "hypothesis", "opentelemetry", "flask_debugtoolbar"):
    sys.modules[name] = None
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run(*command: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=BOUND,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"{command} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def test_replicas_failover_script():
    out = run(sys.executable, "-c", WITHOUT_EXTRAS, str(EXAMPLES / "replicas_failover.py"), "--rows", "60").stdout
    assert "killed the primary" in out and "with SIGKILL" in out
    assert "rows written: 60  failed: 0  read back: 60  acknowledged but missing: 0" in out
    assert out.count(" pid ") >= 3  # every broker's PID is shown


def test_shards_broadcast_script():
    out = run(sys.executable, "-c", WITHOUT_EXTRAS, str(EXAMPLES / "shards_broadcast.py"), "--rows", "90").stdout
    assert "total placed 90  found 90  on the wrong shard 0" in out
    assert out.count("broadcast eu: ") == 2  # both brokers of shard eu answered
    assert "locate('visitor-00000') -> " in out


def test_the_example_app_test_passes_with_the_plugins_fixtures():
    pytest.importorskip("pydantic")  # the examples extra
    result = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-cov",
                 str(EXAMPLES / "test_logdb_app.py"))
    assert "3 passed" in result.stdout


def test_the_fastapi_example_answers_while_a_replica_is_killed():
    pytest.importorskip("fastapi")  # the fastapi extra, and httpx for its TestClient
    pytest.importorskip("httpx")
    pytest.importorskip("htcluster.aio")
    result = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-cov",
                 str(EXAMPLES / "test_fastapi_app.py"))
    assert "3 passed" in result.stdout


def test_the_main_suite_does_not_collect_the_examples(pytestconfig: pytest.Config):
    """The README's test command (``python -m pytest``, no path) collects ``testpaths`` alone: not examples/."""
    paths = [(ROOT / p).resolve() for p in pytestconfig.getini("testpaths")]
    assert paths == [ROOT / "tests"]
    assert not any(EXAMPLES == p or EXAMPLES in p.parents for p in paths)
