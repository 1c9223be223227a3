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
from http.client import HTTPConnection, IncompleteRead
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from htcluster.testing import LocalCluster, free_port
from htcluster.cli.weblog import generate_lines

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


@pytest.mark.parametrize("payload, field, problem", [
    ([1, 2], "body", "must be a JSON object"),
    ({"Request": "GET / HTTP/1.1"}, "ClientIpAddress", "ClientIpAddress: is required"),
    ({**GOOD, "ClientIpAddress": "a b"}, "ClientIpAddress", "without spaces"),
    ({**GOOD, "ClientIpAddress": "10.0.0.1\x00evil"}, "ClientIpAddress", "control characters"),
    ({**GOOD, "ClientIpAddress": "-"}, "ClientIpAddress", "without spaces"),
    ({**GOOD, "ResponseCode": "20x"}, "ResponseCode", "three digits"),
    ({k: v for k, v in GOOD.items() if k != "ResponseCode"}, "ResponseCode", "ResponseCode: is required"),
    ({**GOOD, "ObjectSize": "big"}, "ObjectSize", "byte count"),
    ({**GOOD, "ObjectSize": True}, "ObjectSize", "string"),
    ({**GOOD, "time": -1}, "time", "greater than or equal to 0"),
    ({**GOOD, "time": 2 ** 70}, "time", "less than or equal to 9223372036"),
    ({**GOOD, "time": 1.5}, "time", "integer"),
    ({**GOOD, "time": "1709251200"}, "time", "integer"),
    ({**GOOD, "Referrer": "typo"}, "Referrer", "Referrer: unknown field"),
    ({**GOOD, "UserAgent": 7}, "UserAgent", "string"),
    ({**GOOD, "UserAgent": ""}, "UserAgent", "at least 1 character"),
])
def test_bad_payload_is_422_naming_the_field(app, payload, field, problem):
    response = app.test_client().post("/requests", json=payload)
    assert response.status_code == 422, response.json
    assert response.json["status"] == 422 and field in response.json["fields"]
    assert any(problem in p for p in response.json["problems"]), response.json


@pytest.mark.parametrize("body, field, problem", [
    (b"{oops", "body", "not json"),
    (b"", "body", "not json"),
    (b'{"ClientIpAddress": "\\ud800", "Request": "GET /", "ResponseCode": 200}', "ClientIpAddress",
     "unicode"),
    (b'{"ClientIpAddress": "10.0.0.1", "Request": "GET /\\udfff", "ResponseCode": 200}', "Request",
     "unicode"),
    (b"[" * 100_000 + b"]" * 100_000, "body", "nested too deeply"),
    (b'{"ClientIpAddress": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "body", "nested too deeply"),
    (b'{"ClientIpAddress": "\xff"}', "body", "not utf-8"),
], ids=["not-json", "empty", "surrogate-client", "surrogate-request", "deep-array", "deep-field", "not-utf8"])
def test_body_that_is_not_a_json_object_is_422(app, body, field, problem):
    """Lone surrogates and JSON nested 100,000 levels deep gave 500 before."""
    response = app.test_client().post("/requests", data=body, content_type="application/json")
    assert response.status_code == 422, response.get_data()[:300]
    assert response.json["fields"] == [field] and problem in response.json["error"].lower()


def test_nul_in_the_client_is_refused_not_stored_unreachable(app):
    """A NUL in ClientIpAddress was accepted (201) and its row then not found (404)."""
    client = app.test_client()
    response = client.post("/requests", json={**GOOD, "ClientIpAddress": "10.0.0.9\x00"})
    assert response.status_code == 422 and response.json["fields"] == ["ClientIpAddress"]
    for path, field in (("/requests/10.0.0.9%00%201709251200%2000000001", "row"),
                        ("/requests?client=10.0.0.9%00", "client"),
                        ("/requests/stream?client=%01x", "client")):
        answer = client.get(path)
        assert answer.status_code == 422 and answer.json["fields"] == [field], (path, answer.json)


def test_every_error_is_json(app):
    client = app.test_client()
    for response, status in ((client.get("/nowhere"), 404), (client.delete("/requests"), 405),
                             (client.post("/requests", data=b"x" * (1024 * 1024 + 1), content_type="application/json"),
                              413)):
        assert response.status_code == status and response.json["status"] == status, response.get_data()[:200]
    broken = logdb_app.create_app({"HYPERTABLE_HOSTS": "127.0.0.1:1", "HYPERTABLE_NAMESPACE": NS})
    broken.add_url_rule("/boom", "boom", lambda: 1 / 0)
    response = broken.test_client().get("/boom")
    assert response.status_code == 500 and response.json == {
        "error": "internal error (ZeroDivisionError); see the server log", "status": 500}


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
    """The stream answered Werkzeug's HTML 500 page before: its error came after the view returned."""
    dead = f"127.0.0.1:{free_port()}"
    app = logdb_app.create_app({"HYPERTABLE_HOSTS": dead, "HYPERTABLE_NAMESPACE": NS})
    client = app.test_client()
    for response in (client.get("/requests/x"), client.post("/requests", json=GOOD),
                     client.get("/requests"), client.get("/requests/stream")):
        assert response.status_code == 503 and response.mimetype == "application/json"
        assert "no broker answered" in response.json["error"]


def test_stream_of_a_missing_table_is_502(cluster):
    app = logdb_app.create_app({"HYPERTABLE_HOSTS": cluster.hosts, "HYPERTABLE_NAMESPACE": "example_empty"})
    assert app.test_cli_runner().invoke(args=["hypertable", "status"]).exit_code == 0
    with app.app_context():  # the namespace exists, the LogDb table in it does not
        if not logdb_app.ht.call("namespace_exists", "example_empty"):
            logdb_app.ht.call("namespace_create", "example_empty")
    for path in ("/requests/stream", "/requests"):
        response = app.test_client().get(path)
        assert response.status_code == 502 and response.mimetype == "application/json", response.get_data()[:200]
        assert "the broker refused" in response.json["error"] and response.json["code"] > 0


@pytest.fixture()
def live_server(app):
    """The app served over HTTP on a free loopback port by a threaded WSGI server."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    thread.join(10)


def test_a_failure_after_the_first_byte_cuts_the_array_short(app, live_server, monkeypatch):
    """Documented: once the first row is out, a failure ends the body without its closing ']'."""
    real, seen = logdb_app.row_to_json, []

    def failing(row, cells):
        seen.append(row)
        if len(seen) == 3:
            raise RuntimeError("the scan broke midway")
        return real(row, cells)

    monkeypatch.setattr(logdb_app, "row_to_json", failing)
    conn = HTTPConnection("127.0.0.1", live_server, timeout=60)
    conn.request("GET", "/requests/stream")
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Content-Type") == "application/json"
    body = b""
    try:
        while chunk := response.read1(65536):
            body += chunk
    except IncompleteRead as exc:  # the chunked body lacks its last chunk
        body += exc.partial
    finally:
        conn.close()
    assert body.startswith(b"[{") and not body.rstrip().endswith(b"]")
    with pytest.raises(ValueError):
        json.loads(body)


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
