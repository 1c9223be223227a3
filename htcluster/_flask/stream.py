"""Stream cells to an HTTP client as one JSON array, a chunk at a time.

:func:`stream_cells` wraps any iterable of cells (typically a scan generator,
which pulls ``scanner_get_cells`` batches one after another)
in a Flask ``Response`` whose body is ``[`` + one JSON object per cell or per
row, separated by commas + ``]``.  Values are encoded as
:mod:`htcluster._flask.encoding` says (UTF-8 text, else ``{"base64": ...}``),
the same as ``jsonify`` in an app using the extension.  Only the current batch and one output chunk
are ever held in memory.  When the client goes away, the WSGI server closes the
response, which closes the source iterable: a scan generator then closes its
scanner and gives its connection back, whether or not streaming had begun.
"""
from __future__ import annotations

import itertools
import json
import logging
from typing import Any, Callable, Iterable, Iterator, Optional

from flask import Response

from ..types import Cell
from .encoding import cell_to_json, column, json_default, value_to_json

__all__ = ["CHUNK_BYTES", "CUT_SHORT", "NO_ROW", "JsonArrayEncoder", "JsonArrayStream", "RowGrouper", "RowJson",
           "cell_to_json", "row_to_json", "stream_cells"]

#: Bytes gathered before a chunk is handed to the server: big enough to keep
#: the per-write overhead low, small enough to keep memory flat.
CHUNK_BYTES = 32 * 1024

#: What turns one row, ``(row key, its cells in scan order)``, into the JSON-ready object sent.
RowJson = Callable[[str, list[Cell]], Any]

log = logging.getLogger(__name__)

#: What is logged when a streamed array fails after its first byte.
CUT_SHORT = "streamed JSON array cut short after it had started: the client gets no closing ']'"


def row_to_json(row: str, cells: list[Cell]) -> dict[str, Any]:
    """Return the cells of one row as ``{"row": str, "cells": [{"column", "timestamp", "value"}]}``.

    Values follow :func:`htcluster._flask.encoding.value_to_json`.
    """
    return {"row": row, "cells": [{"column": column(c.key), "timestamp": c.key.timestamp,
                                   "value": value_to_json(c.value)} for c in cells]}


class RowGrouper:
    """Group consecutive cells of one row (a scan returns them row by row) into one object each.

    The pure part of a stream by row, shared by the Flask stream and the Quart
    one (:mod:`htcluster._quart.stream`): feed cells in scan order to
    :meth:`add`, then call :meth:`finish` once.

    :param row_json: turns ``(row key, its cells)`` into the object sent.
    """

    def __init__(self, row_json: RowJson = row_to_json) -> None:
        self._row_json = row_json
        self._row: Optional[str] = None
        self._group: list[Cell] = []

    def add(self, cell: Cell) -> Any:
        """Take the next cell; return the finished previous row's object, or :data:`NO_ROW`."""
        done: Any = NO_ROW
        if cell.key.row != self._row and self._group:
            done = self._row_json(self._row, self._group)  # type: ignore[arg-type]
            self._group = []
        self._row = cell.key.row
        self._group.append(cell)
        return done

    def finish(self) -> Any:
        """Return the last row's object, or :data:`NO_ROW` when no cell came."""
        if not self._group:
            return NO_ROW
        done = self._row_json(self._row, self._group)  # type: ignore[arg-type]
        self._group = []
        return done


#: What :class:`RowGrouper` returns when no row is finished yet (a row object may be any value, even ``None``).
NO_ROW: Any = object()


def _rows(cells: Iterable[Cell], row_json: RowJson) -> Iterator[Any]:
    """Yield one object per row of ``cells`` (see :class:`RowGrouper`)."""
    grouper = RowGrouper(row_json)
    for cell in cells:
        row = grouper.add(cell)
        if row is not NO_ROW:
            yield row
    row = grouper.finish()
    if row is not NO_ROW:
        yield row


