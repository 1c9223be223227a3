"""Configuration mistakes fail (or warn) where they are made, with the right spelling in the message.

Issue 16, items 1 and 3: a host string that is not one host (a URL, a path,
a list in one string, a malformed name) is a ``ConfigError`` when the
object is built, not "Name or service not known" at the first call; where a
list of hosts is taken, one string of hosts separated by commas or spaces
stays valid.  The Flask ``Hypertable`` extension refuses an app that names
no broker, and warns about unknown ``HYPERTABLE_*`` keys and millisecond
values that look like seconds; the Flask-Hypertable drop-in classes keep its
default host.
"""
from __future__ import annotations

import warnings

import pytest
from flask import Flask

from htcluster import Pool, Replicas, Resource, Resources, Shards
from htcluster.errors import ConfigError, ConfigWarning
from htcluster.flask_ext import FlaskHypertable, FlaskPooledHypertable, Hypertable
from htcluster.hosts import DEFAULT_PORT, Host, parse_hosts

# ------------------------------------------------------------------ one host


@pytest.mark.parametrize("make, text, shown", [
    # (what is built, the value, what the message must show: the right spelling)
    (Pool, "http://127.0.0.1:1", ["'127.0.0.1:1'", "http://"]),
    (Pool, "hypertable://h1:1,h2:2/ns", ["['h1:1', 'h2:2']", "'ns'", "namespace=",
                                         "htcluster.from_url('hypertable://h1:1,h2:2/ns')"]),
    (Pool, "a:1,b:2", ["'a:1'", "['a:1', 'b:2']", "'a:1,b:2'", "Replicas"]),
    (Pool, "h1 h2", ["'h1'", "['h1', 'h2']", "'h1,h2'"]),
    (Resource, "h1:1/logs", ["'h1:1'", "'logs'"]),
    (Pool, "http/path", ["'http'", "path"]),
    (Pool, "::1", ["'[::1]'", "'[::1]:15867'"]),
    (Pool, "fe80::1:8080", ["'[fe80::1:8080]'"]),
    (Pool, "[ht1]:5", ["IPv6", "brackets"]),
    (Pool, "256.1.1.1", ["IPv4", "'127.0.0.1'"]),
    (Pool, "10.0.0.01", ["IPv4"]),
    (Pool, "-ht1", ["RFC 1123", "'-ht1'"]),
    (Pool, "ht1..example", ["RFC 1123", "label ''"]),
    (Pool, "ht_1", ["RFC 1123"]),
    (Pool, "a" * 64, ["RFC 1123"]),
    (Pool, "user@ht1", ["RFC 1123"]),
    (Pool, "ht1:+5", ["1..65535"]),
    (Pool, "héllo", ["'xn--hllo-bpa'"]),
    (Pool, ["h1", "h2"], ["a list", "Resources or Replicas"]),
])
def test_one_host_is_one_host(make, text, shown):
    with pytest.raises(ConfigError) as info:
        make(text) if make is Pool else make(text, open=False)
    message = str(info.value)
    assert all(part in message for part in shown), message


def test_loose_port_spacing():
    """``'ht1: 5'`` is two pieces, ``'ht1:'`` and ``'5'``: refused, naming both."""
    with pytest.raises(ConfigError, match="holds 2 hosts"):
        Host.parse("ht1: 5")


@pytest.mark.parametrize("value, expected", [
    ("ht1", Host("ht1", DEFAULT_PORT)),
    ("HT1.Example.COM.", Host("HT1.Example.COM.", DEFAULT_PORT)),
    ("a" * 63 + ".example", Host("a" * 63 + ".example", DEFAULT_PORT)),
    ("xn--hllo-bpa:1", Host("xn--hllo-bpa", 1)),
    ("10.0.0.1:65535", Host("10.0.0.1", 65535)),
    ("[fe80::1%eth0]:2", Host("fe80::1%eth0", 2)),
    (("::1", 3), Host("::1", 3)),
    (("[::1]", "4"), Host("::1", 4)),
    (Host("ht2", 5), Host("ht2", 5)),
])
def test_accepted_spellings(value, expected):
    assert Host.parse(value) == expected


