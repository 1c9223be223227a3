"""Fixtures shared by every test module.

The session's broker fixtures (``local_broker``, ``broker_address``,
``local_cluster_factory``, ``fault_proxy_factory``) come from the
``htcluster.testing`` pytest plugin.  Here: ``broker`` (one stand-in broker
per test module), ``client`` (a raw Thrift client of it), ``ns_name`` and
``ns`` (a fresh namespace per test), ``raw_client_factory`` and
``shared_data``.  A module may define a fixture of the same name to replace one.

Brokers made here are stopped with SIGTERM (the plugin's own ``local_broker``
and ``local_cluster_factory`` are replaced to that end): a broker that exits
cleanly saves its coverage data, so what the tests make it run counts in the
coverage figure (``brokertest.stop_gracefully``).
"""
from __future__ import annotations

import compileall
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from thrift.protocol import TBinaryProtocol
from thrift.transport import TSocket, TTransport

from brokertest import stop_gracefully

import htcluster
from htcluster._thrift import HqlService
from htcluster.types import ScanSpec
from htcluster.testing import LocalBroker, LocalCluster

#: The package the brokers and CLI subprocesses import (this checkout's).
PACKAGE = Path(htcluster.__file__).resolve().parent

def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile the package to bytecode once, before any broker subprocess starts.

    Every stand-in broker, storage process, CLI run and benchmark the suite
    starts is a fresh interpreter importing ``htcluster``.  Where
    ``PYTHONDONTWRITEBYTECODE`` is set (as on the CI machines), none of them
    writes ``__pycache__``, so each would compile the package from source
    again (1 MB of generated Thrift code alone: about 0.35 s of CPU per
    process, hundreds of processes per run).  ``compileall`` writes the files
    whatever that setting says; interpreters still read them.  An unwritable
    checkout only loses the speed-up.
    """
    compileall.compile_dir(str(PACKAGE), quiet=1)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Hold only a run of the whole suite to the coverage floor (``fail_under`` in setup.cfg).

    A run of a few test files, or one narrowed by ``-k``/``-m``, still reports
    its coverage but cannot fail for covering less than the whole suite does.
    """
    cov = session.config.pluginmanager.getplugin("_cov")
    options = session.config.option
    whole = (session.config.args_source == pytest.Config.ArgsSource.TESTPATHS
             and not options.keyword and not options.markexpr and not options.deselect)
    if cov is not None and not whole:
        cov.options.cov_fail_under = None


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


def scan_all(address: str, namespace: str, table: str) -> list:
    """Every cell of ``table`` in ``namespace``, read with a raw Thrift client's scanner."""
    client = open_raw_client(address)
    try:
        scanner = client.scanner_open(client.namespace_open(namespace), table, ScanSpec())
        cells = []
        while batch := client.scanner_get_cells(scanner):
            cells.extend(batch)
        client.scanner_close(scanner)
        return cells
    finally:
        client._iprot.trans.close()


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


@pytest.fixture(scope="session")
def local_broker() -> Iterator[LocalBroker]:
    """The plugin's session broker (``htcluster.testing``), stopped gracefully at the end."""
    with LocalBroker() as local:
        yield local
        stop_gracefully(local)


@pytest.fixture(scope="module")
def broker() -> Iterator[LocalBroker]:
    """One stand-in broker subprocess for the test module."""
    with LocalBroker() as local:
        yield local
        stop_gracefully(local)


@pytest.fixture
def client(broker: LocalBroker, raw_client_factory: Callable) -> Any:
    """A raw Thrift client of ``broker``."""
    return raw_client_factory(broker.address)


@pytest.fixture
def ns_name(client: Any) -> str:
    """The name of a fresh namespace, unique to the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    client.namespace_create(name)
    return name


@pytest.fixture
def ns(client: Any, ns_name: str) -> int:
    """An id of the test's fresh namespace ``ns_name``."""
    return client.namespace_open(ns_name)


@pytest.fixture
def local_cluster_factory() -> Iterator[Callable[..., LocalCluster]]:
    """The plugin's ``local_cluster_factory(n, shared_data=...)``; its brokers are stopped gracefully after the test."""
    made: list[LocalCluster] = []

    def make(*args: Any, **kwargs: Any) -> LocalCluster:
        made.append(LocalCluster(*args, **kwargs))
        return made[-1]

    yield make
    for cluster in made:
        stop_gracefully(cluster)
        cluster.close()
