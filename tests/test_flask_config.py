"""The HYPERTABLE_* config keys: parsing, defaults, and every invalid value (no sockets)."""
from __future__ import annotations

import pytest

from htcluster.errors import ConfigError
from htcluster._flask.config import (
    DEFAULTS,
    HOST_KEYS,
    STRATEGIES,
    option_names,
    read_settings,
    set_defaults,
)
from htcluster.hosts import Host


def test_defaults_give_one_local_pool():
    s = read_settings({})
    assert s.hosts == (Host("localhost", 15867),)
    assert s.strategy == "pool"
    assert (s.pool_size, s.max_overflow) == (5, 10)
    assert s.socket_timeout == 5.0  # HYPERTABLE_TIMEOUT_MSECS 5000 ms, converted once
    assert s.pool_timeout == 10.0
    assert s.namespace is None and s.shards == {}
    assert s.pool_options() == {"size": 5, "max_overflow": 10, "pool_timeout": 10.0, "socket_timeout": 5.0}


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


def test_connection_storm_settings_from_environment_strings():
    from htcluster._io.keepalive import KeepAlive

    s = read_settings({"HYPERTABLE_MAX_CONNECTING": "4", "HYPERTABLE_POOL_MIN_SIZE": "2",
                       "HYPERTABLE_KEEPALIVE": "30", "HYPERTABLE_HOSTS": "a:1"})
    assert (s.max_connecting, s.min_size, s.keepalive) == (4, 2, KeepAlive(idle=30.0))
    options = s.pool_options()
    assert (options["max_connecting"], options["min_size"], options["keepalive"]) == (4, 2, KeepAlive(idle=30.0))
    assert read_settings({"HYPERTABLE_KEEPALIVE": "off", "HYPERTABLE_HOSTS": "a:1"}).pool_options()["keepalive"] \
        is False
    binds = read_settings({"HYPERTABLE_HOSTS": "a:1", "HYPERTABLE_MAX_CONNECTING": 3,
                           "HYPERTABLE_BINDS": {"b": {"hosts": "b:1", "pool_min_size": 1}}}).binds
    assert (binds["b"].max_connecting, binds["b"].min_size) == (3, 1)  # inherited, and its own


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
    ({"HYPERTABLE_SSL_CA": "/nonexistent/ca.pem"}, ["HYPERTABLE_SSL_CA", "CA file"]),
    ({"HYPERTABLE_SSL_CA": 3}, ["HYPERTABLE_SSL_CA", "PEM file"]),
    ({"HYPERTABLE_SSL_CERT": "/nonexistent/client.pem"}, ["HYPERTABLE_SSL_CERT", "client certificate"]),
    ({"HYPERTABLE_SSL_KEY": "/nonexistent/key.pem"}, ["HYPERTABLE_SSL_KEY", "needs its certificate"]),
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
    ({"HYPERTABLE_MAX_CONNECTING": 0}, ["HYPERTABLE_MAX_CONNECTING", ">= 1"]),
    ({"HYPERTABLE_MAX_CONNECTING": "two"}, ["HYPERTABLE_MAX_CONNECTING"]),
    ({"HYPERTABLE_POOL_MIN_SIZE": 6}, ["HYPERTABLE_POOL_MIN_SIZE", "0..5"]),
    ({"HYPERTABLE_POOL_MIN_SIZE": -1}, ["HYPERTABLE_POOL_MIN_SIZE"]),
    ({"HYPERTABLE_KEEPALIVE": "sometimes"}, ["HYPERTABLE_KEEPALIVE", "seconds"]),
    ({"HYPERTABLE_KEEPALIVE": {"idle": 0}}, ["HYPERTABLE_KEEPALIVE", "idle"]),
    ({"HYPERTABLE_KEEPALIVE": [60]}, ["HYPERTABLE_KEEPALIVE"]),
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
    ({"HYPERTABLE_OPTIONS": ["idle_ping"]}, ["HYPERTABLE_OPTIONS", "mapping"]),
    ({"HYPERTABLE_OPTIONS": {"idle_pings": 3}}, ["HYPERTABLE_OPTIONS", "idle_pings", "idle_ping"]),
    ({"HYPERTABLE_OPTIONS": {"retry": 2}}, ["HYPERTABLE_OPTIONS", "'retry'", "'pool'"]),
    ({"HYPERTABLE_BINDS": "ht1"}, ["HYPERTABLE_BINDS", "mapping"]),
    ({"HYPERTABLE_BINDS": {"": "ht1"}}, ["HYPERTABLE_BINDS", "names"]),
    ({"HYPERTABLE_BINDS": {"a": 5}}, ["HYPERTABLE_BINDS['a']", "hosts"]),
    ({"HYPERTABLE_BINDS": {"a": {"namespace": "x"}}}, ["HYPERTABLE_BINDS['a']", "'hosts'"]),
    ({"HYPERTABLE_BINDS": {"a": {"hosts": "h", "pool": 2}}}, ["HYPERTABLE_BINDS['a']", "'pool'", "pool_size"]),
    ({"HYPERTABLE_BINDS": {"a": {"hosts": "h:0"}}}, ["HYPERTABLE_BINDS['a']['hosts']"]),
    ({"HYPERTABLE_BINDS": {"a": {"hosts": "h", "pool_size": -1}}}, ["HYPERTABLE_BINDS['a']['pool_size']"]),
    ({"HYPERTABLE_BINDS": {"a": {"hosts": "h", "strategy": "x"}}}, ["HYPERTABLE_BINDS['a']['strategy']"]),
    ({"HYPERTABLE_BINDS": {"a": {"hosts": "h1,h2", "options": {"nope": 1}}}},
     ["HYPERTABLE_BINDS['a']['options']", "nope"]),
    ({"HYPERTABLE_BINDS": {"a": {"hosts": "h", "namespace": ""}}}, ["HYPERTABLE_BINDS['a']['namespace']"]),
    ({"HYPERTABLE_RECORD_QUERIES": "sometimes"}, ["HYPERTABLE_RECORD_QUERIES", "True or False"]),
    ({"HYPERTABLE_JSON": 2}, ["HYPERTABLE_JSON"]),
    ({"HYPERTABLE_URL": "http://h1"}, ["HYPERTABLE_URL", "hypertable://"]),
    ({"HYPERTABLE_URL": "hypertable://h1?sockettimeout=1"}, ["HYPERTABLE_URL", "socket_timeout"]),
    ({"HYPERTABLE_URL": "hypertable://h1", "HYPERTABLE_NAMESPACE": "x"}, ["HYPERTABLE_URL", "HYPERTABLE_NAMESPACE"]),
    ({"HYPERTABLE_HOSTS_FILE": "/nonexistent/htcluster-hosts"}, ["HYPERTABLE_HOSTS_FILE", "cannot be read"]),
    ({"HYPERTABLE_HOSTS_FILE": 5}, ["HYPERTABLE_HOSTS_FILE", "path"]),
    ({"HYPERTABLE_HOSTS_FILE": "/dev/null", "HYPERTABLE_HOSTS": "h1"}, ["HYPERTABLE_HOSTS_FILE", "HYPERTABLE_HOSTS"]),
    ({"HYPERTABLE_HOSTS_FILE": "/dev/null"}, ["HYPERTABLE_HOSTS_FILE", "no host"]),
    ({"HYPERTABLE_HOSTS_FILE": "/dev/null", "HYPERTABLE_STRATEGY": "pool"}, ["HYPERTABLE_HOSTS_FILE", "'pool'"]),
    ({"HYPERTABLE_HOSTS_RELOAD": -1}, ["HYPERTABLE_HOSTS_RELOAD", ">= 0"]),
    ({"HYPERTABLE_HOSTS_RELOAD": "often"}, ["HYPERTABLE_HOSTS_RELOAD"]),
]


