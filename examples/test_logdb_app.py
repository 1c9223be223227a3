"""Testing a Flask app against real brokers with htcluster's pytest fixtures (an example to copy).

Installing htcluster installs a pytest plugin (entry point ``htcluster``,
module :mod:`htcluster.testing`), so these fixtures exist in any project that
has htcluster, with no ``conftest.py``:

=========================  =====================================================
``broker_address``         ``'host:port'`` of a stand-in broker started once per
                           session, or of a real ThriftBroker given with
                           ``--htcluster-broker host:port``
``local_cluster_factory``  ``local_cluster_factory(n, shared_data=True)`` starts
                           ``n`` brokers (replicas of one data file); stopped
                           after the test
``fault_proxy_factory``    ``fault_proxy_factory(address)``: a proxy that can
                           ``reset()``, ``drop()`` or ``blackhole()`` traffic
=========================  =====================================================

This file tests ``examples/logdb_app.py`` (it needs the ``examples`` extra:
Flask and pydantic)::

    python -m pytest examples/test_logdb_app.py
    python -m pytest examples/test_logdb_app.py --htcluster-broker ht1:15867   # a real ThriftBroker

The project's own suite does not collect it (``testpaths = tests`` in setup.cfg).
"""
from __future__ import annotations

import uuid

import logdb_app  # pytest puts this file's folder, examples/, on sys.path

REQUEST = {"ClientIpAddress": "10.1.2.3", "Request": "GET /index.html HTTP/1.1", "ResponseCode": 200,
           "ObjectSize": "512", "UserAgent": "curl/8.5.0", "time": 1709251200}


def make_app(hosts, **config):
    """The app on ``hosts``, in a namespace of its own, with its table created (``flask logdb init``)."""
    app = logdb_app.create_app({"HYPERTABLE_HOSTS": hosts, "HYPERTABLE_NAMESPACE": f"t{uuid.uuid4().hex[:8]}",
                                **config})
    result = app.test_cli_runner().invoke(args=["logdb", "init"])
    assert result.exit_code == 0, result.output
    return app


def test_a_request_is_stored_and_read_back(broker_address):
    client = make_app(broker_address).test_client()
    created = client.post("/requests", json=REQUEST)
    assert created.status_code == 201, created.json
    got = client.get(f"/requests/{created.json['row']}")
    assert got.status_code == 200 and got.json["Request"] == REQUEST["Request"]


def test_writes_go_on_when_a_replica_is_killed(local_cluster_factory):
    cluster = local_cluster_factory(3, shared_data=True)  # three brokers in front of one data file
    client = make_app(cluster.hosts).test_client()
    before = client.post("/requests", json=REQUEST)
    cluster.kill(0)  # SIGKILL the first broker, the one writes go to
    after = client.post("/requests", json={**REQUEST, "time": REQUEST["time"] + 1})
    assert (before.status_code, after.status_code) == (201, 201)
    for row in (before.json["row"], after.json["row"]):
        assert client.get(f"/requests/{row}").status_code == 200


def test_a_broker_that_stops_answering_is_a_503(broker_address, fault_proxy_factory):
    proxy = fault_proxy_factory(broker_address)
    client = make_app(proxy.address, HYPERTABLE_TIMEOUT_MSECS=500).test_client()
    assert client.post("/requests", json=REQUEST).status_code == 201
    proxy.blackhole()  # the broker's host is still there, but bytes vanish
    answer = client.post("/requests", json=REQUEST)
    assert answer.status_code == 503 and "no broker answered" in answer.json["error"]
