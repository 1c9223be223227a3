"""The link between brokers and the storage process of a data file: where it listens, and its messages.

A data file ``FILE`` is served by one storage process listening on a Unix
domain socket, ``FILE.storage.sock`` next to it, and holding an exclusive
``flock`` on ``FILE.storage.lock`` for as long as it runs (the lock file stays;
the socket is removed when the process ends).  When the socket's path would
be too long for ``AF_UNIX`` (about 100 bytes), it lives in a private folder of
the temporary directory instead, named after a hash of the data file's real
path, so every broker finds the same one (:func:`storage_paths`).

A message is a 4-byte big-endian length and a pickle that holds only
``None``, booleans, numbers, ``str``, ``bytes``, lists, tuples and dicts: the
reader refuses every class (:func:`decode`), so a message can build nothing
else.  A request is ``(method, args)``; an answer is ``("ok", result)``,
``("error", code, message)`` (a ``ClientException`` to raise),
``("stale", text)`` (the cached table lookup the request carried no longer
holds; nothing was done) or ``("fail", text)`` (the storage could not run
the request).
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import socket
import struct
import tempfile
from pathlib import Path
from typing import Any, NamedTuple, Optional, Union

__all__ = ["DEFAULT_LINGER", "EXIT_BUSY", "MAX_SOCKET_PATH", "PROTOCOL", "StoragePaths", "decode", "encode",
           "recv_message", "send_message", "storage_paths"]

#: Version of the messages; the storage's ``hello`` answer carries it.
PROTOCOL = 1
#: Seconds a storage process keeps running after its last broker disconnected (``--linger``).
DEFAULT_LINGER = 10.0
#: Exit status of a storage process that found another one holding the data file's lock.
EXIT_BUSY = 3
#: Bytes of the longest socket path used next to the data file (Linux allows 107, macOS 103).
MAX_SOCKET_PATH = 100
_HEADER = struct.Struct("!I")
#: Bytes read from a socket at a time.
READ_CHUNK = 1 << 20

PathLike = Union[str, "os.PathLike[str]"]


class StoragePaths(NamedTuple):
    """Where the storage process of one data file is found."""

    data: Path  # the data file's real path
    socket: Path  # the Unix socket it listens on
    lock: Path  # the file it holds an exclusive flock on while it runs
    log: Path  # where a detached storage process writes its log (its standard error)


def storage_paths(data: PathLike) -> StoragePaths:
    """Return the paths of the storage process of data file ``data`` (which need not exist yet).

    :param data: the SQLite file, as any broker names it (relative, through links: the real path counts).
    :returns: the paths; every broker on the same file gets the same ones.
    """
    real = Path(os.path.realpath(data))
    sock = real.with_name(real.name + ".storage.sock")
    if len(os.fsencode(str(sock))) > MAX_SOCKET_PATH:
        digest = hashlib.sha256(os.fsencode(str(real))).hexdigest()[:32]
        sock = _private_dir() / f"{digest}.sock"
    return StoragePaths(real, sock, real.with_name(real.name + ".storage.lock"),
                        real.with_name(real.name + ".storage.log"))


def _private_dir() -> Path:
    """Return this user's folder for storage sockets in the temporary directory (mode 0700)."""
    folder = Path(tempfile.gettempdir(), f"htcluster-{os.getuid()}")
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


class _NoClasses(pickle.Unpickler):
    """An unpickler that builds only the built-in values pickle writes without naming a class."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"storage messages hold no classes; refused {module}.{name}")


def encode(message: Any) -> bytes:
    """Return ``message`` as one framed message (length first).

    :param message: built of ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``,
        ``list``, ``tuple`` and ``dict`` only (a ``NamedTuple`` must be given as a plain tuple).
    """
    body = pickle.dumps(message, protocol=5)
    return _HEADER.pack(len(body)) + body


def decode(body: bytes) -> Any:
    """Return the message held by ``body`` (without its length).

    :raises pickle.UnpicklingError: the body names a class, or is no pickle.
    """
    return _NoClasses(io.BytesIO(body)).load()


def _recv_exactly(sock: socket.socket, size: int) -> Optional[bytearray]:
    """Read exactly ``size`` bytes; ``None`` when the peer closes before the first one.

    :raises EOFError: the peer closed in the middle.
    """
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], min(size - got, READ_CHUNK))
        if n == 0:
            if got == 0:
                return None
            raise EOFError(f"the connection ended {got} bytes into a {size}-byte message")
        got += n
    return buffer


def recv_message(sock: socket.socket) -> Any:
    """Read one whole message from a blocking socket.

    :returns: the message, or ``None`` when the peer closed the connection between messages.
    :raises EOFError: the connection ended in the middle of a message.
    :raises OSError: from the socket (``socket.timeout`` included).
    :raises pickle.UnpicklingError: the message is not one (:func:`decode`).
    """
    header = _recv_exactly(sock, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    body = _recv_exactly(sock, size)
    if body is None:
        raise EOFError(f"the connection ended before a {size}-byte message")
    return decode(bytes(body))


def send_message(sock: socket.socket, message: Any) -> None:
    """Send one whole message on a blocking socket.

    :raises OSError: from the socket.
    """
    sock.sendall(encode(message))
