"""Fault injection for tests: a misbehaving network and a clock that stands still.

* :class:`FaultProxy`: a loopback TCP proxy in front of a broker that adds
  latency, drops or resets every connection, or swallows all traffic.
* :class:`MisbehavingBroker`: a loopback server that breaks the protocol in
  one chosen way (never answers, closes, garbage, a huge frame, a trickle,
  a stale reply), for the error paths of every client layer.
* :class:`ManualClock`: pass it as ``clock=`` to test backoffs without sleeping.

Both are re-exported by :mod:`htcluster.testing`, whose pytest plugin offers
the ``fault_proxy_factory`` fixture.
"""
from __future__ import annotations

import os
import random
import socket
import struct
import threading
import time
from typing import Optional

from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.Thrift import TMessageType
from thrift.transport.TTransport import TMemoryBuffer

from . import codes
from ._thrift import ClientService, HqlService
from .errors import ClientException
from .hosts import Host, HostLike

__all__ = ["ERROR_MODES", "MISBEHAVIOURS", "FaultProxy", "ManualClock", "MisbehavingBroker", "error_reply"]


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
        """Move the clock forward by ``seconds`` (float, >= 0)."""
        self.now += seconds


class FaultProxy:
    """A loopback TCP proxy in front of a broker that injects network faults.

    Clients connect to ``proxy.address`` instead of the broker.  Each accepted
    connection opens one to ``target`` and two daemon threads copy bytes both
    ways, each chunk delayed by ``latency``.  The proxy stops by itself after
    ``lifetime`` seconds and refuses connections beyond ``max_connections``.

    :param target: the broker, ``'host[:port]'`` or a :class:`~htcluster.hosts.Host`.
    :param latency: seconds added to every forwarded chunk, in each direction
        (a request/answer round trip costs about twice this).
    :param host: the address to listen on (loopback by default).
    :param port: the port to listen on; ``None``: a free one.
    :param max_connections: connections held at once; more are closed at accept.
    :param lifetime: seconds after which the proxy closes itself.
    :param spike: seconds added, on top of ``latency``, to a share ``spike_rate`` of the
        chunks sent towards the broker (a gray failure: most calls fast, some very slow).
    :param spike_rate: the share (0 to 1) of those chunks that get ``spike``.
    :param seed: seed of the random draw of the spikes (``None``: unseeded).
    :raises ConfigError: ``target`` is malformed.
    :raises OSError: ``host:port`` cannot be bound.

    Example::

        with FaultProxy(broker.address, latency=0.02) as proxy:
            r = Resource(proxy.address)
            proxy.reset()            # every open connection gets an RST
            proxy.blackhole()        # bytes vanish: calls time out

        FaultProxy(broker.address, spike=0.2, spike_rate=0.1)   # +200 ms on 10 % of the requests
    """

    POLL = 0.1  #: seconds between checks of the stop flag by blocked threads
    CHUNK = 65536

    def __init__(self, target: HostLike, latency: float = 0.0, host: str = "127.0.0.1", port: Optional[int] = None,
                 max_connections: int = 64, lifetime: float = 600.0, spike: float = 0.0,
                 spike_rate: float = 0.0, seed: Optional[int] = None) -> None:
        self.target = Host.parse(target)
        self.latency = latency
        self.spike, self.spike_rate = spike, spike_rate
        self._spikes = random.Random(seed)
        self.max_connections = max_connections
        self._blackholed = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pairs: dict[tuple[socket.socket, socket.socket], int] = {}  # pair -> pumps still running
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
        """Swallow every byte in both directions while ``on`` (connections stay open, calls hang).

        :param on: ``False`` forwards traffic again.
        """
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
            pairs, self._pairs = self._pairs, {}
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
                self._pairs[pair] = 2
            for src, dst in (pair, pair[::-1]):
                src.settimeout(self.POLL)
                threading.Thread(target=self._pump, args=(src, dst, pair, src is client), daemon=True,
                                 name=f"FaultProxy-{self.port}-pump").start()

    def _pump(self, src: socket.socket, dst: socket.socket, pair: tuple[socket.socket, socket.socket],
              upstream: bool = False) -> None:
        """Copy ``src`` to ``dst``; pass an end-of-file on, and a failure to both peers.

        :param upstream: ``src`` is the client (chunks towards the broker may get a spike).
        """
        broken = False
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
                delay = self.latency
                if upstream and self.spike_rate > 0 and self._spikes.random() < self.spike_rate:
                    delay += self.spike
                if delay > 0 and self._stop.wait(delay):
                    return
                self._send_all(dst, data)
        except OSError:  # a reset, or closed by drop()/reset()/close()
            broken = True
        finally:
            with self._lock:
                left = self._pairs.get(pair, 1) - 1
                if left > 0 and not broken:
                    self._pairs[pair] = left
                else:
                    self._pairs.pop(pair, None)
            if left <= 0 or broken:  # the last pump of the pair, or a failure nobody must wait on
                for sock in pair:
                    _close_socket(sock, abort=broken)

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
        return f"<FaultProxy {self.address} -> {self.target} {mode}, {self.connections} connections>"


#: What a :class:`MisbehavingBroker` can do, and how it looks to a client.
MISBEHAVIOURS = {
    "silent": "accepts and reads, never answers (a hung broker)",
    "close": "closes every connection as soon as it is accepted",
    "garbage": "answers a request with bytes that are not a frame",
    "framed_garbage": "answers a request with a well-framed frame of random bytes",
    "huge_frame": "answers with a 2 GiB frame header, then one byte per delay",
    "trickle": "forwards the real broker's answer one byte per delay (a slow but correct broker)",
    "stale": "forwards the real answer, then sends it once more (an extra, stale reply)",
    "double": "forwards the real answer with a second copy of it inside the same frame",
}

