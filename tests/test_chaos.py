"""A short chaos run of HQL INSERTs through Replicas (the 2-minute run is ``benchmarks/chaos_hql.py``)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import chaos_hql  # noqa: E402


def test_hql_inserts_survive_kill_pause_and_restart_of_members():
    """Once 170 of 284,817 INSERTs surfaced BrokerUnavailable, 94 of them applied; now none may fail or repeat."""
    result = chaos_hql.run(seconds=8.0, period=0.8, seed=11)
    assert result["errors"] == 0, result["first_errors"]
    assert result["acknowledged"] > 0 and result["actions"] >= 3
    assert result["lost"] == 0 and result["duplicated"] == 0
    assert result["found"] == result["acknowledged"]


def test_stamped_writes_survive_kill_pause_and_restart_of_members():
    """The same chaos for set_cells batches that Replicas stamps: nothing lost, nothing repeated."""
    result = chaos_hql.run(seconds=8.0, period=0.8, seed=12, mode="stamped")
    assert result["errors"] == 0, result["first_errors"]
    assert result["acknowledged"] > 0 and result["actions"] >= 3
    assert result["lost"] == 0 and result["duplicated"] == 0
    assert result["found"] == result["acknowledged"]