def with_hosts(config: dict) -> dict:
    """``config``, plus a broker address when it names none (the ``Hypertable`` extension requires one)."""
    return config if any(key in config for key in HOST_KEYS) else {"HYPERTABLE_HOSTS": "127.0.0.1:1", **config}


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


# ------------------------------------------------------------------ options and binds


def test_options_names_come_from_the_signatures():
    import inspect

    from htcluster import Pool
    from htcluster import Resources
    pool_names = set(inspect.signature(Pool).parameters) - {"host", "listeners"}
    assert option_names("pool") == pool_names
    routing = {p.name for p in inspect.signature(Resources).parameters.values()
               if p.kind is p.KEYWORD_ONLY} - {"listeners"}
    assert routing and routing | pool_names <= option_names("replicas")
    assert option_names("resources") == option_names("shards") >= routing | pool_names


def test_options_are_kept_and_win_over_the_dedicated_keys():
    settings = read_settings({"HYPERTABLE_HOSTS": "a,b", "HYPERTABLE_POOL_SIZE": 3,
                              "HYPERTABLE_OPTIONS": {"idle_ping": 30.0, "size": 7, "retry": 2}})
    assert settings.options == {"idle_ping": 30.0, "size": 7, "retry": 2}
    assert settings.cluster_options()["size"] == 7 and settings.cluster_options()["max_overflow"] == 10


def test_binds_from_hosts_or_mapping_inherit_pool_keys_and_options():
    settings = read_settings({
        "HYPERTABLE_HOSTS": "main1,main2", "HYPERTABLE_POOL_SIZE": "3", "HYPERTABLE_PORT": 38080,
        "HYPERTABLE_OPTIONS": {"retry": 4, "idle_ping": 5.0},
        "HYPERTABLE_BINDS": {
            "analytics": "a1,a2",
            "archive": {"hosts": ["z1:1"], "namespace": "old", "pool_size": 1,
                        "options": {"max_age": 60.0}},
            "geo": {"shards": {"eu": "e1", "us": "u1"}},
        }})
    analytics, archive, geo = (settings.binds[n] for n in ("analytics", "archive", "geo"))
    assert list(settings.binds) == ["analytics", "archive", "geo"]
    assert analytics.strategy == "replicas" and [str(h) for h in analytics.hosts] == ["a1:38080", "a2:38080"]
    assert analytics.pool_size == 3 and analytics.options == {"retry": 4, "idle_ping": 5.0}
    assert analytics.namespace is None and not analytics.binds
    assert archive.strategy == "pool" and archive.pool_size == 1 and archive.namespace == "old"
    assert archive.options == {"idle_ping": 5.0, "max_age": 60.0}  # 'retry' is not a Pool option
    assert geo.strategy == "shards" and set(geo.shards) == {"eu", "us"}
    assert settings.record_queries is False and settings.json is True


def test_record_queries_and_json_flags_from_the_environment():
    settings = read_settings({"HYPERTABLE_RECORD_QUERIES": "true", "HYPERTABLE_JSON": "0"})
    assert settings.record_queries is True and settings.json is False
