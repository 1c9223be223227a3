"""Stream a scan to an HTTP client as one JSON array, from an async generator (Quart).

The twin of :mod:`htcluster._flask.stream`, sharing its pure parts
(:class:`~htcluster._flask.stream.JsonArrayEncoder` makes the chunks,
:class:`~htcluster._flask.stream.RowGrouper` groups cells by row, the values
are encoded as :mod:`htcluster._flask.encoding` says); only the iteration
awaits.  :func:`stream_cells` enters a scan (the async context manager of an
``htcluster.aio`` routing object's ``scan``), reads the first object before it
returns, and hands Quart an async generator for the rest.  The scan is left
(its scanner closed, its connection given back) when the body ends, when it
fails, and when the client goes away: Quart closes the generator
(``aclose``), whose ``finally`` leaves the scan.
"""
from __future__ import annotations

import logging
import sys
from typing import Any, AsyncContextManager, AsyncGenerator, AsyncIterator, Optional

from quart import Response

from .._flask.encoding import cell_to_json
from .._flask.stream import CHUNK_BYTES, CUT_SHORT, NO_ROW, JsonArrayEncoder, RowGrouper, RowJson, row_to_json

__all__ = ["EMPTY", "async_rows", "json_array_chunks", "leave", "stream_cells"]

log = logging.getLogger(__name__)

#: What :func:`json_array_chunks` takes as ``first`` when the scan gave no object (the array is ``[]``).
EMPTY: Any = object()


async def async_rows(cells: AsyncIterator[Any], row_json: RowJson = row_to_json) -> AsyncGenerator[Any, None]:
    """Yield one object per row of ``cells`` (in scan order), made by ``row_json``.

    :param cells: an async iterator of :class:`~htcluster.types.Cell`.
    :param row_json: turns ``(row key, its cells)`` into the object yielded.
    """
    grouper = RowGrouper(row_json)
    async for cell in cells:
        row = grouper.add(cell)
        if row is not NO_ROW:
            yield row
    row = grouper.finish()
    if row is not NO_ROW:
        yield row


async def _cells_json(cells: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
    async for cell in cells:
        yield cell_to_json(cell)


async def json_array_chunks(first: Any, items: AsyncIterator[Any], scan: AsyncContextManager[Any],
                            chunk_bytes: int = CHUNK_BYTES) -> AsyncIterator[bytes]:
    """Yield the ``bytes`` chunks of one JSON array: ``first`` (unless none came), then ``items``.

    The scan is left in the generator's ``finally``: when the array is
    complete, when reading fails, and when the server closes the generator
    because the client went away.  A failure after the first chunk is logged
    and raised to the server, which ends the connection: the client gets a
    body without its closing ``]``, never a shorter array that looks complete.

    :param first: the first object, already read, or :data:`EMPTY` when none came.
    :param items: the other objects, read lazily.
    :param scan: the entered scan to leave at the end.
    :param chunk_bytes: bytes gathered before a chunk is yielded.
    """
    encoder = JsonArrayEncoder(chunk_bytes)
    try:
        if first is not EMPTY:
            chunk = encoder.add(first)
            if chunk is not None:
                yield chunk
            async for item in items:
                chunk = encoder.add(item)
                if chunk is not None:
                    yield chunk
        yield encoder.finish()
    except Exception:
        log.exception(CUT_SHORT)
        raise
    finally:
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()
        await leave(scan, sys.exc_info()[1])


async def leave(scan: AsyncContextManager[Any], exc: Optional[BaseException]) -> None:
    """Leave an entered scan after the stream ended, failed, or was cut.

    An error of the stream (an ``Exception``: the scan itself failed, or the
    consumer did) is not passed in: leaving closes the scanner as when a
    consumer stops early, and the error goes on from the stream.  A
    cancellation (a ``BaseException`` such as :class:`asyncio.CancelledError`)
    is passed in, so the scan's connection is closed, never pooled.

    :param scan: the scan's async context manager, entered.
    :param exc: the exception that ended the stream, or ``None``.
    """
    if exc is None or isinstance(exc, Exception):
        await scan.__aexit__(None, None, None)
    else:
        await scan.__aexit__(type(exc), exc, exc.__traceback__)


async def stream_cells(scan: AsyncContextManager[Any], *, by_row: bool = False, row_json: RowJson = row_to_json,
                       status: int = 200, headers: Optional[dict[str, str]] = None,
                       chunk_bytes: int = CHUNK_BYTES) -> Response:
    """Return a streamed ``application/json`` Quart response of a scan, its first object already read.

    The first object is read here, in the view, so that an error before the
    first byte (no broker answers, no such table) is raised to the caller and
    reaches the app's error handlers, which can still answer with a status
    and a JSON body of their own.  Errors after that cut the stream short
    (see :func:`json_array_chunks`).

    :param scan: a scan not yet entered: ``replicas.scan(table, spec, namespace=...)``
        of an ``htcluster.aio`` routing object (an async context manager
        giving an async iterator of cells).
    :param by_row: one object per row (:func:`~htcluster._flask.stream.row_to_json`)
        instead of one per cell (:func:`~htcluster._flask.encoding.cell_to_json`).
    :param row_json: with ``by_row``, what turns ``(row, cells)`` into the object sent.
    :param status: HTTP status code.
    :param headers: extra response headers.
    :param chunk_bytes: bytes gathered before a chunk is sent.
    :returns: a Quart ``Response`` whose body is a JSON array, sent as it is read.
    :raises Exception: whatever entering the scan or reading the first object
        raised (``NoHostAvailable``, ``ClientException`` ...); the scan is left then.
    """
    cells = await scan.__aenter__()
    items: AsyncGenerator[Any, None] = async_rows(cells, row_json) if by_row else _cells_json(cells)
    try:
        first = await anext(items, EMPTY)
    except BaseException as exc:
        await items.aclose()
        await leave(scan, exc)
        raise
    body = json_array_chunks(first, items, scan, chunk_bytes)
    return Response(body, status=status, headers=headers, mimetype="application/json")