#: What a :class:`MisbehavingBroker` can answer instead of misbehaving: well-formed broker errors.
ERROR_MODES = {
    "error": "answers every request with ClientException(code) (e.g. a broker that cannot reach its cluster)",
}


class MisbehavingBroker:
    """A loopback server that misbehaves in one way, for testing every client error path.

    :param mode: one of :data:`MISBEHAVIOURS`, or of :data:`ERROR_MODES` (a broker error as every answer).
    :param upstream: the real broker the ``trickle``, ``stale`` and ``double``
        modes forward to (``'host:port'``).
    :param delay: seconds between bytes in the ``trickle`` and ``huge_frame`` modes.
    :param lifetime: seconds after which it closes itself (tests must end).
    :param code: the ``ClientException.code`` of the ``error`` mode (``REQUEST_TIMEOUT`` by default;
        :mod:`htcluster.codes`).
    :raises ValueError: unknown ``mode``, or a forwarding mode without ``upstream``.

    Example::

        with MisbehavingBroker("silent") as bad:
            Resource(bad.address, socket_timeout=0.5).status()   # BrokerUnavailable: timed out
    """

    def __init__(self, mode: str, upstream: Optional[HostLike] = None, delay: float = 0.1,
                 lifetime: float = 120.0, code: int = codes.REQUEST_TIMEOUT) -> None:
        if mode not in MISBEHAVIOURS and mode not in ERROR_MODES:
            raise ValueError(f"mode must be one of {sorted({**MISBEHAVIOURS, **ERROR_MODES})}, got {mode!r}")
        if mode in ("trickle", "stale", "double") and upstream is None:
            raise ValueError(f"mode {mode!r} forwards to a real broker: give upstream='host:port'")
        self.mode, self.delay, self.code = mode, delay, code
        #: Requests answered so far (every mode that reads them).
        self.requests = 0
        self.upstream = None if upstream is None else Host.parse(upstream)
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(FaultProxy.POLL)
        self.port = self._listener.getsockname()[1]
        self._deadline = time.monotonic() + lifetime
        threading.Thread(target=self._accept_loop, name=f"Misbehaving-{mode}", daemon=True).start()

    @property
    def address(self) -> str:
        """``'127.0.0.1:port'`` clients connect to."""
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop and close every connection; idempotent."""
        self._stop.set()
        with self._lock:
            socks, self._socks = self._socks, []
        for sock in socks:
            _close_socket(sock, abort=False)
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if self.mode == "close":
                _close_socket(client, abort=False)
                continue
            client.settimeout(FaultProxy.POLL)
            with self._lock:
                self._socks.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()
        self.close()

    def _read_frame(self, sock: socket.socket) -> Optional[bytes]:
        """Read one whole frame (header included); ``None`` at end-of-file or stop."""
        data = b""
        while not self._stop.is_set():
            if len(data) >= 4 and len(data) >= 4 + struct.unpack("!i", data[:4])[0]:
                return data  # one request at a time: a client never pipelines
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                return None
            data += chunk
        return None

    def _serve(self, client: socket.socket) -> None:
        upstream: Optional[socket.socket] = None
        try:
            if self.upstream is not None:
                upstream = socket.create_connection(self.upstream, timeout=30.0)
            while not self._stop.is_set():
                request = self._read_frame(client)
                if request is None:
                    return
                self.requests += 1
                if self.mode == "silent":
                    continue
                if self.mode == "error":
                    client.sendall(error_reply(request, self.code))
                    continue
                if self.mode == "garbage":
                    client.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\nthis is not a Thrift frame")
                elif self.mode == "framed_garbage":
                    junk = os.urandom(64)
                    client.sendall(struct.pack("!i", len(junk)) + junk)
                elif self.mode == "huge_frame":
                    self._trickle(client, struct.pack("!i", 0x7FFFFFFF) + b"\x80" * 64)
                else:
                    assert upstream is not None
                    upstream.sendall(request)
                    reply = self._read_frame(upstream)
                    if reply is None:
                        return
                    if self.mode == "trickle":
                        self._trickle(client, reply)
                    elif self.mode == "stale":
                        client.sendall(reply + reply)
                    else:  # double: both copies inside one frame
                        body = reply[4:] * 2
                        client.sendall(struct.pack("!i", len(body)) + body)
        except OSError:
            return
        finally:
            _close_socket(client, abort=False)
            if upstream is not None:
                upstream.close()

    def _trickle(self, sock: socket.socket, data: bytes) -> None:
        for i in range(len(data)):
            if self._stop.wait(self.delay):
                return
            sock.sendall(data[i:i + 1])

    def __enter__(self) -> "MisbehavingBroker":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<MisbehavingBroker {self.address} {self.mode}>"


def error_reply(request: bytes, code: int) -> bytes:
    """Return the frame answering the request frame ``request`` with ``ClientException(code)``.

    :param request: one whole request frame (its 4-byte length first).
    :param code: the error code (:mod:`htcluster.codes`); the message is its text and ``"(injected)"``.
    :returns: the reply frame, as a broker would send it.
    """
    name, _, seqid = TBinaryProtocol(TMemoryBuffer(request[4:])).readMessageBegin()
    result = getattr(HqlService, f"{name}_result", None) or getattr(ClientService, f"{name}_result")
    out = TMemoryBuffer()
    protocol = TBinaryProtocol(out)
    protocol.writeMessageBegin(name, TMessageType.REPLY, seqid)
    result(e=ClientException(code=code, message=f"{codes.text(code)} - (injected)")).write(protocol)
    protocol.writeMessageEnd()
    body: bytes = out.getvalue()
    return struct.pack("!i", len(body)) + body


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
