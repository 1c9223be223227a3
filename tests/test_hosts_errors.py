"""Host parsing, the error hierarchy and the error-code table: values, no sockets."""
from __future__ import annotations

import pickle

import pytest
from thrift.transport.TTransport import TTransportException

from htcluster import codes
from htcluster.errors import (BroadcastError, BrokerUnavailable, ConfigError, HtclusterError,
                              NoHostAvailable, PoolTimeout)
from htcluster.hosts import DEFAULT_PORT, Host, parse_hosts


@pytest.mark.parametrize("text, expected", [
    ("ht1", Host("ht1", 15867)),
    ("ht1:38080", Host("ht1", 38080)),
    (" 127.0.0.1:1 ", Host("127.0.0.1", 1)),
    ("[::1]:15868", Host("::1", 15868)),
    ("[::1]", Host("::1", DEFAULT_PORT)),
    (("ht2", "99"), Host("ht2", 99)),
])
def test_host_parse(text, expected):
    assert Host.parse(text) == expected


def test_host_str_round_trips():
    for host in (Host("ht1", 1), Host("::1", 2)):
        assert Host.parse(str(host)) == host


@pytest.mark.parametrize("bad", ["", "  ", "ht1:", "ht1:http", "ht1:0", "ht1:65536", ":15867",
                                 "[::1", "[::1]x", 15867, None,
                                 "::1"])  # an IPv6 address goes in brackets: '[::1]'
def test_host_parse_rejects(bad):
    with pytest.raises(ConfigError) as info:
        Host.parse(bad)
    assert isinstance(info.value, ValueError)


def test_parse_hosts_list_and_string():
    assert parse_hosts("a,b:2, a") == [Host("a"), Host("b", 2)]
    assert parse_hosts(["a:1", Host("b")]) == [Host("a", 1), Host("b")]
    assert parse_hosts("a", default_port=38080) == [Host("a", 38080)]
    with pytest.raises(ConfigError, match="no hosts"):
        parse_hosts(" , ")


def test_error_hierarchy():
    exc = BrokerUnavailable("ht1:15867 refused", host="ht1:15867", sent=False)
    assert isinstance(exc, HtclusterError) and isinstance(exc, TTransportException)
    assert (exc.host, exc.sent, str(exc)) == ("ht1:15867", False, "ht1:15867 refused")
    copy = pickle.loads(pickle.dumps(exc))
    assert (copy.host, copy.sent, copy.message) == (exc.host, exc.sent, exc.message)
    assert issubclass(PoolTimeout, HtclusterError) and issubclass(ConfigError, ValueError)


def test_composite_errors_keep_causes():
    boom = BrokerUnavailable("down", host="b:1")
    nha = NoHostAvailable("no host answered", {"a:1": TimeoutError("slow"), "b:1": boom})
    assert nha.errors["b:1"] is boom and "a:1: TimeoutError: slow" in str(nha)
    be = BroadcastError("1 of 2 hosts failed", {"a:1": 3}, {"b:1": boom})
    assert be.results == {"a:1": 3} and be.errors == {"b:1": boom} and "b:1" in str(be)


def test_error_texts_match_protocol():
    assert codes.text(codes.TABLE_NOT_FOUND) == "HYPERTABLE table does not exist"
    assert codes.text(codes.THRIFTBROKER_BAD_NAMESPACE_ID) == "THRIFT BROKER bad namespace id"
    assert codes.THRIFTBROKER_BAD_SCANNER_ID == 589825
    assert codes.HQL_BAD_COMMAND == 393218
    assert codes.text(123456789) == "ERROR NOT REGISTERED"
