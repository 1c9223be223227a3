"""The commands that run and query brokers: ``broker``, ``cluster``, ``hql``, ``status``."""
from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any, Optional

import click

from ..errors import ConfigError
from ..hosts import DEFAULT_PORT, Host
from .broker_run import remove_port_file, serve_broker, write_port_file
from .options import DEFAULT_CALL_TIMEOUT, hosts_option, namespace_option, pool_options, timeout_option
from .output import HOSTS_ENV, explain, format_hql_result
from .status import DEFAULT_TIMEOUT as STATUS_TIMEOUT, check_hosts, down_message, format_status

__all__ = ["broker_command", "cluster_command", "hql_command", "status_command"]


def broker_limits(timeout: Optional[float], given: dict[str, Any]) -> Any:
    """Return the broker's :class:`~htcluster.broker.limits.Limits` from the CLI options given (others: defaults).

    :param timeout: ``--timeout``, the idle timeout in seconds (``None``: the default, 3600 s).
    :raises click.BadParameter: a value is out of range (the message says which and why).
    """
    from ..broker.limits import Limits

    fields = {name: value for name, value in given.items() if value is not None}
    if timeout is not None:
        fields["idle_timeout"] = timeout
    try:
        return Limits(**fields)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("broker")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port to listen on (0: any free one; the one bound is printed, see --port-file).")
@click.option("--port-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the port bound (digits and a newline) to this file once listening, for scripts; "
                   "removed at exit.")
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="SQLite file holding the cells, shared by the brokers of one cluster "
                   "(default: a temporary file).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds a client connection may stay silent before it is closed "
                   "(ThriftBroker.Timeout; default: never).")
@click.option("--busy-timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="Seconds a write waits for another broker's write on the same data file.")
@click.option("--files", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="The one directory LOAD DATA INFILE and SELECT/DUMP ... INTO FILE may use "
                   "(default: none, file statements are refused).")
@click.option("--max-connections", type=int, default=None,
              help="Connections served at once; more are closed with a log line (default 1000).")
@click.option("--frame-timeout", type=float, default=None,
              help="Seconds from a frame's first byte to its last; a slower one closes the connection (default 30).")
@click.option("--max-frame-size", type=int, default=None, help="Bytes of the largest frame (default 64 MiB).")
@click.option("--max-inflight-bytes", type=int, default=None,
              help="Bytes of frames and answers in flight across all connections (default 4 x --max-frame-size).")
@click.option("--max-answer-size", type=int, default=None,
              help="Bytes of the largest get_cells / hql_query answer; larger ones ask for a scanner "
                   "(default: --max-frame-size).")
@click.option("--workers", type=int, default=None, help="Threads running calls (default 32).")
@click.option("--stop-grace", type=float, default=None,
              help="Seconds SIGTERM/SIGINT lets calls in flight finish; a second signal stops at once (default 10).")
def broker_command(host: str, port: int, port_file: Optional[Path], data: Optional[Path], timeout: Optional[float],
                   busy_timeout: float, files: Optional[Path], **limit_options: Optional[float]) -> None:
    """Serve the ThriftBroker protocol over a SQLite file (a local stand-in broker).

    The start line (with the address actually bound) is printed once the
    port is listening, never before: a port in use prints only the error.
    """
    import sqlite3

    def started(address: str, bound_port: int) -> None:
        click.echo(f"htcluster broker on {address} serving {data or 'a temporary file'}; Ctrl-C stops it",
                   err=True)
        if port_file is not None:
            write_port_file(port_file, bound_port)

    try:
        serve_broker(host, port, data, started, busy_timeout=busy_timeout, files=files,
                     limits=broker_limits(timeout, limit_options))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                                   f"choose another --port or stop what uses it") from None
    except sqlite3.Error as exc:
        raise click.ClickException(f"cannot use data file {data}: {exc}; "
                                   f"give --data a SQLite file or a new path") from None
    finally:
        if port_file is not None:
            remove_port_file(port_file)


