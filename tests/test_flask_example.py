"""examples/logdb_app.py against three local replicas: endpoints, errors, a replica kill."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from htcluster.testing import LocalCluster, free_port
from htcluster.weblog import generate_lines

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "logdb_app.py"
NS = "example"


def load_example():
    spec = importlib.util.spec_from_file_location("logdb_app", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["logdb_app"] = module
    spec.loader.exec_module(module)
    return module


logdb_app = load_example()

GOOD = {"ClientIpAddress": "10.1.2.3", "Request": "GET /index.html HTTP/1.1", "ResponseCode": 200,
        "ObjectSize": "512", "UserAgent": "curl/8.5.0", "time": 1709251200}


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(3, shared_data=True) as c:
        yield c


@pytest.fixture(scope="module")
def app(cluster, tmp_path_factory):
    app = logdb_app.create_app({"HYPERTABLE_HOSTS": ",".join(cluster.hosts), "HYPERTABLE_NAMESPACE": NS})
    runner = app.test_cli_runner()
    result = runner.invoke(args=["logdb", "init"])
    assert result.exit_code == 0, result.output
    log = tmp_path_factory.mktemp("log") / "access.log"
    log.write_text("\n".join(generate_lines(300, seed=7)) + "\nnot a log line\n")
    result = runner.invoke(args=["logdb", "load", str(log)])
    assert result.exit_code == 0, result.output
    assert "300 requests (2,100 cells)" in result.output and "1 malformed" in result.output
    return app


def test_create_then_read(app):
    client = app.test_client()
    created = client.post("/requests", json=GOOD)
    assert created.status_code == 201
    row = created.json["row"]
    assert row.startswith("10.1.2.3 1709251200 ")
    got = client.get(f"/requests/{row}")
    assert got.status_code == 200
    assert got.json == {**created.json, "ResponseCode": "200", "UserId": "-", "Referer": "-"}
    assert got.json["time"] == 1709251200


@pytest.mark.parametrize("payload, problem", [
    ([1, 2], "JSON object"),
    ({"Request": "GET / HTTP/1.1"}, "ClientIpAddress is required"),
    ({**GOOD, "ClientIpAddress": "a b"}, "without spaces"),
    ({**GOOD, "ResponseCode": "20x"}, "three digits"),
    ({**GOOD, "ObjectSize": "big"}, "ObjectSize"),
    ({**GOOD, "time": -1}, "time must be"),
    ({**GOOD, "Referrer": "typo"}, "unknown field 'Referrer'"),
    ({**GOOD, "UserAgent": 7}, "UserAgent must be a non-empty string"),
])
def test_bad_payload_is_422(app, payload, problem):
    response = app.test_client().post("/requests", json=payload)
    assert response.status_code == 422
    assert response.json["status"] == 422
    assert any(problem in p for p in response.json["problems"]), response.json


def test_body_that_is_not_json_is_422(app):
    response = app.test_client().post("/requests", data=b"{oops", content_type="application/json")
    assert response.status_code == 422


def test_missing_row_is_404(app):
    response = app.test_client().get("/requests/0.0.0.0 0000000000 00000000")
    assert response.status_code == 404
    assert response.json["status"] == 404 and "no request" in response.json["error"]


def test_list_and_stream_one_client(app):
    client = app.test_client()
    for _ in range(3):
        assert client.post("/requests", json={**GOOD, "ClientIpAddress": "10.9.9.9"}).status_code == 201
    listed = client.get("/requests?client=10.9.9.9")
    assert listed.status_code == 200 and listed.json["count"] == 3
    assert {r["ClientIpAddress"] for r in listed.json["requests"]} == {"10.9.9.9"}
    streamed = client.get("/requests/stream?client=10.9.9.9")
    assert streamed.mimetype == "application/json"
    assert sorted(r["row"] for r in streamed.json) == sorted(r["row"] for r in listed.json["requests"])
    assert client.get("/requests?limit=7").json["count"] == 7
    for bad in ("0", "1001", "ten"):
        assert client.get(f"/requests?limit={bad}").status_code == 422
    everything = client.get("/requests/stream").json
    assert len(everything) >= 300


def test_no_broker_is_503():
    dead = f"127.0.0.1:{free_port()}"
    app = logdb_app.create_app({"HYPERTABLE_HOSTS": dead, "HYPERTABLE_NAMESPACE": NS})
    client = app.test_client()
    for response in (client.get("/requests/x"), client.post("/requests", json=GOOD),
                     client.get("/requests")):
        assert response.status_code == 503
        assert "no broker answered" in response.json["error"]


def test_replica_kill_fails_no_request(app, cluster):
    client = app.test_client()
    failures, rows = [], []
    try:
        for i in range(60):
            if i == 20:
                cluster.kill(0)  # SIGKILL the write replica while the app serves
            created = client.post("/requests", json={**GOOD, "ClientIpAddress": f"10.7.0.{i % 5}"})
            if created.status_code != 201:
                failures.append((i, "post", created.status_code, created.json))
                continue
            rows.append(created.json["row"])
            for path in (f"/requests/{created.json['row']}", f"/requests?client=10.7.0.{i % 5}&limit=50"):
                response = client.get(path)
                if response.status_code != 200:
                    failures.append((i, path, response.status_code, response.json))
    finally:
        cluster.start(0)
    assert not failures
    assert client.get("/requests?client=10.7.0.0&limit=50").json["count"] == len(rows) // 5
