"""The HYPERTABLE_* config keys: parsing, defaults, and every invalid value (no sockets)."""
from __future__ import annotations

import pytest

from htcluster.errors import ConfigError
from htcluster.flask_config import DEFAULTS, STRATEGIES, read_settings, set_defaults
from htcluster.hosts import Host


def test_defaults_give_one_local_pool():
    s = read_settings({})
    assert s.hosts == (Host("localhost", 15867),)
    assert s.strategy == "pool"
    assert (s.pool_size, s.max_overflow) == (5, 10)
    assert s.socket_timeout == 5.0  # HYPERTABLE_TIMEOUT_MSECS 5000 ms, converted once
    assert s.pool_timeout == 10.0
    assert s.namespace is None and s.shards == {}
    assert s.pool_options() == {"size": 5, "max_overflow": 10, "timeout": 10.0, "socket_timeout": 5.0}


def test_set_defaults_keeps_what_the_app_set():
    config = {"HYPERTABLE_POOL_SIZE": 2}
    set_defaults(config)
    assert config["HYPERTABLE_POOL_SIZE"] == 2
    assert config["HYPERTABLE_MAX_OVERFLOW"] == 10
    assert set(DEFAULTS) <= set(config)


@pytest.mark.parametrize("value, expected", [
    ("ht1,ht2:1", (Host("ht1", 15867), Host("ht2", 1))),
    (" ht1 , ht2 ", (Host("ht1", 15867), Host("ht2", 15867))),
    (["ht1:2", "ht1:2", "ht3"], (Host("ht1", 2), Host("ht3", 15867))),
    (("127.0.0.1:9",), (Host("127.0.0.1", 9),)),
])
def test_hosts_list_or_string(value, expected):
    assert read_settings({"HYPERTABLE_HOSTS": value}).hosts == expected


def test_legacy_host_and_port_when_hosts_unset():
    s = read_settings({"HYPERTABLE_HOST": "ht9", "HYPERTABLE_PORT": 38080})
    assert s.hosts == (Host("ht9", 38080),) and s.strategy == "pool"


def test_legacy_port_is_the_default_port_of_hosts_entries():
    s = read_settings({"HYPERTABLE_HOSTS": "a,b:2", "HYPERTABLE_PORT": "38080"})
    assert s.hosts == (Host("a", 38080), Host("b", 2))


def test_hosts_wins_over_legacy_host():
    s = read_settings({"HYPERTABLE_HOSTS": ["x:1"], "HYPERTABLE_HOST": "legacy"})
    assert s.hosts == (Host("x", 1),)


@pytest.mark.parametrize("hosts, strategy", [("a", "pool"), ("a,b", "replicas"), ("a,b,c", "replicas")])
def test_strategy_chosen_from_host_count(hosts, strategy):
    assert read_settings({"HYPERTABLE_HOSTS": hosts}).strategy == strategy


@pytest.mark.parametrize("name", STRATEGIES[1:])
def test_explicit_strategy_case_insensitive(name):
    config = {"HYPERTABLE_HOSTS": "a,b", "HYPERTABLE_STRATEGY": f" {name.upper()} "}
    if name == "shards":
        config = {"HYPERTABLE_SHARDS": {"s1": "a", "s2": ["b"]}, "HYPERTABLE_STRATEGY": name}
    assert read_settings(config).strategy == name


def test_shards_mapping():
    s = read_settings({"HYPERTABLE_SHARDS": {"eu": "a:1,b:1", "us": ["c:1"]}})
    assert s.strategy == "shards"
    assert s.shards == {"eu": (Host("a", 1), Host("b", 1)), "us": (Host("c", 1),)}
    assert s.hosts == (Host("a", 1), Host("b", 1), Host("c", 1))


def test_numbers_from_environment_strings():
    s = read_settings({"HYPERTABLE_POOL_SIZE": "3", "HYPERTABLE_MAX_OVERFLOW": "0",
                       "HYPERTABLE_TIMEOUT_MSECS": "250", "HYPERTABLE_POOL_TIMEOUT": "0.5",
                       "HYPERTABLE_NAMESPACE": " logs "})
    assert (s.pool_size, s.max_overflow, s.socket_timeout, s.pool_timeout, s.namespace) == \
        (3, 0, 0.25, 0.5, "logs")


