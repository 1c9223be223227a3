"""Scans for asyncio: ``async with x.scan(...) as cells: async for cell in cells:``.

A scan is the blocking layer's streaming engine generator
(``htcluster._io.resource.scan_steps``, ``Replicas.scan_steps`` with its
resumption after a failure: :mod:`htcluster._routing.scan_all`) driven on the
loop (:func:`htcluster._aio.io.astream`).  :class:`ScanBlock` is the ``async
with`` around it: leaving the block, by the end of the loop, a ``break``, an
exception or a cancellation, closes the scanner and gives the connection
back at once (a bare async generator left by ``break`` would stay open until
garbage collection).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, AsyncIterator, Optional

from .._io.resource import scan_steps
from .._policy.steps import Steps
from .._validate import seconds
from ..hosts import HostLike
from ..types import Cell, ScanSpec
from .io import astream

if TYPE_CHECKING:  # pragma: no cover
    from .._routing.replicas import Replicas
    from .routing import AsyncConnection

__all__ = ["ScanBlock", "replicas_scan", "resource_scan"]


async def _cells(batches: AsyncIterator[list[Cell]]) -> AsyncIterator[Cell]:
    async for batch in batches:
        for cell in batch:
            yield cell


class ScanBlock:
    """``async with`` a scan: gives an async iterator of cells; closes the scanner (and connection) on exit.

    :param steps: the streaming engine generator delivering lists of cells.
    :param connection: an ``AsyncConnection`` held around the scan, or ``None`` (the generator holds its own).
    :param batch: give the lists of cells (one per round trip) instead of cells.
    """

    def __init__(self, steps: Optional[Steps[None]], connection: Optional["AsyncConnection"] = None,
                 namespace: str = "", table: str = "", spec: Optional[ScanSpec] = None,
                 limit: Optional[float] = None, batch: bool = False) -> None:
        self.steps = steps
        self.connection = connection
        self.args = (namespace, table, spec, limit)
        self.batch = batch
        self.batches: Optional[AsyncIterator[list[Cell]]] = None
        self.cells: Optional[AsyncIterator[Any]] = None

    async def __aenter__(self) -> AsyncIterator[Any]:
        if self.batches is not None:
            raise RuntimeError("this scan is already in use; call scan() again")
        steps = self.steps
        if self.connection is not None:
            r = await self.connection.__aenter__()
            try:
                namespace, table, spec, limit = self.args
                ns = await r.mns[namespace]
            except BaseException as exc:
                await self.connection.__aexit__(type(exc), exc, None)
                raise
            steps = scan_steps(r.resource, ns, table, spec, limit)
        assert steps is not None
        self.batches = astream(steps)
        self.cells = self.batches if self.batch else _cells(self.batches)
        return self.cells

    async def __aexit__(self, exc_type: Optional[type], exc: Optional[BaseException], tb: object) -> None:
        cells, batches, self.cells, self.batches = self.cells, self.batches, None, None
        try:
            if cells is not None and cells is not batches:
                await cells.aclose()  # type: ignore[attr-defined]
            if batches is not None:
                await batches.aclose()  # type: ignore[attr-defined]
        except BaseException as error:
            if self.connection is not None:
                await self.connection.__aexit__(type(error), error, None)
            raise
        if self.connection is not None:
            await self.connection.__aexit__(exc_type, exc, tb)


def resource_scan(connection: "AsyncConnection", namespace: str, table: str, scan_spec: Optional[ScanSpec],
                  timeout: Optional[float], batch: bool = False) -> ScanBlock:
    """A scan on one connection of ``connection`` (``AsyncResources.scan``, ``AsyncShards.scan``)."""
    limit = None if timeout is None else seconds("timeout", timeout)
    return ScanBlock(None, connection, namespace, table, scan_spec, limit, batch)


def replicas_scan(replicas: "Replicas", table: str, scan_spec: Optional[ScanSpec], namespace: Optional[str],
                  host: Optional[HostLike], timeout: Optional[float]) -> ScanBlock:
    """The resumable scan of ``AsyncReplicas.scan`` (``Replicas.scan_steps`` on the loop)."""
    return ScanBlock(replicas.scan_steps(table, scan_spec, namespace, host, timeout))
