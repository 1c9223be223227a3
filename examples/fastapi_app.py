"""A FastAPI service over ``htcluster.aio``: short notes kept in a Hypertable table, read and written
through replicas with failover.

=========================  ===================================================
``PUT /notes/{key}``       store ``{"text": "..."}`` under ``key`` -> 200
``GET /notes/{key}``       one note -> 200 ``{"key", "text"}``, or 404
``GET /notes``             every note, streamed as one JSON array
``GET /health``            the replicas' counters per host (``stats()``)
=========================  ===================================================

The pattern: the app's **lifespan** opens one ``AsyncReplicas`` (made before
the loop serves anything, bound to the serving loop by its first call) and
closes it at shutdown; a **dependency** (``get_replicas``) hands it to each
endpoint.  Errors are JSON: 503 when no broker answered (``NoHostAvailable``,
``BrokerUnavailable``, ``PoolTimeout``, ``DeadlineExceeded``), 502 when a
broker refused the call.  The list is streamed: its status is sent before the
scan starts, so a failure there (or later) cuts the array short (no closing
``]``) instead of becoming a 503.

Run it against three local brokers in front of one data file (extra
``fastapi``, and an ASGI server such as Hypercorn or Uvicorn)::

    htcluster cluster --brokers 3 --base-port 15867          # keep it running
    export HYPERTABLE_HOSTS=127.0.0.1:15867,127.0.0.1:15868,127.0.0.1:15869
    cd examples && hypercorn "fastapi_app:create_app()"      # or: uvicorn --factory fastapi_app:create_app

    curl -s -X PUT localhost:8000/notes/n1 -H 'Content-Type: application/json' -d '{"text": "hello"}'
    curl -s localhost:8000/notes/n1
    curl -sN localhost:8000/notes
"""
from __future__ import annotations

import json
import os
from contextlib import asynccontextmanager
from typing import Annotated, Any, AsyncIterator, Optional

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.types import Receive, Scope, Send

from htcluster.aio import AsyncReplicas
from htcluster.errors import BrokerUnavailable, ClientException, DeadlineExceeded, NoHostAvailable, PoolTimeout
from htcluster.types import Cell, Key, ScanSpec

#: The table the notes live in (one row per note, its text in family ``text``).
TABLE = "notes"
#: The namespace, unless ``create_app(namespace=...)`` or ``$HYPERTABLE_NAMESPACE`` says otherwise.
NAMESPACE = "notes"


class NoteIn(BaseModel):
    """What ``PUT /notes/{key}`` takes."""

    text: str = Field(min_length=1, max_length=10_000)


class NoteOut(BaseModel):
    """What ``GET /notes/{key}`` returns."""

    key: str
    text: str


async def ensure_schema(replicas: AsyncReplicas, namespace: str) -> None:
    """Create the namespace and the table unless they exist."""
    if not await replicas.call("namespace_exists", namespace):
        await replicas.call("namespace_create", namespace)
    if not await replicas.call("table_exists", TABLE, namespace=namespace):
        await replicas.call("hql_query", f"CREATE TABLE {TABLE} (text MAX_VERSIONS 1)", namespace=namespace)


def get_replicas(request: Request) -> AsyncReplicas:
    """The dependency: the app's ``AsyncReplicas``, opened by the lifespan."""
    replicas: AsyncReplicas = request.app.state.replicas
    return replicas


Replicas = Annotated[AsyncReplicas, Depends(get_replicas)]


class ClosingStreamingResponse(StreamingResponse):
    """A ``StreamingResponse`` that closes its body however the response ends.

    Starlette leaves an unfinished async generator to the garbage collector
    when the client goes away; closing it here leaves the ``async with`` of the
    scan inside it at once, which closes the scanner and gives the connection back.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()


def create_app(hosts: Optional[list[str]] = None, namespace: Optional[str] = None, **options: Any) -> FastAPI:
    """Return the app.

    :param hosts: the brokers (replicas of one data set); default ``$HYPERTABLE_HOSTS`` (comma-separated).
    :param namespace: the namespace of the table; default ``$HYPERTABLE_NAMESPACE``, else ``notes``.
    :param options: more keyword arguments of ``AsyncReplicas`` (``socket_timeout=``, ``hedge=`` ...).
    :raises RuntimeError: no hosts given and ``$HYPERTABLE_HOSTS`` is not set.
    """
    if hosts is None:
        if not os.environ.get("HYPERTABLE_HOSTS"):
            raise RuntimeError("set HYPERTABLE_HOSTS to the brokers, e.g. 127.0.0.1:15867,127.0.0.1:15868")
        hosts = os.environ["HYPERTABLE_HOSTS"].split(",")
    ns = namespace or os.environ.get("HYPERTABLE_NAMESPACE") or NAMESPACE

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncReplicas(hosts, **options) as replicas:
            await ensure_schema(replicas, ns)
            app.state.replicas = replicas
            yield  # the app serves; on shutdown the replicas close their connections

    app = FastAPI(title="notes", lifespan=lifespan)

    @app.exception_handler(NoHostAvailable)
    @app.exception_handler(BrokerUnavailable)
    @app.exception_handler(PoolTimeout)
    @app.exception_handler(DeadlineExceeded)
    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": f"no broker answered: {exc}", "status": 503}, status_code=503)

    @app.exception_handler(ClientException)
    async def refused(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc), "code": getattr(exc, "code", None), "status": 502},
                            status_code=502)

    @app.put("/notes/{key}")
    async def put_note(key: str, note: NoteIn, replicas: Replicas) -> NoteOut:
        cell = Cell(key=Key(row=key, column_family="text"), value=note.text.encode("utf-8"))
        await replicas.call("set_cell", TABLE, cell, namespace=ns)  # a write: the first live replica
        return NoteOut(key=key, text=note.text)

    @app.get("/notes/{key}")
    async def get_note(key: str, replicas: Replicas) -> NoteOut:
        value = await replicas.call("get_cell", TABLE, key, "text", namespace=ns)  # a read: any replica
        if not value:
            raise HTTPException(status_code=404, detail=f"no note {key!r}")
        return NoteOut(key=key, text=value.decode("utf-8", errors="replace"))

    @app.get("/notes")
    async def list_notes(replicas: Replicas) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            # The scan resumes on another replica after its last complete row if its broker dies.
            async with replicas.scan(TABLE, ScanSpec(versions=1), namespace=ns) as cells:
                separator = b"["
                async for cell in cells:
                    note = {"key": cell.key.row, "text": (cell.value or b"").decode("utf-8", errors="replace")}
                    yield separator + json.dumps(note).encode()
                    separator = b","
                yield b"[]" if separator == b"[" else b"]"

        return ClosingStreamingResponse(body(), media_type="application/json")

    @app.get("/health")
    async def health(replicas: Replicas) -> dict[str, Any]:
        return dict(replicas.stats())  # {host: {"health": ..., "pool": ..., ...}}

    return app
