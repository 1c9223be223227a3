"""examples/logdb_app.py against three local replicas: endpoints, errors, a replica kill.

The cluster is what ``htcluster cluster`` starts (three brokers over one
shared file) and the app reads its hosts from the environment line that
command prints, as ``examples/README.rst`` says.
"""
from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
from http.client import HTTPConnection
from pathlib import Path

import pytest
from werkzeug.serving import make_server

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
    with LocalCluster(3, shared_data=True) as c:  # as `htcluster cluster --brokers 3 --shared`
        yield c


@pytest.fixture(scope="module")
def app(cluster, tmp_path_factory):
    with pytest.MonkeyPatch.context() as env:  # export HYPERTABLE_HOSTS=... as the command prints it
        env.setenv("HYPERTABLE_HOSTS", ",".join(cluster.hosts))
        env.setenv("HYPERTABLE_NAMESPACE", NS)
        env.setenv("HYPERTABLE_POOL_SIZE", "4")
        app = logdb_app.create_app()
    assert app.config["HYPERTABLE_POOL_SIZE"] == 4 and app.config["HYPERTABLE_HOSTS"] == ",".join(cluster.hosts)
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
    ({k: v for k, v in GOOD.items() if k != "ResponseCode"}, "ResponseCode is required"),
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
    assert sorted(streamed.json, key=lambda r: r["row"]) == sorted(listed.json["requests"], key=lambda r: r["row"])
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


@pytest.fixture()
def live_server(app):
    """The app served over HTTP on a free loopback port by a threaded WSGI server."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    thread.join(10)


def wait_for(predicate, what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def test_replica_kill_fails_no_request(app, cluster, live_server):
    """SIGKILL the write replica while four HTTP clients create, read, list and stream."""
    failures: list[tuple] = []
    created: list[dict] = []
    progress = [0]
    done = threading.Event()

    def worker(n: int) -> None:
        conn = HTTPConnection("127.0.0.1", live_server, timeout=60)

        def ask(method: str, path: str, body=None) -> tuple[int, object]:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
            response = conn.getresponse()
            return response.status, json.loads(response.read())

        client = f"10.8.{n}.1"
        try:
            while not done.is_set():
                status, row = ask("POST", "/requests", {**GOOD, "ClientIpAddress": client})
                if status != 201:
                    failures.append(("POST", status, row))
                    continue
                created.append(row)
                for path in (f"/requests/{row['row']}", f"/requests?client={client}&limit=1000",
                             f"/requests/stream?client={client}"):
                    status, answer = ask("GET", path.replace(" ", "%20"))
                    if status != 200:
                        failures.append((path, status, answer))
                progress[0] += 1
        except Exception as exc:  # a broken connection to the app is a failed request too
            failures.append(("client", n, repr(exc)))
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: progress[0] >= 20 or failures, "requests before the kill")
        cluster.kill(0)  # SIGKILL the write replica while requests are in flight
        at_kill = progress[0]
        wait_for(lambda: progress[0] >= at_kill + 40 or failures, "requests after the kill")
    finally:
        done.set()
        for t in threads:
            t.join(60)
        cluster.start(0)
    assert not failures, failures[:5]
    assert not any(t.is_alive() for t in threads)
    client = app.test_client()  # nothing acknowledged was lost
    for row in created:
        assert client.get(f"/requests/{row['row']}").json == row
