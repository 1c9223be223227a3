"""htcluster.cli.status: parallel status() pings against real local brokers."""
from __future__ import annotations

import time

import pytest

from htcluster import Resources
from htcluster.errors import ConfigError
from htcluster.cli.status import HostStatus, check_hosts, format_status, render_table
from htcluster.testing import free_port


def test_up_and_down_hosts_in_the_order_given(local_broker):
    dead = f"127.0.0.1:{free_port()}"
    up, down = check_hosts([local_broker.address, dead], timeout=2.0)
    assert (up.host, up.up, up.code, up.error) == (local_broker.address, True, 0, None)
    assert up.latency is not None and up.latency > 0
    assert (down.host, down.up, down.latency) == (dead, False, None)
    assert down.error.startswith("BrokerUnavailable") and "refused" in down.error


def test_pools_are_pinged_through_and_their_state_reported(local_broker):
    with Resources([local_broker.address]) as resources:
        (status,) = check_hosts(resources, timeout=2.0)
    assert status.up and status.pool == "0 in use, 1 idle"


def test_hung_hosts_are_checked_in_parallel_within_the_timeout(local_broker, fault_proxy_factory):
    hung = [fault_proxy_factory(local_broker.address) for _ in range(4)]
    for proxy in hung:
        proxy.blackhole()  # connections are accepted, answers never come
    start = time.monotonic()
    statuses = check_hosts([local_broker.address] + [p.address for p in hung], timeout=1.0)
    elapsed = time.monotonic() - start
    assert [s.up for s in statuses] == [True, False, False, False, False]
    assert all("deadline passed" in s.error for s in statuses[1:])
    assert elapsed < 3.0  # in parallel: not 4 x 1 s one after the other


def test_malformed_host_is_a_config_error():
    with pytest.raises(ConfigError):
        check_hosts(["127.0.0.1:0x"])
    assert check_hosts([]) == []


def test_tables_align_and_show_missing_values_as_dashes():
    text = format_status([HostStatus("a:1", True, 0.0012, 0, ""), HostStatus("bb:2", False, error="boom")])
    lines = text.splitlines()
    assert lines[0].split() == ["host", "state", "latency", "ms", "pool", "error"]
    assert lines[2].split() == ["a:1", "up", "1.20", "-", "-"]
    assert lines[3].split() == ["bb:2", "down", "-", "-", "boom"]
    assert render_table(("n",), [(1,), (100,)], numeric=(0,)).splitlines() == ["  n", "---", "  1", "100"]
