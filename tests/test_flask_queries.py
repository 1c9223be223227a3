"""HYPERTABLE_RECORD_QUERIES, get_recorded_queries() and the Flask-DebugToolbar panel."""
from __future__ import annotations

import pytest
from flask import Flask, jsonify

from htcluster import events
from htcluster.errors import BrokerUnavailable, ConfigError
from htcluster.flask_ext import Hypertable, get_recorded_queries
from htcluster._flask.queries import QueryRecorder, summarize
from htcluster import Pool
from htcluster import Resource
from htcluster.types import Cell, Key, ScanSpec

NS = "flask_queries"
#: Whether the routing objects emit events yet (the lead wires emission into Pool.call).
EMITTING = hasattr(Pool("127.0.0.1:1"), "listeners")
needs_events = pytest.mark.skipif(not EMITTING, reason="routing objects have no .listeners yet (htcluster.events "
                                                        "emission not wired into Pool.call)")


def finished(method: str, *args, host: str = "127.0.0.1:9", duration: float = 0.25, error=None):
    if error is None:
        return events.CallSucceeded(host, method, NS, 1, duration, args)
    return events.CallFailed(host, method, NS, 2, duration, error, args)


def recording_app(recorder: QueryRecorder) -> Flask:
    """An app whose view makes calls by feeding the recorder the events a cluster emits for them."""
    app = Flask("recording")

    @app.get("/calls")
    def calls():
        recorder(events.CallStarted("127.0.0.1:9", "hql_query", NS, 1, (7, "SELECT * FROM t")))  # ignored
        recorder(finished("hql_query", "SELECT * FROM t"))  # the line the location must name
        recorder(finished("set_cells", "LogDb", [Cell(Key("r", "a")), Cell(Key("s", "a"))]))
        recorder(finished("get_cell", "t", "r", "a", error=BrokerUnavailable("reset", host="127.0.0.1:9")))
        return jsonify([q.__dict__ for q in get_recorded_queries()])

    return app


def test_a_request_lists_its_calls():
    recorder = QueryRecorder("recording", bind="analytics")
    app = recording_app(recorder)
    first, second = (app.test_client().get("/calls").get_json() for _ in range(2))
    assert first == second  # per request: the second request starts empty
    hql, cells, failed = first
    assert (hql["method"], hql["statement"], hql["host"], hql["namespace"]) == (
        "hql_query", "SELECT * FROM t", "127.0.0.1:9", NS)
    assert hql["duration"] == 0.25 and hql["error"] is None and hql["bind"] == "analytics"
    assert hql["location"].startswith(f"{__file__}:") and hql["location"].endswith("(calls)")
    assert cells["statement"] == "'LogDb', [2 cells]"
    assert failed["attempt"] == 2 and failed["error"].startswith("BrokerUnavailable: reset")


def test_nothing_is_recorded_outside_an_app_context():
    recorder = QueryRecorder("x")
    recorder(finished("status"))
    assert get_recorded_queries() == []
    with Flask("x").app_context():
        assert get_recorded_queries() == []


def test_summaries_are_short():
    assert summarize("hql_exec", (3, "INSERT INTO t VALUES ('r', 'a', 'v')", False, False)).startswith("INSERT")
    assert summarize("get_cells", ("t", ScanSpec(row_limit=5, versions=1))) == "'t', ScanSpec(versions=1, row_limit=5)"
    assert summarize("set_cell", ("t", Cell(Key("row", "a"), b"v" * 10_000))) == "'t', Cell('row', 'a')"
    assert len(summarize("get_row", ("x" * 1000,) * 10)) <= 300


def test_recording_is_off_by_default_and_refused_without_events(broker_address):
    app = Flask("off")
    app.config["HYPERTABLE_HOSTS"] = broker_address
    Hypertable(app)
    with app.app_context():
        assert not app.config["HYPERTABLE_RECORD_QUERIES"]
        if EMITTING:
            assert not any(isinstance(fn, QueryRecorder) for fn in getattr(app.extensions["hypertable"].cluster
                                                                            .listeners, "_origins", ()))
    if not EMITTING:
        on = Flask("on")
        on.config.update(HYPERTABLE_HOSTS=broker_address, HYPERTABLE_RECORD_QUERIES=True)
        with pytest.raises(ConfigError, match="HYPERTABLE_RECORD_QUERIES"):
            Hypertable(on)


