"""jsonify of cells, HQL results and cell values in an app using the extension (no sockets)."""
from __future__ import annotations

import base64
import json

import pytest
from flask import Flask, jsonify
from flask.json.provider import DefaultJSONProvider

from htcluster.flask_ext import Hypertable
from htcluster._flask.encoding import json_default, value_to_json
from htcluster._flask.stream import stream_cells
from htcluster.types import Cell, HqlResult, Key, NamespaceListing, Status

BINARY = b"\xff\x00\xfe"
CELLS = [Cell(Key("r1", "a", "", 5, 5, 255), b"text \xc3\xa9"), Cell(Key("r1", "b", "q", 6, 6, 255), BINARY),
         Cell(Key("r2", "a", "", 7, 7, 255), None)]


def app_with(**config) -> Flask:
    app = Flask(f"json{id(config)}")
    app.config.update(HYPERTABLE_HOSTS="127.0.0.1:1", **config)
    Hypertable(app)
    return app


def dumped(app: Flask, obj) -> object:
    with app.app_context():
        return json.loads(jsonify(obj).get_data())


def test_jsonify_of_cell_values_and_cells():
    """``bytes`` was not JSON serializable: the Flask-Hypertable app's ``jsonify(value=...)`` failed."""
    app = app_with()
    assert dumped(app, {"value": b"v1"}) == {"value": "v1"}
    assert dumped(app, [b"caf\xc3\xa9", BINARY]) == ["café", {"base64": base64.b64encode(BINARY).decode()}]
    assert dumped(app, CELLS) == [
        {"row": "r1", "column": "a", "timestamp": 5, "value": "text é"},
        {"row": "r1", "column": "b:q", "timestamp": 6, "value": {"base64": "/wD+"}},
        {"row": "r2", "column": "a", "timestamp": 7, "value": ""},
    ]


def test_jsonify_of_results_keys_and_other_structs():
    app = app_with()
    result = HqlResult(results=["t1", "t2"], cells=CELLS[:1], scanner=None, mutator=None)
    assert dumped(app, result) == {"results": ["t1", "t2"], "scanner": None, "mutator": None,
                                   "cells": [{"row": "r1", "column": "a", "timestamp": 5, "value": "text é"}]}
    assert dumped(app, Key("r", "f", "q", 1, 2, 255)) == {"row": "r", "column": "f:q", "timestamp": 1,
                                                          "revision": 2, "flag": 255}
    assert dumped(app, Status(code=0, text="ok")) == {"code": 0, "text": "ok"}
    assert dumped(app, [NamespaceListing(name="t", is_namespace=False)]) == [{"name": "t", "is_namespace": False}]


def test_the_stream_encodes_values_as_jsonify_does():
    app = app_with()
    streamed = json.loads(b"".join(stream_cells(iter(CELLS)).response))
    assert streamed == dumped(app, CELLS)
    assert json.loads(json.dumps(CELLS, default=json_default)) == streamed


def test_value_encoding_is_lossless():
    for raw in (b"", b"plain", "ü".encode(), BINARY, bytes(range(256))):
        encoded = value_to_json(raw)
        back = encoded.encode() if isinstance(encoded, str) else base64.b64decode(encoded["base64"])
        assert back == raw
    assert value_to_json("already text") == "already text" and value_to_json(None) == ""


def test_the_apps_own_provider_keeps_its_own_types():
    class Money:
        def __init__(self, cents):
            self.cents = cents

    class Provider(DefaultJSONProvider):
        @staticmethod
        def default(o):
            if isinstance(o, Money):
                return f"{o.cents / 100:.2f}"
            return DefaultJSONProvider.default(o)

    app = Flask("own")
    app.json = Provider(app)
    app.config["HYPERTABLE_HOSTS"] = "127.0.0.1:1"
    Hypertable(app)
    assert dumped(app, {"price": Money(250), "value": b"x"}) == {"price": "2.50", "value": "x"}
    with app.app_context(), pytest.raises(TypeError):
        jsonify(object())


def test_json_can_be_turned_off():
    app = app_with(HYPERTABLE_JSON=False)
    with app.app_context(), pytest.raises(TypeError, match="bytes"):
        jsonify(b"x")
