"""Every regexp of a scan runs on RE2 (as Hypertable's do): linear time, and RE2's syntax only.

Reproduces issue 10: ``ROW REGEXP '^(a+)+$'`` over one 27-character row took
20 s with Python's backtracking ``re`` and stalled other clients' calls.
"""
from __future__ import annotations

import threading
import time

import pytest
from brokertest import make_table

from htcluster import codes
from htcluster.types import Cell, ClientException, ColumnPredicate, Key, ScanSpec
from htcluster.types import ColumnPredicateOperation as Op

#: Loose bound (seconds) for a scan RE2 answers in microseconds; backtracking took 20 s.
BOUND = 5.0
EVIL = "^(a+)+$"


def _fill(client, ns, table="t"):
    make_table(client, ns, table, "cf")
    rows = ["a" * 26 + "b", "a" * 30 + "b", "a" * 27, "abc"]
    client.set_cells(ns, table, [Cell(Key(row, "cf", "q" + row[-3:]), row.encode()) for row in rows])
    return rows


def test_catastrophic_row_regexp_is_fast_and_does_not_stall_others(client, ns, broker,
                                                                    raw_client_factory):
    _fill(client, ns)
    other = raw_client_factory(broker.address)
    other.status()
    answer: dict = {}

    def select() -> None:
        started = time.monotonic()
        try:
            answer["cells"] = client.hql_query(ns, f"SELECT * FROM t WHERE ROW REGEXP '{EVIL}'").cells
        except Exception as exc:  # noqa: BLE001 - reported by the assert below
            answer["error"] = exc
        answer["seconds"] = time.monotonic() - started

    worker = threading.Thread(target=select)
    worker.start()
    waits = []
    while worker.is_alive() and len(waits) < 50:
        started = time.monotonic()
        other.status()
        waits.append(time.monotonic() - started)
    worker.join(60)
    assert not worker.is_alive()
    assert "error" not in answer, answer
    assert answer["seconds"] < BOUND, answer["seconds"]
    assert max(waits, default=0.0) < BOUND, waits
    assert [c.key.row for c in answer["cells"]] == ["a" * 27]


def test_value_and_qualifier_regexps_are_linear_too(client, ns):
    _fill(client, ns)
    started = time.monotonic()
    spec = ScanSpec(value_regexp=EVIL, columns=["cf:/^(a+)+b$/"])
    assert client.get_cells(ns, "t", spec) == []
    pred = ColumnPredicate("cf", "^(q+)+$", Op.REGEX_MATCH | Op.QUALIFIER_REGEX_MATCH, EVIL)
    assert client.get_cells(ns, "t", ScanSpec(column_predicates=[pred])) == []
    rows = client.hql_query(ns, "SELECT * FROM t WHERE cf =~ /^(a+)+b$/").cells
    assert sorted(c.key.row for c in rows) == sorted(["a" * 26 + "b", "a" * 30 + "b"])
    assert time.monotonic() - started < BOUND


def _refused(call, *args) -> ClientException:
    with pytest.raises(ClientException) as info:
        call(*args)
    assert info.value.code == codes.BAD_SCAN_SPEC, info.value
    return info.value


@pytest.mark.parametrize("pattern", [r"(a)\1", "a(?=b)", "(?<!x)a", "a(?!b)"])
def test_patterns_re2_refuses_are_bad_scan_specs_naming_the_pattern(client, ns, pattern):
    _fill(client, ns)
    cases = [
        ScanSpec(row_regexp=pattern),
        ScanSpec(value_regexp=pattern),
        ScanSpec(columns=[f"cf:/{pattern}/"]),
        ScanSpec(column_predicates=[ColumnPredicate("cf", None, Op.REGEX_MATCH, pattern)]),
        ScanSpec(column_predicates=[ColumnPredicate("cf", pattern, Op.QUALIFIER_REGEX_MATCH, None)]),
    ]
    for spec in cases:
        error = _refused(client.get_cells, ns, "t", spec)
        assert pattern in error.message and "RE2" in error.message
    # HQL strings keep a backslash as written (protocol.md 6.1)
    error = _refused(client.hql_query, ns, f"SELECT * FROM t WHERE ROW REGEXP '{pattern}'")
    assert pattern in error.message


def test_refused_pattern_through_a_scanner(client, ns):
    _fill(client, ns)
    try:
        scanner = client.scanner_open(ns, "t", ScanSpec(row_regexp="(x)\\1"))
    except ClientException as exc:  # refused at open or at the first fetch: both are fine
        assert exc.code == codes.BAD_SCAN_SPEC
        return
    error = _refused(client.scanner_get_cells, scanner)
    assert "(x)\\1" in error.message


def test_re2_syntax_still_matches_like_before(client, ns):
    _fill(client, ns)
    got = client.get_cells(ns, "t", ScanSpec(row_regexp="^a{27}$|^abc$"))
    assert sorted(c.key.row for c in got) == ["a" * 27, "abc"]
    got = client.get_cells(ns, "t", ScanSpec(value_regexp="(?i)ABC"))
    assert [c.key.row for c in got] == ["abc"]
    # a search, not a full match, as upstream's RE2::PartialMatch
    got = client.get_cells(ns, "t", ScanSpec(row_regexp="b"))
    assert len(got) == 3
