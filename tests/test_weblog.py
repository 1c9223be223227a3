"""htcluster.cli.weblog: Apache log lines into LogDb rows (pure; no broker)."""
from __future__ import annotations

import collections
import gzip
import hashlib
import io
import os
import sys
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from htcluster.cli import weblog
from htcluster.types import KeyFlag

SAMPLE = ('81.52.143.15 - - [26/Jan/2008:00:21:23 -0800] "GET /robots.txt HTTP/1.1" 200 54 "-" '
          '"Mozilla/5.0 (Windows; U; Windows NT 5.1; fr; rv:1.8.1) VoilaBot BETA 1.2 (http://www.voila.com/)" '
          '"www.battlephase.com"')


def read_all(path: "Path | str") -> tuple[list[weblog.LogEntry], weblog.LogStats]:
    stats = weblog.LogStats()
    with weblog.open_log(path) as lines:
        return list(weblog.iter_entries(lines, stats)), stats


def direct_status_counts(path: Path) -> collections.Counter:
    """Count response codes without the module: the word after the quoted request."""
    counts: collections.Counter = collections.Counter()
    with gzip.open(path, "rt", encoding="latin-1") as f:
        for line in f:
            counts[line.split('"')[2].split()[0]] += 1
    return counts


def test_real_log_parses_every_line(shared_data):
    entries, stats = read_all(shared_data / "access.log.gz")
    assert (stats.lines, stats.malformed, len(entries)) == (3282, 0, 3282)
    assert collections.Counter(e.status for e in entries) == direct_status_counts(shared_data / "access.log.gz")
    assert len({e.row for e in entries}) == 3282  # no request overwrites another
    first = entries[0]
    assert first.client == "81.52.143.15" and first.vhost == "www.battlephase.com"
    assert first.request == "GET /robots.txt HTTP/1.1" and first.path == "/robots.txt"


def test_one_clients_rows_sort_together(shared_data):
    entries, _ = read_all(shared_data / "access.log.gz")
    rows = sorted(e.row for e in entries)
    owners = [r.split(" ")[0] for r in rows]
    # each client's rows form one contiguous run
    runs = [c for i, c in enumerate(owners) if i == 0 or owners[i - 1] != c]
    assert len(runs) == len(set(owners))
    # and within a client they are in time order
    by_client = collections.defaultdict(list)
    for e in sorted(entries, key=lambda e: e.row):
        by_client[e.client].append(e.epoch)
    assert all(times == sorted(times) for times in by_client.values())


def test_row_key_format_and_time_zone():
    entry = weblog.parse_line(SAMPLE, 7)
    expected = int(datetime.strptime("26/Jan/2008:00:21:23 -0800", "%d/%b/%Y:%H:%M:%S %z").timestamp())
    assert entry.epoch == expected == 1201335683
    assert entry.row == "81.52.143.15 1201335683 00000007"
    assert weblog.row_key("10.0.0.1", 5, 123456789) == "10.0.0.1 0000000005 123456789"


def test_cells_carry_every_family_and_the_request_time():
    cells = weblog.parse_line(SAMPLE, 1).cells()
    assert [c.key.column_family for c in cells] == list(weblog.FAMILIES)
    assert {c.key.timestamp for c in cells} == {1201335683 * 10**9}
    assert {c.key.flag for c in cells} == {KeyFlag.INSERT}
    values = {c.key.column_family: c.value for c in cells}
    assert values["ResponseCode"] == b"200" and values["ObjectSize"] == b"54" and values["Referer"] == b"-"
    assert values["UserAgent"].startswith(b"Mozilla/5.0 (Windows")


def test_common_format_escaped_quotes_and_dash_size():
    common = weblog.parse_line('10.1.2.3 - bob [01/Feb/2020:10:00:00 +0100] "GET /a HTTP/1.0" 304 -', 1)
    assert (common.user_id, common.size, common.referer, common.user_agent, common.vhost) == \
           ("bob", "-", "-", "-", None)
    quoted = weblog.parse_line('10.1.2.3 - - [01/Feb/2020:10:00:00 +0000] "GET /q?x=\\"y\\" HTTP/1.1" 200 5 '
                               '"-" "agent \\"quoted\\"" vhost.example', 2)
    assert quoted.request == 'GET /q?x="y" HTTP/1.1'
    assert quoted.user_agent == 'agent "quoted"' and quoted.vhost == "vhost.example"


@pytest.mark.parametrize("line, reason", [
    ("", "not an Apache"),
    ("garbage", "not an Apache"),
    ('1.2.3.4 - - [26/Jan/2008:00:21:23] "GET / HTTP/1.1" 200 1', "bad time"),
    ('1.2.3.4 - - [26/Foo/2008:00:21:23 +0000] "GET / HTTP/1.1" 200 1', "bad month"),
    ('1.2.3.4 - - [26/Jan/2008:25:21:23 +0000] "GET / HTTP/1.1" 200 1', "out of range"),
    ('1.2.3.4 - - [26/Jan/2008:00:21:23 +0000] "GET / HTTP/1.1" 2000 1', "not an Apache"),
    ('1.2.3.4 - - [26/Jan/2008:00:21:23 +0000] "GET / HTTP/1.1" 200 12x', "not an Apache"),
])
def test_malformed_line_says_why(line, reason):
    with pytest.raises(weblog.MalformedLine, match=reason) as info:
        weblog.parse_line(line, 42)
    assert info.value.line_number == 42 and "line 42" in str(info.value)


