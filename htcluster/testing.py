"""Local ThriftBrokers for tests and for trying htcluster without Hypertable.

``LocalBroker`` runs one stand-in broker (``python -m htcluster.broker``) as a
subprocess on a free loopback port; ``LocalCluster`` runs several, over one
shared SQLite file (replicas of one cluster) or one file each (shards).  Both
stop their processes on ``close()``, on leaving a ``with`` block, and at
interpreter exit.  ``FaultProxy`` (a loopback TCP proxy that adds latency,
drops, resets or swallows traffic) and ``ManualClock`` (a clock that moves
only when told) come from :mod:`htcluster.faults` and are re-exported here.

This module is also a pytest plugin (entry point ``htcluster``): the fixtures
``local_broker``, ``broker_address``, ``local_cluster``, ``local_cluster_factory``,
``fault_proxy_factory`` and ``misbehaving_broker_factory`` are available to any
project that installs htcluster.  With pytest-asyncio installed, so are the
async fixtures over the same brokers, for :mod:`htcluster.aio`:
``async_pool``, ``async_replicas``, ``async_pool_factory`` and
``async_replicas_factory`` (declared with ``@pytest_asyncio.fixture``, so
they work in pytest-asyncio's strict mode).
"""
from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator, Optional, TypeVar

from .errors import ConfigError
from .faults import FaultProxy, ManualClock, MisbehavingBroker

__all__ = ["FaultProxy", "LocalBroker", "LocalCluster", "ManualClock", "MisbehavingBroker", "free_port",
           "wait_for_port"]

#: Seconds a broker gets to start answering before ``start()`` gives up.
START_TIMEOUT = 20.0

_live: "weakref.WeakSet[LocalBroker]" = weakref.WeakSet()
T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nothing listens on right now.

    :param host: an IPv4 address.
    :returns: the port number.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout: float = START_TIMEOUT,
                  process: Optional[subprocess.Popen[bytes]] = None) -> None:
    """Block until ``host:port`` accepts a TCP connection.

    :param host: IP address or name.
    :param port: TCP port.
    :param timeout: seconds to wait at most.
    :param process: the broker's process: its exit ends the wait at once.
    :raises RuntimeError: ``process`` exited first, or the timeout passed.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"broker on {host}:{port} exited with code {process.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listened on {host}:{port} within {timeout} s") from None
            time.sleep(0.02)


def _wait_stopped(pid: int, timeout: float = 5.0) -> None:
    """Return once process ``pid`` is really stopped: SIGSTOP is delivered asynchronously.

    :raises RuntimeError: it is still running after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, wpid_status = os.waitpid(pid, os.WNOHANG | os.WUNTRACED)
        except ChildProcessError:  # not our child, or already reaped
            return
        if wpid_status and os.WIFSTOPPED(wpid_status):
            return
        time.sleep(0.005)
    raise RuntimeError(f"process {pid} did not stop within {timeout} s of SIGSTOP")