def test_host_instances_are_checked_too():
    with pytest.raises(ConfigError, match="RFC 1123"):
        Host.parse(Host("h1,h2", 1))
    with pytest.raises(ConfigError, match="1..65535"):
        Host.parse(("h1", True))


# ------------------------------------------------------------------ lists of hosts


def test_list_strings_stay_valid_where_a_list_is_taken():
    expected = [Host("h1"), Host("h2", 2)]
    for value in ("h1,h2:2", "h1 h2:2", " h1 ,\th2:2 ", "h1, h2:2,", ["h1", "h2:2"], ["h1", ("h2", 2)]):
        assert parse_hosts(value) == expected, value
    assert list(Replicas("h1,h2")) == ["h1:15867", "h2:15867"]
    assert list(Replicas("h1 h2")) == ["h1:15867", "h2:15867"]
    assert list(Resources("a:1, b:2")) == ["a:1", "b:2"]


@pytest.mark.parametrize("make, value, shown", [
    (Replicas, ["h1,h2"], ["element 0", "['h1', 'h2']", "'h1,h2'"]),
    (Resources, ["h1:1,h2:2", "h3"], ["element 0", "['h1:1', 'h2:2', 'h3']"]),
    (Replicas, ["h1", "h2 h3"], ["element 1", "['h1', 'h2', 'h3']"]),
    (Replicas, ["h1", ""], ["element 1", "empty"]),
    (Replicas, "hypertable://h1,h2/logs", ["['h1', 'h2']", "'logs'"]),
    (Resources, "h1,http://h2", ["'h2'"]),
    (Replicas, " , ", ["no hosts", "['h1:15867', 'h2:15867']"]),
    (Replicas, b"h1", ["list"]),
    (Replicas, 15867, ["list"]),
])
def test_bad_host_lists(make, value, shown):
    with pytest.raises(ConfigError) as info:
        make(value)
    message = str(info.value)
    assert all(part in message for part in shown), message


def test_shard_pairs_take_one_host_each():
    with pytest.raises(ConfigError, match=r"\['h1', 'h2'\]"):
        Shards([("h1,h2", "eu")])


def test_comma_and_space_lists_reach_real_brokers(local_cluster_factory):
    """``Replicas("h1,h2")`` and ``Replicas("h1 h2")`` are two hosts that answer (issue 16, "Done when")."""
    cluster = local_cluster_factory(2, shared_data=True)
    first, second = cluster.hosts
    for spelling in (f"{first},{second}", f"{first} {second}"):
        replicas = Replicas(spelling)
        try:
            assert list(replicas) == [first, second]
            assert all(status.code == 0 for status in replicas.broadcast("status").values())
        finally:
            replicas.close()
    with pytest.raises(ConfigError, match="holds 2 hosts"):  # before: one bogus host, failing at the first call
        Pool(f"{first},{second}")
    with pytest.raises(ConfigError, match=f"'{first}'"):
        Pool(f"http://{first}")


# ------------------------------------------------------------------ Flask


def _app(**config) -> Flask:
    app = Flask(f"strict{id(config)}")
    app.config.update(config)
    return app


def test_flask_hosts_list_element_holding_a_list():
    with pytest.raises(ConfigError) as info:
        Hypertable(_app(HYPERTABLE_HOSTS=["h1:1,h2:2"]))
    assert "HYPERTABLE_HOSTS" in str(info.value) and "['h1:1', 'h2:2']" in str(info.value)
    with pytest.raises(ConfigError, match="HYPERTABLE_HOSTS.*'h1:1'"):
        Hypertable(_app(HYPERTABLE_HOSTS="http://h1:1"))


def test_flask_hosts_string_of_hosts_stays_valid():
    for spelling in ("h1:1,h2:2", "h1:1 h2:2"):
        app = _app(HYPERTABLE_HOSTS=spelling)
        ext = Hypertable(app)
        with app.app_context():
            assert ext.settings.hosts == (Host("h1", 1), Host("h2", 2))