# Every invalid value: (config, words the message must contain)
INVALID = [
    ({"HYPERTABLE_HOSTS": ""}, ["HYPERTABLE_HOSTS", "host[:port]"]),
    ({"HYPERTABLE_HOSTS": []}, ["HYPERTABLE_HOSTS"]),
    ({"HYPERTABLE_HOSTS": 15867}, ["HYPERTABLE_HOSTS", "comma-separated"]),
    ({"HYPERTABLE_HOSTS": "a:99999"}, ["HYPERTABLE_HOSTS", "1..65535"]),
    ({"HYPERTABLE_HOSTS": "a:x"}, ["HYPERTABLE_HOSTS", "port"]),
    ({"HYPERTABLE_HOST": ""}, ["HYPERTABLE_HOST", "HYPERTABLE_HOSTS"]),
    ({"HYPERTABLE_HOST": None}, ["HYPERTABLE_HOST"]),
    ({"HYPERTABLE_PORT": 0}, ["HYPERTABLE_PORT", "1..65535"]),
    ({"HYPERTABLE_PORT": 70000}, ["HYPERTABLE_PORT", "1..65535"]),
    ({"HYPERTABLE_PORT": "http"}, ["HYPERTABLE_PORT", "integer"]),
    ({"HYPERTABLE_PORT": True}, ["HYPERTABLE_PORT"]),
    ({"HYPERTABLE_STRATEGY": "roundrobin"}, ["HYPERTABLE_STRATEGY", "'pool'", "'resources'",
                                             "'shards'", "'replicas'"]),
    ({"HYPERTABLE_STRATEGY": 3}, ["HYPERTABLE_STRATEGY", "'replicas'"]),
    ({"HYPERTABLE_STRATEGY": "pool", "HYPERTABLE_HOSTS": "a,b"}, ["'pool'", "one host"]),
    ({"HYPERTABLE_STRATEGY": "shards", "HYPERTABLE_HOSTS": "a,b"}, ["HYPERTABLE_SHARDS"]),
    ({"HYPERTABLE_STRATEGY": "replicas", "HYPERTABLE_SHARDS": {"s": "a"}}, ["HYPERTABLE_SHARDS"]),
    ({"HYPERTABLE_SHARDS": {}}, ["HYPERTABLE_SHARDS", "mapping"]),
    ({"HYPERTABLE_SHARDS": ["a", "b"]}, ["HYPERTABLE_SHARDS", "mapping"]),
    ({"HYPERTABLE_SHARDS": {"": "a"}}, ["HYPERTABLE_SHARDS", "keys"]),
    ({"HYPERTABLE_SHARDS": {"s": ""}}, ["HYPERTABLE_SHARDS['s']"]),
    ({"HYPERTABLE_SHARDS": {"s": 5}}, ["HYPERTABLE_SHARDS['s']"]),
    ({"HYPERTABLE_SHARDS": {"s": "a"}, "HYPERTABLE_HOSTS": "b"}, ["HYPERTABLE_SHARDS", "not both"]),
    ({"HYPERTABLE_POOL_SIZE": -1}, ["HYPERTABLE_POOL_SIZE", ">= 0"]),
    ({"HYPERTABLE_POOL_SIZE": 2.5}, ["HYPERTABLE_POOL_SIZE", "integer"]),
    ({"HYPERTABLE_POOL_SIZE": None}, ["HYPERTABLE_POOL_SIZE"]),
    ({"HYPERTABLE_MAX_OVERFLOW": -3}, ["HYPERTABLE_MAX_OVERFLOW", ">= 0"]),
    ({"HYPERTABLE_MAX_OVERFLOW": "many"}, ["HYPERTABLE_MAX_OVERFLOW"]),
    ({"HYPERTABLE_POOL_SIZE": 0, "HYPERTABLE_MAX_OVERFLOW": 0}, ["at least 1"]),
    ({"HYPERTABLE_TIMEOUT_MSECS": 0}, ["HYPERTABLE_TIMEOUT_MSECS", "milliseconds"]),
    ({"HYPERTABLE_TIMEOUT_MSECS": -5}, ["HYPERTABLE_TIMEOUT_MSECS"]),
    ({"HYPERTABLE_TIMEOUT_MSECS": float("inf")}, ["HYPERTABLE_TIMEOUT_MSECS"]),
    ({"HYPERTABLE_TIMEOUT_MSECS": "5s"}, ["HYPERTABLE_TIMEOUT_MSECS"]),
    ({"HYPERTABLE_TIMEOUT_MSECS": False}, ["HYPERTABLE_TIMEOUT_MSECS"]),
    ({"HYPERTABLE_POOL_TIMEOUT": 0}, ["HYPERTABLE_POOL_TIMEOUT", "seconds"]),
    ({"HYPERTABLE_POOL_TIMEOUT": float("nan")}, ["HYPERTABLE_POOL_TIMEOUT"]),
    ({"HYPERTABLE_POOL_TIMEOUT": None}, ["HYPERTABLE_POOL_TIMEOUT"]),
    ({"HYPERTABLE_NAMESPACE": ""}, ["HYPERTABLE_NAMESPACE"]),
    ({"HYPERTABLE_NAMESPACE": 7}, ["HYPERTABLE_NAMESPACE"]),
]


@pytest.mark.parametrize("config, words", INVALID, ids=[repr(c) for c, _ in INVALID])
def test_invalid_values_are_rejected_with_the_key_named(config, words):
    with pytest.raises(ConfigError) as info:
        read_settings(config)
    assert isinstance(info.value, ValueError)
    for word in words:
        assert word in str(info.value)


def test_every_key_has_an_invalid_case():
    tried = {key for config, _ in INVALID for key in config}
    assert set(DEFAULTS) <= tried
