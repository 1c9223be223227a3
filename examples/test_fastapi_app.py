"""Testing the FastAPI app of ``examples/fastapi_app.py`` with FastAPI's ``TestClient`` (an example to copy).

``TestClient`` (it needs ``httpx``) runs the app in an event loop of its own,
in a thread, for as long as the ``with`` block lasts: the lifespan opens the
``AsyncReplicas`` when the block starts, and every request of the block is
served by that one loop, so the replicas' pools stay bound to it; the
lifespan closes them when the block ends.  The brokers come from htcluster's
pytest plugin (no ``conftest.py`` needed)::

    python -m pytest examples/test_fastapi_app.py

The project's own suite runs this file in a subprocess (``tests/test_examples.py``).
"""
from __future__ import annotations

import json
import uuid

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

import fastapi_app  # noqa: E402  (pytest puts this file's folder, examples/, on sys.path)


def client_of(hosts, **options):
    """A test client of the app on ``hosts``, in a namespace of its own."""
    app = fastapi_app.create_app(hosts, namespace=f"n{uuid.uuid4().hex[:8]}", **options)
    return TestClient(app)


def test_a_note_is_stored_read_back_and_listed(broker_address):
    with client_of([broker_address]) as client:
        assert client.put("/notes/n1", json={"text": "hello"}).status_code == 200
        assert client.put("/notes/n2", json={"text": "world"}).status_code == 200
        assert client.get("/notes/n1").json() == {"key": "n1", "text": "hello"}
        assert client.get("/notes/nope").status_code == 404
        assert client.put("/notes/n3", json={"text": ""}).status_code == 422
        assert json.loads(client.get("/notes").content) == [{"key": "n1", "text": "hello"},
                                                           {"key": "n2", "text": "world"}]
        assert broker_address in client.get("/health").json()


def test_requests_are_answered_while_a_replica_is_killed(local_cluster_factory):
    cluster = local_cluster_factory(3, shared_data=True)  # three brokers in front of one data file
    with client_of(cluster.hosts) as client:
        assert client.put("/notes/before", json={"text": "b"}).status_code == 200
        cluster.kill(0)  # SIGKILL the first broker, the one writes go to
        for i in range(10):
            assert client.put(f"/notes/after{i}", json={"text": str(i)}).status_code == 200
            assert client.get("/notes/before").json()["text"] == "b"
        keys = [note["key"] for note in json.loads(client.get("/notes").content)]
        assert keys == sorted(["before", *(f"after{i}" for i in range(10))])


def test_a_broker_that_stops_answering_is_a_503(broker_address, fault_proxy_factory):
    proxy = fault_proxy_factory(broker_address)
    with client_of([proxy.address], socket_timeout=0.5) as client:
        assert client.put("/notes/n1", json={"text": "x"}).status_code == 200
        proxy.blackhole()  # the host is still there, but bytes vanish
        answer = client.get("/notes/n1")
        assert answer.status_code == 503 and "no broker answered" in answer.json()["error"]
