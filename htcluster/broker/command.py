"""The one broker command: ``htcluster broker`` and ``python -m htcluster.broker`` run :data:`broker_command`.

It binds first, then says where: the start line (with the address actually
bound, so ``--port 0`` reports the real port) is printed on standard error
once the port listens, and ``--port-file`` is written atomically then, and
removed at exit if it still names this broker's port; a port in use prints
only the error.  It serves until SIGTERM or SIGINT (:func:`.server.serve`:
a graceful stop, at once on the second signal).

Exit status: 0 after a stop, 1 when the address, the data file or its
storage process cannot be used, 2 for a bad option (a limit out of range).

Every duration is in seconds, every size in bytes; the defaults are the
constants of :mod:`.limits` and :mod:`.sqlitedb`.  This module imports no
client layer of htcluster (only ``errors``, ``hosts`` and the broker itself).
"""
from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import Any, Optional, Sequence

import click

from ..errors import ConfigError
from ..hosts import DEFAULT_PORT
from . import limits as defaults
from .limits import Limits
from .server import DEFAULT_HOST, serve
from .sqlitedb import BUSY_TIMEOUT
from .storage_client import StorageUnavailable
from .storage_wire import DEFAULT_LINGER
from .tls import server_context

__all__ = ["LOG_LEVELS", "Seconds", "broker_command", "main", "remove_port_file", "write_port_file"]

#: The choices of ``--log-level``.
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class Seconds(click.ParamType):
    """A positive number of seconds, or ``never`` (``None``): the type of ``--idle-timeout``."""

    name = "SECONDS|never"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Optional[float]:
        if value is None or isinstance(value, float):
            return value
        text = str(value).strip().lower()
        if text == "never":
            return None
        try:
            seconds = float(text)
        except ValueError:
            self.fail(f"{value!r} is neither a number of seconds nor 'never'", param, ctx)
        if not seconds > 0:
            self.fail(f"{value!r} must be more than 0 seconds (or 'never')", param, ctx)
        return seconds


_written: dict[Path, int] = {}


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


def _limits(**given: Any) -> Limits:
    try:
        return Limits(**given)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("broker", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to listen on.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port to listen on (0: any free one; the one bound is printed, see --port-file).")
@click.option("--port-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the port bound (digits and a newline) to this file once listening, for scripts; "
                   "removed at exit.")
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="SQLite file holding the cells; brokers on one file are replicas of one cluster, served by "
                   "the file's one storage process, started by the first broker when none runs  "
                   "[default: a temporary file of this broker's own]")
@click.option("--files", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="The one directory LOAD DATA INFILE and SELECT/DUMP ... INTO FILE may use  "
                   "[default: none, file statements are refused]")
@click.option("--idle-timeout", type=Seconds(), default=defaults.DEFAULT_IDLE_TIMEOUT, show_default=True,
              help="Seconds a client connection may go without sending a complete frame before it is closed, "
                   "or 'never' (upstream's ThriftBroker.Timeout, unset there by default).")
@click.option("--frame-timeout", type=click.FloatRange(min=0, min_open=True), default=defaults.DEFAULT_FRAME_TIMEOUT,
              show_default=True, help="Seconds from a frame's first byte to its last; a slower one closes the "
                                      "connection (and an answer not taken within it).")
@click.option("--busy-timeout", type=click.FloatRange(min=0, min_open=True), default=BUSY_TIMEOUT,
              show_default=True, help="Seconds a write waits for the data file's write lock before it answers "
                                      "REQUEST_TIMEOUT (given to the storage process this broker starts).")
@click.option("--storage-linger", type=Seconds(), default=DEFAULT_LINGER, show_default=True,
              help="Seconds the storage process this broker starts (when none serves --data) keeps running "
                   "once no broker is connected to it, or 'never' (it then runs until SIGTERM).")
@click.option("--max-connections", type=int, default=defaults.DEFAULT_MAX_CONNECTIONS, show_default=True,
              help="Connections served at once; more are closed with a log line.")
@click.option("--max-frame-size", type=int, default=defaults.DEFAULT_MAX_FRAME_SIZE, show_default=True,
              help="Bytes of the largest request frame; a larger header closes the connection.")