def test_malformed_lines_are_counted_and_skipped():
    lines = [SAMPLE, "junk", "", SAMPLE.replace("Jan", "Jxn"), SAMPLE]
    stats = weblog.LogStats()
    entries = list(weblog.iter_entries(lines, stats))
    assert [e.line_number for e in entries] == [1, 5]
    assert (stats.lines, stats.malformed, stats.parsed) == (5, 3, 2)
    assert stats.examples[0].startswith("line 2:")


def test_plain_gzip_and_stdin_read_the_same(tmp_path, monkeypatch):
    text = "\n".join(weblog.generate_lines(50, seed=3)) + "\n"
    plain, packed = tmp_path / "log.txt", tmp_path / "log.txt.whatever"
    plain.write_text(text)
    packed.write_bytes(gzip.compress(text.encode()))  # detected by content, not by name
    stdin = io.TextIOWrapper(io.BytesIO(gzip.compress(text.encode())))
    monkeypatch.setattr(sys, "stdin", stdin)
    results = [read_all(p)[0] for p in (plain, packed, "-")]
    assert len(results[0]) == 50 and results[0] == results[1] == results[2]


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("packed", [False, True])
def test_open_log_tells_how_far_it_has_read_and_closes_its_file(tmp_path, packed):
    text = ("\n".join(weblog.generate_lines(3000, seed=4)) + "\n").encode()
    path = tmp_path / "access.log"
    path.write_bytes(gzip.compress(text) if packed else text)
    before = open_files()
    with weblog.open_log(path) as lines:
        assert lines.size == path.stat().st_size and lines.position < lines.size
        halfway = [next(lines) for _ in range(1500)]
        assert 0 < lines.position < lines.size
        assert len(list(lines)) + len(halfway) == 3000 and lines.position == lines.size
    assert open_files() == before


def test_stdin_has_no_known_size_and_stays_open(monkeypatch):
    stdin = io.TextIOWrapper(io.BytesIO(b"a\nb\n"))
    monkeypatch.setattr(sys, "stdin", stdin)
    with weblog.open_log("-") as lines:
        assert list(lines) == ["a\n", "b\n"] and lines.size is None and lines.position == 4
    assert not stdin.closed


def test_bytes_that_are_not_utf8_survive(tmp_path):
    raw = SAMPLE.encode().replace(b"VoilaBot", b"Voil\xe0Bot") + b"\n"
    (tmp_path / "latin.log").write_bytes(raw)
    (entry,), stats = read_all(tmp_path / "latin.log")
    agent = {c.key.column_family: c.value for c in entry.cells()}["UserAgent"]
    assert b"Voil\xe0Bot" in agent and stats.malformed == 0


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_all(tmp_path / "absent.log")


#: sha256 of generate_lines(3000, seed=2008) joined by newlines, as the per-line rng.choices made it
#: before the cumulative weights were precomputed: the speed-up changed no line.
GENERATED_3000_SHA256 = "e2e375a08702aca3abc4a3fc61132aa8a890ee5c027d2aa5b663c05455331301"


def test_generated_log_is_pinned_for_a_seed():
    text = "\n".join(weblog.generate_lines(3000, seed=2008))
    assert hashlib.sha256(text.encode()).hexdigest() == GENERATED_3000_SHA256


def test_generated_log_is_realistic_and_reproducible():
    lines = list(weblog.generate_lines(2000, seed=11))
    assert lines == list(weblog.generate_lines(2000, seed=11))
    assert lines != list(weblog.generate_lines(2000, seed=12))
    stats = weblog.LogStats()
    entries = list(weblog.iter_entries(lines, stats))
    assert stats.malformed == 0 and len(entries) == 2000
    assert [e.epoch for e in entries] == sorted(e.epoch for e in entries)
    codes = collections.Counter(e.status for e in entries)
    assert codes["200"] > 1000 and {"304", "404"} <= set(codes)
    clients = collections.Counter(e.client for e in entries)
    assert len(clients) > 50 and clients.most_common(1)[0][1] > 100  # skewed: heavy users and one-offs
    assert any(e.referer.startswith("http://www.example.com/") for e in entries)
    assert all(e.size == "-" for e in entries if e.status == "304")


def test_schema_and_create_table_name_the_seven_families():
    assert sorted(weblog.schema().column_families) == sorted(weblog.FAMILIES)
    assert weblog.CREATE_TABLE == ("CREATE TABLE LogDb (ClientIpAddress, UserId, Request, ResponseCode, "
                                   "ObjectSize, Referer, UserAgent)")


ips = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))


@given(st.lists(st.tuples(ips, st.integers(0, 4 * 10**9), st.integers(1, 10**8 - 1)), min_size=2, max_size=30))
def test_row_keys_order_by_client_then_time_then_line(requests):
    keys = {weblog.row_key(*r): r for r in requests}
    ordered = [keys[k] for k in sorted(keys)]
    for ip in {r[0] for r in requests}:
        mine = [r for r in ordered if r[0] == ip]
        assert mine == sorted(set(mine), key=lambda r: (r[1], r[2]))
        # the prefix "ip " selects exactly this client's rows
        assert {k for k in keys if k.startswith(ip + " ")} == {weblog.row_key(*r) for r in mine}
