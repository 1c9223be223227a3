"""Fixtures shared by every test module.

The broker fixtures themselves (``local_broker``, ``broker_address``,
``local_cluster_factory``) come from the ``htcluster.testing`` pytest plugin.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest
from thrift.protocol import TBinaryProtocol
from thrift.transport import TSocket, TTransport

from htcluster._thrift import HqlService

#: ../shared/data beside the repository: real input, never copied in.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The ``../shared/data`` folder; the test is skipped when it is absent."""
    if not (SHARED_DATA / "access.log.gz").exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


def open_raw_client(address: str, timeout: float = 10.0) -> HqlService.Client:
    """Open a plain Thrift client (framed, binary) the way upstream's ThriftClient does.

    The transport is reachable as ``client._iprot.trans``; close it with
    ``client._iprot.trans.close()``.
    """
    host, port = address.rsplit(":", 1)
    sock = TSocket.TSocket(host, int(port))
    sock.setTimeout(timeout * 1000)  # TSocket takes milliseconds
    transport = TTransport.TFramedTransport(sock)
    client = HqlService.Client(TBinaryProtocol.TBinaryProtocol(transport))
    transport.open()
    return client


@pytest.fixture
def raw_client_factory() -> Iterator[Callable[[str], HqlService.Client]]:
    """``raw_client_factory('127.0.0.1:PORT')`` -> an open raw client, closed after the test."""
    opened: list[HqlService.Client] = []

    def make(address: str, timeout: float = 10.0) -> HqlService.Client:
        client = open_raw_client(address, timeout)
        opened.append(client)
        return client

    yield make
    for client in opened:
        client._iprot.trans.close()
