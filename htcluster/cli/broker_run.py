"""Run the stand-in broker for ``htcluster broker``: bind first, then say where.

:func:`serve_broker` starts a :class:`~htcluster.broker.BrokerServer`, calls
back with the address it actually bound (so ``--port 0`` reports the real
port, and a port in use reports only the error), and serves until SIGTERM or
SIGINT.  :func:`write_port_file` and :func:`remove_port_file` keep
``--port-file`` honest: it is written atomically once the port listens, and
removed at exit only if it still names this broker's port.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional

__all__ = ["remove_port_file", "serve_broker", "write_port_file"]

#: Called once listening with ``(address 'host:port', port)``.
Started = Callable[[str, int], None]

_written: dict[Path, int] = {}


def serve_broker(host: str, port: int, data: Optional[Path], started: Started, **options: Any) -> None:
    """Bind ``host:port``, call ``started(address, port)``, then serve until SIGTERM/SIGINT.

    The broker's own :func:`~htcluster.broker.server.serve` does it all (its
    graceful stop and signal handling included); ``started`` is its ``on_start``.

    :param host: address to listen on.
    :param port: TCP port; 0 picks a free one (reported to ``started``).
    :param data: SQLite file, or ``None`` for a temporary one.
    :param started: see :data:`Started`.
    :param options: :func:`~htcluster.broker.server.serve` options (``busy_timeout``, ``files``, ``limits``).
    :raises OSError: the address cannot be bound.
    :raises sqlite3.Error: the data file cannot be used.
    """
    from ..broker.server import serve

    serve(host, port, data, on_start=lambda server: started(server.address, server.port), **options)


def write_port_file(path: Path, port: int) -> None:
    """Write ``port`` and a newline to ``path`` atomically (a reader never sees half a number).

    :param path: the ``--port-file``.
    :param port: the TCP port bound.
    :raises OSError: the file cannot be written.
    """
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(f"{port}\n")
    os.replace(partial, path)
    _written[path] = port


def remove_port_file(path: Path) -> None:
    """Remove ``path`` if this process wrote it and it still holds the same port.

    :param path: the ``--port-file``.
    """
    port = _written.pop(path, None)
    if port is None:
        return
    try:
        if path.read_text().strip() == str(port):
            path.unlink()
    except OSError:  # already gone, or replaced by something we may not touch
        pass
