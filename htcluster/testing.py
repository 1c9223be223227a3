"""Local ThriftBrokers for tests and for trying htcluster without Hypertable.

``LocalBroker`` runs one stand-in broker (``python -m htcluster.broker``) as a
subprocess on a free loopback port; ``LocalCluster`` runs several, over one
shared SQLite file (replicas of one cluster) or one file each (shards).  Both
stop their processes on ``close()``, on leaving a ``with`` block, and at
interpreter exit.  ``FaultProxy`` is a loopback TCP proxy put in front of a
broker to add latency, drop or reset connections, or swallow traffic;
``ManualClock`` is a clock to pass as ``clock=`` to test backoffs without sleeping.

This module is also a pytest plugin (entry point ``htcluster``): the fixtures
``local_broker``, ``broker_address``, ``local_cluster_factory`` and
``fault_proxy_factory`` are available to any project that installs htcluster.
"""
from __future__ import annotations

import atexit
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Iterator, Optional

__all__ = ["FaultProxy", "LocalBroker", "LocalCluster", "ManualClock", "free_port", "wait_for_port"]

#: Seconds a broker gets to start answering before ``start()`` gives up.
START_TIMEOUT = 20.0

_live: "weakref.WeakSet[LocalBroker]" = weakref.WeakSet()


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = START_TIMEOUT,
                  process: Optional[subprocess.Popen] = None) -> None:
    """Block until ``host:port`` accepts a TCP connection.

    :param timeout: seconds to wait at most.
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


class LocalBroker:
    """One stand-in ThriftBroker in a subprocess.

    :param data: SQLite file to serve; ``None`` makes a temporary one that is
        deleted on ``close()``.  Several brokers on one file act as several
        ThriftBrokers in front of one Hypertable cluster.
    :param port: TCP port; ``None`` picks a free one.  It is kept across
        ``restart()`` so clients find the broker again.
    :param host: address to bind, loopback by default.
    :param extra_args: more command-line arguments for ``python -m htcluster.broker``.

    Example::

        with LocalBroker() as broker:
            r = Resource(broker.address)
    """

    def __init__(self, data: "str | os.PathLike[str] | None" = None, port: Optional[int] = None,
                 host: str = "127.0.0.1", extra_args: tuple[str, ...] = (), start: bool = True) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._tmpdir: Optional[tempfile.TemporaryDirectory] = None
        if data is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="htcluster-")
            data = Path(self._tmpdir.name, "broker.sqlite")
        self.data = Path(data)
        self.extra_args = tuple(extra_args)
        self.process: Optional[subprocess.Popen] = None
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
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "htcluster.broker", "--host", self.host,
                "--port", str(self.port), "--data", str(self.data), *self.extra_args]

    def start(self) -> "LocalBroker":
        """Start the process (if it is not running) and wait until it listens."""
        if self.running:
            return self
        self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=None)
        self.paused = False
        try:
            wait_for_port(self.host, self.port, process=self.process)
        except RuntimeError:
            self.kill()
            raise
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop gracefully (SIGTERM), then SIGKILL after ``timeout`` seconds."""
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
            os.kill(self.process.pid, signal.SIGSTOP)  # type: ignore[union-attr]
            self.paused = True

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self.process is not None and self.paused:
            os.kill(self.process.pid, signal.SIGCONT)
            self.paused = False

    def restart(self) -> "LocalBroker":
        """Stop, then start again on the same port and data file."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the broker and remove its temporary data file, if it made one."""
        self.kill()
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

    :param n: number of brokers.
    :param shared_data: ``True``: one SQLite file behind every broker (the
        ``Replicas`` case); ``False``: one file each (the ``Shards`` case).

    ``cluster.hosts`` lists the ``'host:port'`` addresses; ``stop(i)``,
    ``kill(i)``, ``pause(i)``, ``resume(i)`` and ``restart(i)`` act on member ``i``.
    """

    def __init__(self, n: int, shared_data: bool = True, data_dir: "str | os.PathLike[str] | None" = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        if n < 1:
            raise ValueError(f"a LocalCluster needs at least one broker, got n={n}")
        self._tmpdir: Optional[tempfile.TemporaryDirectory] = None
        if data_dir is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="htcluster-cluster-")
            data_dir = self._tmpdir.name
        self.data_dir = Path(data_dir)
        self.shared_data = shared_data
        self.brokers: list[LocalBroker] = []
        try:
            for i in range(n):
                name = "cluster.sqlite" if shared_data else f"broker{i}.sqlite"
                self.brokers.append(LocalBroker(self.data_dir / name, extra_args=extra_args, start=False))
            for broker in self.brokers:  # start them all, then wait for them all
                broker.process = subprocess.Popen(broker.command(), stdin=subprocess.DEVNULL,
                                                  stdout=subprocess.DEVNULL, stderr=None)
            for broker in self.brokers:
                wait_for_port(broker.host, broker.port, process=broker.process)
        except BaseException:
            self.close()
            raise

    @property
    def hosts(self) -> list[str]:
        return [broker.address for broker in self.brokers]

    def __len__(self) -> int:
        return len(self.brokers)

    def __getitem__(self, i: int) -> LocalBroker:
        return self.brokers[i]

    def __iter__(self) -> Iterator[LocalBroker]:
        return iter(self.brokers)

    def stop(self, i: int) -> None:
        self.brokers[i].stop()

    def kill(self, i: int) -> None:
        self.brokers[i].kill()

    def pause(self, i: int) -> None:
        self.brokers[i].pause()

    def resume(self, i: int) -> None:
        self.brokers[i].resume()

    def restart(self, i: int) -> None:
        self.brokers[i].restart()

    def start(self, i: int) -> None:
        self.brokers[i].start()

    def close(self) -> None:
        for broker in self.brokers:
            broker.close()
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


class ManualClock:
    """A clock that moves only when told: pass it as ``clock=`` to test backoffs without sleeping.

    :param now: the starting time, in seconds.
    """

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        """Return the current time in seconds."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.now += seconds