class JsonArrayEncoder:
    """Encode objects one at a time into the ``bytes`` chunks of one JSON array (no I/O).

    The pure part of every streamed JSON array (the Flask stream, the Quart
    one): :meth:`add` each object, send what it returns when it returns
    bytes, then send :meth:`finish`.  Values of htcluster's types are encoded
    by :func:`~htcluster._flask.encoding.json_default`.

    :param chunk_bytes: bytes gathered before a chunk is returned; the first
        object is returned alone, at once, so that the response starts.
    """

    def __init__(self, chunk_bytes: int = CHUNK_BYTES) -> None:
        self._encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=json_default).encode
        self._chunk_bytes = chunk_bytes
        self._parts: list[str] = ["["]
        self._size = 1
        self._separator = ""

    def add(self, item: Any) -> Optional[bytes]:
        """Encode ``item``; return a chunk to send when enough has gathered (always after the first item).

        :raises TypeError: ``item`` holds a value JSON cannot encode.
        """
        text = self._encode(item)
        first = not self._separator
        self._parts.append(self._separator + text)
        self._size += len(text) + 1
        self._separator = ","
        if self._size >= self._chunk_bytes or first:
            return self._flush()
        return None

    def finish(self) -> bytes:
        """Return the last chunk: what is left and the closing ``]``."""
        self._parts.append("]")
        return self._flush()

    def _flush(self) -> bytes:
        chunk = "".join(self._parts).encode("utf-8")
        self._parts, self._size = [], 0
        return chunk


class JsonArrayStream:
    """An iterable of ``bytes`` chunks forming one JSON array; ``close()`` closes the source.

    :param items: the objects to encode, consumed lazily.
    :param source: what to close when the stream is closed (defaults to
        ``items``), e.g. the scan generator behind a transformation.
    :param chunk_bytes: bytes gathered before a chunk is yielded (the first
        object is yielded alone, at once, so the response starts).

    An exception while streaming is logged and raised to the WSGI server,
    which ends the connection: the client gets a body without its closing
    ``]`` (invalid JSON, and a chunked body without its last chunk), never
    a shorter array that looks complete.
    """

    def __init__(self, items: Iterable[Any], source: Optional[Iterable[Any]] = None,
                 chunk_bytes: int = CHUNK_BYTES) -> None:
        self._items = items
        self._source = items if source is None else source
        self._chunk_bytes = chunk_bytes
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        encoder = JsonArrayEncoder(self._chunk_bytes)
        try:
            for item in self._items:
                chunk = encoder.add(item)
                if chunk is not None:
                    yield chunk
            yield encoder.finish()
        except Exception:
            log.exception(CUT_SHORT)
            raise
        finally:
            self.close()

    def close(self) -> None:
        """Close the source (idempotent); called by the WSGI server when the client is gone."""
        if not self.closed:
            self.closed = True
            for obj in (self._items, self._source):
                _close(obj)


def _close(obj: Any) -> None:
    close: Optional[Callable[[], None]] = getattr(obj, "close", None)
    if close is not None:
        close()


def stream_cells(cells: Iterable[Cell], *, by_row: bool = False, row_json: RowJson = row_to_json,
                 status: int = 200, headers: Optional[dict[str, str]] = None,
                 chunk_bytes: int = CHUNK_BYTES) -> Response:
    """Return a streamed ``application/json`` response of ``cells``, its first object already read.

    The first object is read here, in the view, so that an error before
    the first byte (no broker answers, the table does not exist) is raised
    to the caller and reaches the app's error handlers, which can still
    answer with a status and a JSON body of their own.  Errors after that
    cut the stream short (see :class:`JsonArrayStream`).

    :param cells: cells in scan order (row, then column), consumed lazily;
        closed (if it has ``close``) when the response is closed.
    :param by_row: one object per row (:func:`row_to_json`) instead of one
        per cell (:func:`cell_to_json`).
    :param row_json: with ``by_row``, what turns ``(row, cells)`` into the
        object sent (default :func:`row_to_json`).
    :param status: HTTP status code.
    :param headers: extra response headers.
    :param chunk_bytes: bytes gathered before a chunk is sent.
    :returns: a Flask ``Response`` whose body is a JSON array.
    :raises Exception: whatever reading the first object raised (e.g.
        ``NoHostAvailable``, ``ClientException``); ``cells`` is closed then.
    """
    items: Iterator[Any] = iter(_rows(cells, row_json) if by_row else map(cell_to_json, cells))
    try:
        first = next(items, _END)
    except BaseException:
        _close(cells)
        raise
    rest = items if first is _END else itertools.chain((first,), items)
    body = JsonArrayStream(rest, source=cells, chunk_bytes=chunk_bytes)
    return Response(body, status=status, headers=headers, mimetype="application/json")


_END = object()