@click.option("--max-inflight-bytes", type=int, default=None,
              help="Bytes of frames and answers in flight across all connections  "
                   f"[default: {defaults.INFLIGHT_FRAMES} x --max-frame-size]")
@click.option("--max-answer-size", type=int, default=None,
              help="Bytes of the largest get_cells / hql_query answer; larger ones ask for a scanner  "
                   "[default: --max-frame-size]")
@click.option("--workers", type=int, default=defaults.DEFAULT_WORKERS, show_default=True,
              help="Threads running calls (connections waiting for a frame need none).")
@click.option("--stop-grace", type=click.FloatRange(min=0), default=defaults.DEFAULT_STOP_GRACE, show_default=True,
              help="Seconds SIGTERM/SIGINT lets calls in flight finish; a second signal stops at once.")
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="warning", show_default=True,
              help="Least severe log messages shown (on standard error).")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="PEM file of the broker's certificate (chain): serve TLS 1.2 or later only (its key: "
                   "in the same file or given by --tls-key)  [default: plaintext]")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="PEM file of the private key of the certificate (when not in its file).")
@click.option("--tls-client-ca", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="PEM file of the CA(s) whose client certificates are accepted; clients without one are "
                   "refused  [default: no client certificate asked]")
def broker_command(host: str, port: int, port_file: Optional[Path], data: Optional[Path], files: Optional[Path],
                   idle_timeout: Optional[float], frame_timeout: float, busy_timeout: float, max_connections: int,
                   max_frame_size: int, max_inflight_bytes: Optional[int], max_answer_size: Optional[int],
                   workers: int, stop_grace: float, log_level: str, tls_cert: Optional[Path] = None,
                   tls_key: Optional[Path] = None, tls_client_ca: Optional[Path] = None,
                   storage_linger: Optional[float] = DEFAULT_LINGER) -> None:
    """Serve the ThriftBroker protocol over a SQLite file (a local stand-in broker).

    The start line (with the address actually bound) is printed once the
    port is listening, never before: a port in use prints only the error.
    Durations are seconds, sizes bytes.
    """
    limits = _limits(max_connections=max_connections, idle_timeout=idle_timeout, frame_timeout=frame_timeout,
                     max_frame_size=max_frame_size, max_inflight_bytes=max_inflight_bytes,
                     max_answer_size=max_answer_size, workers=workers, stop_grace=stop_grace)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    context = None
    if tls_cert is not None:
        try:
            context = server_context(tls_cert, tls_key, tls_client_ca)
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="--tls-cert") from None
    elif tls_key is not None or tls_client_ca is not None:
        raise click.BadParameter("--tls-key and --tls-client-ca need --tls-cert (the broker's certificate)",
                                 param_hint="--tls-cert")

    def started(server: Any) -> None:
        tls = " over TLS" if context is not None else ""
        click.echo(f"htcluster broker on {server.address}{tls} serving {data or 'a temporary file'}; "
                   "Ctrl-C stops it", err=True)
        if port_file is not None:
            write_port_file(port_file, server.port)

    try:
        serve(host, port, data, busy_timeout=busy_timeout, files=files, limits=limits, on_start=started,
              ssl_context=context, storage_linger=storage_linger)
    except StorageUnavailable as exc:
        raise click.ClickException(f"cannot serve data file {data}: {exc}") from None
    except sqlite3.Error as exc:
        raise click.ClickException(f"cannot use data file {data}: {exc}; "
                                   "give --data a SQLite file or a new path") from None
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                                   "choose another --port or stop what uses it") from None
    finally:
        if port_file is not None:
            remove_port_file(port_file)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run :data:`broker_command` as ``python -m htcluster.broker``; return the exit status.

    :param argv: the arguments (``None``: ``sys.argv[1:]``).
    :returns: 0 after SIGTERM/SIGINT (or ``--help``), 1 when the address, the data
        file or its storage process cannot be used, 2 for a bad option.
    """
    try:
        status = broker_command.main(args=None if argv is None else list(argv), prog_name="python -m htcluster.broker",
                                     standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("Aborted!", err=True)
        return 1
    return status if isinstance(status, int) else 0