class FaultProxy:
    """A loopback TCP proxy in front of a broker that injects network faults.

    Clients connect to ``proxy.address`` instead of the broker.  Each accepted
    connection opens one to ``target`` and two daemon threads copy bytes both
    ways, each chunk delayed by ``latency``.  The proxy stops by itself after
    ``lifetime`` seconds and refuses connections beyond ``max_connections``.

    :param target: ``'host:port'`` of the broker.
    :param latency: seconds added to every forwarded chunk, in each direction
        (a request/answer round trip costs about twice this).
    :param max_connections: connections held at once; more are closed at accept.
    :param lifetime: seconds after which the proxy closes itself.

    Example::

        with FaultProxy(broker.address, latency=0.02) as proxy:
            r = Resource(proxy.address)
            proxy.reset()            # every open connection gets an RST
            proxy.blackhole()        # bytes vanish: calls time out
    """

    POLL = 0.1  #: seconds between checks of the stop flag by blocked threads
    CHUNK = 65536

    def __init__(self, target: str, latency: float = 0.0, host: str = "127.0.0.1", port: Optional[int] = None,
                 max_connections: int = 64, lifetime: float = 600.0) -> None:
        target_host, _, target_port = target.rpartition(":")
        self.target = (target_host.strip("[]"), int(target_port))
        self.latency = latency
        self.max_connections = max_connections
        self._blackholed = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port or 0))
        self._listener.listen(64)
        self._listener.settimeout(self.POLL)
        self.host, self.port = self._listener.getsockname()[:2]
        self._deadline = time.monotonic() + lifetime
        threading.Thread(target=self._accept_loop, name=f"FaultProxy-{self.port}", daemon=True).start()

    @property
    def address(self) -> str:
        """``'host:port'`` clients connect to."""
        return f"{self.host}:{self.port}"

    @property
    def connections(self) -> int:
        """Number of connections currently proxied."""
        with self._lock:
            return len(self._pairs)

    def blackhole(self, on: bool = True) -> None:
        """Swallow every byte in both directions while ``on`` (connections stay open, calls hang)."""
        self._blackholed = on

    def drop(self) -> None:
        """Close every open connection in an orderly way (the peers read end-of-file)."""
        self._close_all(abort=False)

    def reset(self) -> None:
        """Abort every open connection: both peers get a TCP reset."""
        self._close_all(abort=True)

    def close(self) -> None:
        """Stop accepting and reset every connection; idempotent."""
        self._stop.set()
        self._close_all(abort=True)
        self._listener.close()

    def _close_all(self, abort: bool) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, set()
        for pair in pairs:
            for sock in pair:
                _close_socket(sock, abort)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            if time.monotonic() > self._deadline:
                self.close()
                return
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return  # closed
            if self.connections >= self.max_connections:
                _close_socket(client, abort=True)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5.0)
            except OSError:
                _close_socket(client, abort=True)  # the broker is down: the client sees a reset
                continue
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
            for src, dst in (pair, pair[::-1]):
                src.settimeout(self.POLL)
                threading.Thread(target=self._pump, args=(src, dst, pair), daemon=True,
                                 name=f"FaultProxy-{self.port}-pump").start()

    def _pump(self, src: socket.socket, dst: socket.socket, pair: tuple[socket.socket, socket.socket]) -> None:
        try:
            while not self._stop.is_set():
                try:
                    data = src.recv(self.CHUNK)
                except socket.timeout:
                    continue
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                if self._blackholed:
                    continue
                if self.latency > 0 and self._stop.wait(self.latency):
                    return
                self._send_all(dst, data)
        except OSError:
            pass  # closed by drop()/reset()/close(), or by a peer
        finally:
            with self._lock:
                self._pairs.discard(pair)
            _close_socket(src, abort=False)

    def _send_all(self, dst: socket.socket, data: bytes) -> None:
        view = memoryview(data)
        while view and not self._stop.is_set():
            try:
                view = view[dst.send(view):]
            except socket.timeout:  # the peer reads slowly: keep trying until stopped
                continue

    def __enter__(self) -> "FaultProxy":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "blackhole" if self._blackholed else f"latency={self.latency}s"
        return f"<FaultProxy {self.address} -> {self.target[0]}:{self.target[1]} {mode}, {self.connections} connections>"