def test_hypertable_refuses_an_app_without_hosts():
    app = _app(HYPERTABLE_NAMESPACE="logs")
    with pytest.raises(ConfigError) as info:
        Hypertable(app)
    assert "HYPERTABLE_HOSTS" in str(info.value) and "localhost" in str(info.value)
    assert "hypertable" not in app.extensions
    assert "HYPERTABLE_HOST" not in app.config  # judged before any default was filled in


@pytest.mark.parametrize("config, host", [
    ({"HYPERTABLE_HOST": "ht9"}, Host("ht9", DEFAULT_PORT)),
    ({"HYPERTABLE_PORT": 38080}, Host("localhost", 38080)),
    ({"HYPERTABLE_SHARDS": {"eu": "ht1"}}, Host("ht1", DEFAULT_PORT)),
])
def test_hypertable_takes_flask_hypertable_keys_and_shards(config, host):
    app = _app(**config)
    ext = Hypertable(app)
    with app.app_context():
        assert ext.settings.hosts == (host,)


@pytest.mark.parametrize("cls", [FlaskHypertable, FlaskPooledHypertable])
def test_drop_in_classes_keep_flask_hypertables_default(cls):
    app = _app()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and say nothing about it: old apps run unchanged
        ext = cls(app)
    with app.app_context():
        assert ext.settings.hosts == (Host("localhost", 15867),)


def test_unknown_key_warns_naming_the_closest_key():
    with pytest.warns(ConfigWarning, match="HYPERTABLE_HOST_LIST.*did you mean HYPERTABLE_HOSTS") as record:
        Hypertable(_app(HYPERTABLE_HOSTS="h1", HYPERTABLE_HOST_LIST="h1,h2"))
    assert record[0].filename == __file__  # points at the app's line, not inside htcluster
    with pytest.warns(ConfigWarning, match="did you mean HYPERTABLE_NAMESPACE"):
        FlaskPooledHypertable(_app(HYPERTABLE_NAMESPCE="logs"))
    app = _app(HYPERTABLE_HOSTS="h1", HYPERTABLE_ZZZ=1)
    with pytest.warns(ConfigWarning, match="HYPERTABLE_ZZZ") as record:
        Hypertable(app)  # nothing close: every key the extension knows (its defaults) is listed
    listed = str(record[0].message).split("the settings are ", 1)[1]
    known = {key for key in app.config if key.startswith("HYPERTABLE_")} - {"HYPERTABLE_ZZZ"}
    assert len(known) > 10 and set(listed.split(", ")) == known


@pytest.mark.parametrize("value", [5, 0.5, "30", 99])
def test_msecs_below_100_warn_that_they_are_milliseconds(value):
    app = _app(HYPERTABLE_HOSTS="h1", HYPERTABLE_TIMEOUT_MSECS=value)
    with pytest.warns(ConfigWarning, match="milliseconds.*write") as record:
        ext = Hypertable(app)
    assert f"write {float(value) * 1000:g}" in str(record[0].message)
    with app.app_context():  # still accepted as given
        assert ext.settings.socket_timeout == float(value) / 1000


def test_bind_msecs_warn_with_the_bind_named():
    app = _app(HYPERTABLE_HOSTS="h1", HYPERTABLE_BINDS={"stats": {"hosts": "h2", "timeout_msecs": 2}})
    with pytest.warns(ConfigWarning, match=r"HYPERTABLE_BINDS\['stats'\]\['timeout_msecs'\]=2"):
        Hypertable(app)


def test_a_good_config_says_nothing():
    app = _app(HYPERTABLE_HOSTS=["h1", "h2"], HYPERTABLE_TIMEOUT_MSECS=100, HYPERTABLE_NAMESPACE="logs",
               HYPERTABLE_BINDS={"stats": {"hosts": "h3", "timeout_msecs": 3000}}, OTHER_KEY=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Hypertable(app)