# ------------------------------------------------------------------ against a broker, once events are emitted


def broker_app(address: str, **config) -> tuple[Flask, Hypertable]:
    with Resource(address, socket_timeout=30.0) as r:
        if not r.namespace_exists(NS):
            r.namespace_create(NS)
        if not r.table_exists(r.mns[NS], "t"):
            r.hql_query(r.mns[NS], "CREATE TABLE t (a)")
    app = Flask("queries")
    app.config.update(HYPERTABLE_HOSTS=address, HYPERTABLE_NAMESPACE=NS, HYPERTABLE_RECORD_QUERIES=True, **config)
    ext = Hypertable(app)

    @app.get("/work")
    def work():
        ext.namespace().hql_query("SELECT * FROM t")
        ext.namespace().get_cell("t", "nope", "a")
        return jsonify([q.__dict__ for q in ext.get_recorded_queries()])

    return app, ext


@needs_events
def test_get_recorded_queries_lists_a_requests_calls(broker_address):
    app, _ = broker_app(broker_address)
    calls = [q for q in app.test_client().get("/work").get_json() if q["method"] != "namespace_open"]
    assert [(q["method"], q["host"]) for q in calls] == [("hql_query", broker_address), ("get_cell", broker_address)]
    assert calls[0]["statement"] == "SELECT * FROM t" and calls[1]["statement"] == "'t', 'nope', 'a'"
    assert all(q["duration"] > 0 and q["location"].endswith("(work)") for q in calls)


@needs_events
def test_the_debug_toolbar_panel_lists_them(broker_address):
    pytest.importorskip("flask_debugtoolbar")
    from flask_debugtoolbar import DebugToolbarExtension

    app, _ = broker_app(broker_address, SECRET_KEY="test", DEBUG_TB_INTERCEPT_REDIRECTS=False,
                        DEBUG_TB_PANELS=["htcluster._flask.toolbar.HypertablePanel"])
    app.debug = True
    app.add_url_rule("/page", "page", lambda: (app.view_functions["work"](), "<html><body>page</body></html>")[1])
    DebugToolbarExtension(app)
    html = app.test_client().get("/page").get_data(as_text=True)
    assert "Hypertable broker calls" in html and "SELECT * FROM t" in html and broker_address in html
    assert "2 calls in" in html or "3 calls in" in html


def test_the_panel_renders_recorded_calls_escaped():
    pytest.importorskip("flask_debugtoolbar")
    from htcluster._flask.toolbar import HypertablePanel

    recorder = QueryRecorder("panel")
    app = Flask("panel")
    app.config["HYPERTABLE_RECORD_QUERIES"] = True
    with app.test_request_context("/"):
        recorder(finished("hql_query", "SELECT * FROM t WHERE ROW = '<b>'"))
        panel = HypertablePanel(jinja_env=None)
        assert panel.nav_subtitle() == "1 calls in 250.0 ms"
        html = panel.content()
        assert "SELECT * FROM t WHERE ROW = &#39;&lt;b&gt;&#39;" in html and "<b>" not in html
        assert "250.00" in html and "127.0.0.1:9" in html
    app.config["HYPERTABLE_RECORD_QUERIES"] = False
    with app.test_request_context("/"):
        assert "HYPERTABLE_RECORD_QUERIES = True" in HypertablePanel(jinja_env=None).content()


@needs_events
def test_each_bind_is_recorded_under_its_name(local_cluster_factory):
    cluster = local_cluster_factory(2, shared_data=False)
    main, other = cluster.hosts
    app = Flask("bound")
    app.config.update(HYPERTABLE_HOSTS=main, HYPERTABLE_BINDS={"analytics": [other]},
                      HYPERTABLE_RECORD_QUERIES=True)
    ext = Hypertable(app)

    @app.get("/both")
    def both():
        ext.call("status")
        ext.call("status", bind="analytics")
        return jsonify([(q.method, q.host, q.bind) for q in get_recorded_queries()])

    assert app.test_client().get("/both").get_json() == [["status", main, None], ["status", other, "analytics"]]
    with app.app_context():
        assert get_recorded_queries() == []  # a new app context starts empty