class LocalBroker:
    """One stand-in ThriftBroker in a subprocess.

    :param data: SQLite file to serve; ``None`` makes a temporary one that is
        deleted on ``close()``.  Several brokers on one file act as several
        ThriftBrokers in front of one Hypertable cluster.
    :param port: TCP port; ``None`` picks a free one.  It is kept across
        ``restart()`` so clients find the broker again.
    :param host: address to bind, loopback by default.
    :param extra_args: more command-line arguments for ``python -m htcluster.broker``.
    :param start: start the broker now (otherwise call :meth:`start`).
    :param tls_cert: PEM file of the broker's certificate: serve TLS only
        (``--tls-cert``); ``None``: plaintext.
    :param tls_key: PEM file of its private key (``--tls-key``), when not in ``tls_cert``.
    :param tls_client_ca: PEM file of the CA whose client certificates are
        required (``--tls-client-ca``).
    :raises RuntimeError: ``start`` is true and the broker did not start.

    Example::

        with LocalBroker() as broker:
            r = Resource(broker.address)
    """

    def __init__(self, data: "str | os.PathLike[str] | None" = None, port: Optional[int] = None,
                 host: str = "127.0.0.1", extra_args: tuple[str, ...] = (), start: bool = True,
                 tls_cert: "str | os.PathLike[str] | None" = None, tls_key: "str | os.PathLike[str] | None" = None,
                 tls_client_ca: "str | os.PathLike[str] | None" = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._tmpdir: Optional[tempfile.TemporaryDirectory[str]] = None
        if data is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="htcluster-")
            data = Path(self._tmpdir.name, "broker.sqlite")
        self.data = Path(data)
        #: The storage process of this broker's own temporary data file, started and stopped with it
        #: (brokers on a file given to them share that file's storage: htcluster.broker.storage).
        self.storage: Any = None
        if self._tmpdir is not None:
            from .broker.storage_client import StorageProcess
            self.storage = StorageProcess(self.data)
        tls = (("--tls-cert", tls_cert), ("--tls-key", tls_key), ("--tls-client-ca", tls_client_ca))
        self.extra_args = tuple(extra_args) + tuple(arg for flag, path in tls if path is not None
                                                    for arg in (flag, os.fspath(path)))
        #: True when the broker serves TLS (``tls_cert`` given).
        self.tls = tls_cert is not None
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.paused = False
        _live.add(self)
        if start:
            self.start()

    @property
    def address(self) -> str:
        """``'host:port'``, as every htcluster host argument takes it."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the broker process exists and has not exited (also when paused)."""
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        """Return the command line that runs this broker."""
        return [sys.executable, "-m", "htcluster.broker", "--host", self.host,
                "--port", str(self.port), "--data", str(self.data), *self.extra_args]

    def spawn(self) -> None:
        """Start the process if it is not running, without waiting for it to listen (see :meth:`wait`)."""
        if not self.running:
            if self.storage is not None:
                self.storage.start()
            self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=None)
            self.paused = False

    def wait(self, timeout: float = START_TIMEOUT) -> None:
        """Block until the broker listens; kill it if it does not.

        :param timeout: seconds to wait at most.
        :raises RuntimeError: the process exited, or did not listen within ``timeout``.
        """
        try:
            wait_for_port(self.host, self.port, timeout, process=self.process)
        except RuntimeError:
            self.kill()
            raise

    def start(self) -> "LocalBroker":
        """Start the process (if it is not running) and wait until it listens.

        :returns: this broker.
        :raises RuntimeError: it exited, or did not listen within :data:`START_TIMEOUT` seconds.
        """
        self.spawn()
        self.wait()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop gracefully (SIGTERM), then SIGKILL after ``timeout`` seconds (float)."""
        if self.process is None:
            return
        if self.paused:
            self.resume()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL the process, as a crash would, and reap it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process = None
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP: the socket stays open but nothing answers (a hung broker)."""
        if self.running:
            pid = self.process.pid  # type: ignore[union-attr]
            os.kill(pid, signal.SIGSTOP)
            self.paused = True
            _wait_stopped(pid)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self.process is not None and self.paused:
            os.kill(self.process.pid, signal.SIGCONT)
            self.paused = False

    def restart(self) -> "LocalBroker":
        """Stop, then start again on the same port and data file.

        :returns: this broker.
        :raises RuntimeError: it did not come back (see :meth:`start`).
        """
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the broker (and its storage process, if it has one) and remove its temporary data file."""
        self.kill()
        if self.storage is not None:
            self.storage.stop()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> "LocalBroker":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "paused" if self.paused else "running" if self.running else "stopped"
        return f"<LocalBroker {self.address} {state} data={self.data}>"


class LocalCluster:
    """``n`` local brokers.

    :param n: number of brokers, >= 1.
    :param shared_data: ``True``: one SQLite file behind every broker (the
        ``Replicas`` case); ``False``: one file each (the ``Shards`` case).
    :param data_dir: folder of the SQLite files; ``None``: a temporary one,
        deleted on ``close()``.
    :param extra_args: more command-line arguments for every broker.
    :param base_port: member ``i`` listens on ``base_port + i``; ``None``: free ports.
    :param tls: keyword arguments of :class:`LocalBroker` for TLS (``tls_cert``,
        ``tls_key``, ``tls_client_ca``), the same for every member.
    :raises ConfigError: ``n`` < 1.
    :raises RuntimeError: a broker did not start (the others are stopped).

    Each data file is served by one storage process (``cluster.storages``), started
    before the brokers and stopped by ``close()``; the brokers are stateless front
    ends of it, so a stopped or killed broker never blocks the others.  ``stop``,
    ``kill`` and ``pause`` act on brokers only, never on a storage process.

    ``cluster.hosts`` lists the ``'host:port'`` addresses; ``stop(i)``,
    ``kill(i)``, ``pause(i)``, ``resume(i)``, ``restart(i)`` and ``start(i)``
    act on member ``i`` (see :class:`LocalBroker`).

    Example::

        with LocalCluster(3) as cluster:
            replicas = Replicas(cluster.hosts)
            cluster.kill(0)
    """

    def __init__(self, n: int, shared_data: bool = True, data_dir: "str | os.PathLike[str] | None" = None,
                 extra_args: tuple[str, ...] = (), base_port: Optional[int] = None,
                 **tls: "str | os.PathLike[str] | None") -> None:
        if n < 1:
            raise ConfigError(f"a LocalCluster needs at least one broker, got n={n}")
        self._tmpdir: Optional[tempfile.TemporaryDirectory[str]] = None
        if data_dir is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="htcluster-cluster-")
            data_dir = self._tmpdir.name
        self.data_dir = Path(data_dir)
        self.shared_data = shared_data
        self.brokers: list[LocalBroker] = []
        self.storages: list[Any] = []
        try:
            for i in range(n):
                name = "cluster.sqlite" if shared_data else f"broker{i}.sqlite"
                port = None if base_port is None else base_port + i
                self.brokers.append(LocalBroker(self.data_dir / name, port=port, extra_args=extra_args, start=False,
                                                **tls))  # type: ignore[arg-type]
            from .broker.storage_client import StorageProcess
            for path in dict.fromkeys(broker.data for broker in self.brokers):
                self.storages.append(StorageProcess(path).start())
            for broker in self.brokers:  # start them all, then wait for them all
                broker.spawn()
            for broker in self.brokers:
                broker.wait()
        except BaseException:
            self.close()
            raise

    @property
    def hosts(self) -> list[str]:
        """The ``'host:port'`` of every member, in order."""
        return [broker.address for broker in self.brokers]

    def __len__(self) -> int:
        return len(self.brokers)

    def __getitem__(self, i: int) -> LocalBroker:
        return self.brokers[i]

    def __iter__(self) -> Iterator[LocalBroker]:
        return iter(self.brokers)

    def stop(self, i: int) -> None:
        """Stop member ``i`` gracefully (:meth:`LocalBroker.stop`)."""
        self.brokers[i].stop()

    def kill(self, i: int) -> None:
        """SIGKILL member ``i``, as a crash would."""
        self.brokers[i].kill()

    def pause(self, i: int) -> None:
        """SIGSTOP member ``i``: it keeps its socket but answers nothing."""
        self.brokers[i].pause()

    def resume(self, i: int) -> None:
        """SIGCONT member ``i`` after :meth:`pause`."""
        self.brokers[i].resume()

    def restart(self, i: int) -> None:
        """Stop member ``i`` and start it again on the same port and data."""
        self.brokers[i].restart()

    def start(self, i: int) -> None:
        """Start member ``i`` again after ``stop`` or ``kill`` (same port and data)."""
        self.brokers[i].start()

    def close(self) -> None:
        """Kill every member and remove the temporary folder, if one was made."""
        for broker in self.brokers:
            broker.close()
        for storage in self.storages:
            storage.stop()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> "LocalCluster":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "shared" if self.shared_data else "separate"
        return f"<LocalCluster {len(self.brokers)} brokers, {kind} data: {', '.join(self.hosts)}>"


@atexit.register
def _reap() -> None:
    for broker in list(_live):
        try:
            broker.kill()
        except Exception:  # pragma: no cover - best effort at exit
            pass


# ---------------------------------------------------------------- pytest plugin

try:
    import pytest
except ImportError:  # pragma: no cover - pytest is a test extra
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    def pytest_addoption(parser: pytest.Parser) -> None:
        """Add ``--htcluster-broker host:port``: point ``broker_address`` at a real ThriftBroker.

        The plugin loads in every project that installs htcluster, so its options carry the
        ``htcluster-`` prefix and it imports nothing beyond htcluster's own requirements.
        """
        group = parser.getgroup("htcluster", "htcluster (local stand-in ThriftBrokers)")
        group.addoption("--htcluster-broker", action="store", default=None, metavar="HOST:PORT",
                        help="the ThriftBroker the broker_address fixture gives (host:port) "
                             "instead of a local stand-in")

    @pytest.fixture(scope="session")
    def local_broker() -> Iterator[LocalBroker]:
        """A stand-in broker for the whole session (its own temporary data file)."""
        with LocalBroker() as broker:
            yield broker

    @pytest.fixture(scope="session")
    def broker_address(request: pytest.FixtureRequest) -> str:
        """``'host:port'`` of the broker under test: ``--htcluster-broker`` if given, else ``local_broker``'s.

        With the option given, no local broker is started.
        """
        given: Optional[str] = request.config.getoption("--htcluster-broker")
        if given:
            return given
        local: LocalBroker = request.getfixturevalue("local_broker")
        return local.address

    def _closed_after(cls: Callable[..., T]) -> Iterator[Callable[..., T]]:
        """Yield a function that makes ``cls(...)`` objects; close every one made once the test ends."""
        made: list[T] = []

        def make(*args: Any, **kwargs: Any) -> T:
            made.append(cls(*args, **kwargs))
            return made[-1]

        yield make
        for obj in made:
            obj.close()  # type: ignore[attr-defined]

    @pytest.fixture
    def local_cluster_factory() -> Iterator[Callable[..., LocalCluster]]:
        """Call ``local_cluster_factory(n, shared_data=...)``; every cluster made is closed after the test."""
        yield from _closed_after(LocalCluster)

    @pytest.fixture
    def fault_proxy_factory() -> Iterator[Callable[..., FaultProxy]]:
        """Call ``fault_proxy_factory(address, latency=...)``; every proxy made is closed after the test."""
        yield from _closed_after(FaultProxy)

    @pytest.fixture
    def misbehaving_broker_factory() -> Iterator[Callable[..., MisbehavingBroker]]:
        """Call ``misbehaving_broker_factory(mode, upstream=None)``; every server made is closed after the test."""
        yield from _closed_after(MisbehavingBroker)

    @pytest.fixture
    def local_cluster(local_cluster_factory: Callable[..., LocalCluster]) -> LocalCluster:
        """Three stand-in brokers in front of one data file (replicas), for this test; stopped after it.

        A test that takes both ``local_cluster`` and ``async_replicas`` gets the
        replicas of this very cluster, so it can ``local_cluster.kill(0)`` under them.
        """
        return local_cluster_factory(3, shared_data=True)


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - pytest-asyncio is a test extra
    pytest_asyncio = None  # type: ignore[assignment]


async def aclose_all(made: list[Any]) -> None:
    """Close every ``htcluster.aio`` object of ``made`` as ``async with`` does on the way out, the last made first.

    Every one is closed even when one fails; the first failure is raised after.
    """
    errors: list[BaseException] = []
    for obj in reversed(made):
        try:
            await obj.__aexit__(None, None, None)
        except Exception as exc:  # close the others anyway
            errors.append(exc)
    made.clear()
    if errors:
        raise errors[0]


def _aio_factory(cls_name: str, made: list[Any]) -> Callable[..., Any]:
    """Return ``make(*args, **options)``: a new ``htcluster.aio.<cls_name>``, remembered in ``made``."""

    def make(*args: Any, **options: Any) -> Any:
        from . import aio  # imported when a test asks for it, not when the plugin loads

        obj = getattr(aio, cls_name)(*args, **options)
        made.append(obj)
        return obj

    return make


if pytest is not None and pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def async_pool_factory() -> AsyncIterator[Callable[..., Any]]:
        """Call ``async_pool_factory(address, **options)`` for an ``htcluster.aio.AsyncPool``; closed after the test.

        The pools bind to the test's event loop on first use and are closed
        in that loop after the test, as ``async with`` closes them.  Give it the address of any
        fixture's server: ``local_broker``, ``fault_proxy_factory(...)``,
        ``misbehaving_broker_factory(mode)`` (e.g. ``socket_timeout=0.5`` against
        a ``'silent'`` one).
        """
        made: list[Any] = []
        yield _aio_factory("AsyncPool", made)
        await aclose_all(made)

    @pytest_asyncio.fixture
    async def async_replicas_factory() -> AsyncIterator[Callable[..., Any]]:
        """Call ``async_replicas_factory(hosts, **options)`` for an ``htcluster.aio.AsyncReplicas``; closed after it."""
        made: list[Any] = []
        yield _aio_factory("AsyncReplicas", made)
        await aclose_all(made)

    @pytest_asyncio.fixture
    async def async_pool(broker_address: str, async_pool_factory: Callable[..., Any]) -> Any:
        """An ``htcluster.aio.AsyncPool`` of ``broker_address`` (the session's broker, or ``--htcluster-broker``)."""
        return async_pool_factory(broker_address)

    @pytest_asyncio.fixture
    async def async_replicas(local_cluster: LocalCluster, async_replicas_factory: Callable[..., Any]) -> Any:
        """An ``htcluster.aio.AsyncReplicas`` over ``local_cluster`` (three brokers, one data file), for this test."""
        return async_replicas_factory(local_cluster.hosts)