@click.command("hql")
@hosts_option
@namespace_option("/")
@click.option("--broadcast", is_flag=True, help="Run on every host and print each answer.")
@timeout_option(DEFAULT_CALL_TIMEOUT)
@click.argument("command")
def hql_command(hosts: list[Host], namespace: str, broadcast: bool, timeout: float, command: str) -> None:
    """Run one HQL COMMAND and print its result as a table.

    Without --broadcast the command goes through Replicas: a read to any
    host that answers, a write to the first healthy host in --hosts order.
    With it, to every host in parallel.  Either way a cell stored twice with
    the same timestamp (a reloaded or retried write) is shown once.
    """
    from .. import Replicas, Resources
    from .._routing.replicas import collapse

    if not broadcast:
        replicas = Replicas(hosts, **pool_options(timeout))
        try:
            click.echo(format_hql_result(replicas.call("hql_query", command, namespace=namespace)))
        finally:
            replicas.close()
        return
    with Resources(hosts, **pool_options(timeout)) as resources:
        answers, errors = resources.broadcast("hql_query", command, namespace=namespace, errors="return")
    for host in map(str, hosts):
        click.echo(f"== {host} ==")
        if host in answers:
            answer = answers[host]
            if answer.cells is not None:
                answer.cells = collapse(answer.cells)
            click.echo(format_hql_result(answer))
        else:
            click.echo(f"error: {explain(errors[host], timeout) or repr(errors[host])}")
    if errors:
        raise click.ClickException(f"{len(errors)} of {len(hosts)} hosts failed; "
                                   f"check them with 'htcluster status'")


@click.command("cluster")
@click.option("--brokers", "-b", default=3, show_default=True, type=click.IntRange(1, 64),
              help="Number of brokers.")
@click.option("--shared/--separate", default=True, show_default=True,
              help="One SQLite file behind every broker (replicas) or one each (shards).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the SQLite files here (default: a temporary folder, removed at exit).")
def cluster_command(brokers: int, shared: bool, data_dir: Optional[Path]) -> None:
    """Run a local cluster of stand-in brokers in the foreground until Ctrl-C."""
    from ..testing import LocalCluster

    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
    try:
        local = LocalCluster(brokers, shared_data=shared, data_dir=data_dir)
    except RuntimeError as exc:
        raise click.ClickException(f"the brokers did not start: {exc}") from None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # close the brokers on SIGTERM too
    try:
        hosts = ",".join(local.hosts)
        click.echo(f"{brokers} broker(s) over {'one shared file' if shared else 'separate files'} "
                   f"in {local.data_dir}")
        click.echo(f"export {HOSTS_ENV}={hosts}")
        click.echo("Ctrl-C stops them.", err=True)
        sys.stdout.flush()
        reported: set[str] = set()
        while True:  # a dead member is reported once; the others keep serving (failover tests)
            dead = [b.address for b in local if not b.running]
            for address in dead:
                if address not in reported:
                    reported.add(address)
                    click.echo(f"warning: broker {address} exited; the others keep running", err=True)
            if len(reported) == len(local):
                raise click.ClickException("every broker has exited")
            time.sleep(0.5)
    except KeyboardInterrupt:
        click.echo("stopping", err=True)
    finally:
        local.close()


@click.command("status")
@hosts_option
@click.option("--timeout", default=STATUS_TIMEOUT, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds each host gets to answer.")
def status_command(hosts: list[Host], timeout: float) -> None:
    """Ping every host in parallel through a pool each; print up/down, latency, pool state; exit 1 if any is down."""
    from .. import Resources

    with Resources(hosts, size=1, max_overflow=0, timeout=timeout, socket_timeout=timeout,
                   connect_timeout=timeout) as resources:
        statuses = check_hosts(resources, timeout=timeout)
    click.echo(format_status(statuses))
    problem = down_message(statuses)
    if problem:
        raise click.ClickException(problem)
