"""The streaming JSON body: shape, chunking, closing the source (values only, no sockets)."""
from __future__ import annotations

import json

from flask import Flask

from htcluster._flask.stream import JsonArrayStream, cell_to_json, stream_cells
from htcluster.types import Cell, Key


def cell(row: str, family: str, qualifier: str = "", value: bytes | None = b"v", ts: int = 1) -> Cell:
    return Cell(Key(row, family, qualifier, ts, ts, 255), value)


CELLS = [cell("r1", "a"), cell("r1", "b", "q", b"\xff\xfe"), cell("r2", "a", value=None),
         cell("r3", "a", value="é".encode())]


def body(response) -> bytes:
    return b"".join(response.response)


def test_one_object_per_cell():
    data = json.loads(body(stream_cells(iter(CELLS))))
    assert [d["row"] for d in data] == ["r1", "r1", "r2", "r3"]
    assert data[1] == {"row": "r1", "column": "b:q", "timestamp": 1, "value": {"base64": "//4="}}
    assert data[2]["value"] == "" and data[3]["value"] == "é"
    assert cell_to_json(CELLS[0])["column"] == "a"


def test_one_object_per_row():
    data = json.loads(body(stream_cells(iter(CELLS), by_row=True)))
    assert [d["row"] for d in data] == ["r1", "r2", "r3"]
    assert [c["column"] for c in data[0]["cells"]] == ["a", "b:q"]


def test_rows_in_a_shape_of_ones_own():
    response = stream_cells(iter(CELLS), by_row=True, row_json=lambda row, cells: [row, len(cells)])
    assert json.loads(body(response)) == [["r1", 2], ["r2", 1], ["r3", 1]]


def test_empty_scan_is_an_empty_array():
    for by_row in (False, True):
        assert json.loads(body(stream_cells(iter([]), by_row=by_row))) == []


def test_chunks_are_bounded_and_many():
    cells = [cell(f"row{i:06d}", "f", value=b"x" * 50) for i in range(5000)]
    chunks = list(JsonArrayStream(map(cell_to_json, cells), chunk_bytes=4096))
    assert len(chunks) > 50
    assert max(len(c) for c in chunks) < 4096 + 200
    assert len(json.loads(b"".join(chunks))) == 5000


def test_closing_the_response_closes_the_source_midway():
    state = {"pulled": 0, "closed": False}

    def scan():
        try:
            for i in range(100_000):
                state["pulled"] += 1
                yield cell(f"r{i:06d}", "f", value=b"y" * 100)
        finally:
            state["closed"] = True

    app = Flask(__name__)
    app.add_url_rule("/s", "s", lambda: stream_cells(scan(), chunk_bytes=1024))
    response = app.test_client().get("/s", buffered=False)
    first = next(iter(response.response))
    assert first.startswith(b"[{")
    response.close()  # what the server does when the client disconnects
    assert state["closed"]
    assert state["pulled"] < 1000


def test_closing_before_streaming_starts_still_closes_the_source():
    closed = []

    class Source:
        def __iter__(self):
            return iter(CELLS)

        def close(self):
            closed.append(True)

    stream_cells(Source()).close()
    assert closed
