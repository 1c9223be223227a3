"""Streaming a 100,000-cell scan through the extension: flat memory, valid JSON, early close."""
from __future__ import annotations

import json
import tempfile
import tracemalloc

import pytest
from flask import Flask

from htcluster.flask_ext import Hypertable
from htcluster import Pool
from htcluster.types import Cell, Key, ScanSpec

NS = "flask_stream"
TABLE = "big"
N = 100_000
BATCH = 10_000


@pytest.fixture(scope="module")
def loaded(broker_address):
    """``N`` cells, one row each, loaded with ``set_cells`` batches."""
    with Pool(broker_address) as pool:
        if not pool.call("namespace_exists", NS):
            pool.call("namespace_create", NS)
        pool.call("hql_query", f"DROP TABLE IF EXISTS {TABLE}", namespace=NS)
        pool.call("hql_query", f"CREATE TABLE {TABLE} (f)", namespace=NS)
        for start in range(0, N, BATCH):
            cells = [Cell(Key(f"row{i:06d}", "f", "q", None, None, 255), b"value-%06d" % i)
                     for i in range(start, start + BATCH)]
            pool.call("set_cells", TABLE, cells, namespace=NS)
    return broker_address


@pytest.fixture()
def app_ext(loaded):
    ext = Hypertable()
    app = Flask("stream")
    app.config.update(HYPERTABLE_HOSTS=loaded, HYPERTABLE_NAMESPACE=NS)
    ext.init_app(app)
    app.add_url_rule("/cells", "cells", lambda: ext.stream(TABLE))
    app.add_url_rule("/rows", "rows", lambda: ext.stream(TABLE, ScanSpec(row_limit=10), by_row=True))
    return app, ext


def bytes_to_hold(address: str, sample: int = 1000) -> float:
    """Bytes of Python memory one decoded cell takes when cells are kept (measured, not guessed)."""
    with Pool(address) as pool:
        tracemalloc.start()
        cells = pool.call("get_cells", TABLE, ScanSpec(row_limit=sample), namespace=NS)
        held, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert len(cells) == sample
    return held / sample


def test_stream_of_100k_cells_keeps_memory_flat(app_ext, loaded):
    app, ext = app_ext
    per_cell = bytes_to_hold(loaded)
    with tempfile.TemporaryFile() as body:
        tracemalloc.start()
        response = app.test_client().get("/cells", buffered=False)
        chunks = 0
        for chunk in response.response:
            body.write(chunk)
            chunks += 1
        response.close()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        size = body.tell()
        body.seek(0)
        data = json.load(body)
    assert response.mimetype == "application/json"
    assert len(data) == N and chunks > 50
    assert data[0] == {"row": "row000000", "column": "f:q", "timestamp": data[0]["timestamp"],
                       "value": "value-000000"}
    assert data[-1]["row"] == f"row{N - 1:06d}"
    # Holding every cell would take N * per_cell bytes (~49 MB here); streaming holds about one
    # scanner batch (~512,000 bytes on the wire, ~6.6 MB of Python objects).
    assert peak < 0.25 * N * per_cell, (peak, per_cell, size)
    with app.app_context():
        assert ext.cluster.in_use == 0


def test_client_disconnect_closes_the_scan(app_ext):
    app, ext = app_ext
    response = app.test_client().get("/cells", buffered=False)
    stream = iter(response.response)
    assert next(stream).startswith(b'[{"row":"row000000"')
    with app.app_context():
        assert ext.cluster.in_use == 1  # the scan holds its own connection while streaming
    response.close()  # what the server does when the client goes away
    with app.app_context():
        pool = ext.cluster
        assert pool.in_use == 0 and pool.idle >= 1  # scanner closed, connection reusable
        assert pool.call("status").code == 0


def test_stream_by_row(app_ext):
    app, _ = app_ext
    data = app.test_client().get("/rows").json
    assert [d["row"] for d in data] == [f"row{i:06d}" for i in range(10)]
    assert data[3]["cells"] == [{"column": "f:q", "timestamp": data[3]["cells"][0]["timestamp"],
                                 "value": "value-000003"}]