def _close_socket(sock: socket.socket, abort: bool) -> None:
    """Close ``sock``; with ``abort`` the peer gets an RST instead of end-of-file."""
    try:
        if abort:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


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

    def pytest_addoption(parser) -> None:
        parser.addoption("--broker", action="store", default=None,
                         help="run htcluster's broker tests against this ThriftBroker "
                              "(host:port) instead of a local stand-in")

    @pytest.fixture(scope="session")
    def local_broker(request) -> Iterator[LocalBroker]:
        """A stand-in broker for the whole session (its own temporary data file)."""
        with LocalBroker() as broker:
            yield broker

    @pytest.fixture(scope="session")
    def broker_address(request, local_broker) -> str:
        """``'host:port'`` of the broker under test: ``--broker`` if given, else ``local_broker``."""
        return request.config.getoption("--broker") or local_broker.address

    @pytest.fixture
    def local_cluster_factory() -> Iterator:
        """Call ``local_cluster_factory(n, shared_data=...)``; every cluster made is closed after the test."""
        made: list[LocalCluster] = []

        def make(n: int, shared_data: bool = True, **kwargs) -> LocalCluster:
            cluster = LocalCluster(n, shared_data=shared_data, **kwargs)
            made.append(cluster)
            return cluster

        yield make
        for cluster in made:
            cluster.close()

    @pytest.fixture
    def fault_proxy_factory() -> Iterator:
        """Call ``fault_proxy_factory(address, latency=...)``; every proxy made is closed after the test."""
        made: list[FaultProxy] = []

        def make(target: str, **kwargs) -> FaultProxy:
            proxy = FaultProxy(target, **kwargs)
            made.append(proxy)
            return proxy

        yield make
        for proxy in made:
            proxy.close()
