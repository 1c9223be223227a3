"""The commands that run and query brokers: ``broker``, ``cluster``, ``hql``, ``status``."""
from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Optional

import click

from ..broker.command import broker_command
from ..hosts import Host
from .options import DEFAULT_CALL_TIMEOUT, hosts_option, namespace_option, pool_options, timeout_option, tls_options
from .output import HOSTS_ENV, explain, format_hql_result
from .status import DEFAULT_TIMEOUT as STATUS_TIMEOUT, check_hosts, down_message, format_status

__all__ = ["broker_command", "cluster_command", "hql_command", "status_command"]


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
    from .._policy.versions import collapse

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
@click.option("--base-port", type=click.IntRange(1, 65535), default=None,
              help="Brokers listen on this port and the next ones, the same on every start "
                   "(default: free ports, new each time).")
@click.option("--pid-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write each broker's process id, one a line in the order of HYPERTABLE_HOSTS, to this file "
                   "(removed at exit): stop one with kill PID.")
def cluster_command(brokers: int, shared: bool, data_dir: Optional[Path], base_port: Optional[int],
                    pid_file: Optional[Path]) -> None:
    """Run a local cluster of stand-in brokers in the foreground until Ctrl-C.

    Prints each broker's address and process id, then the HYPERTABLE_HOSTS line.
    """
    from ..testing import LocalCluster

    if base_port is not None and base_port + brokers - 1 > 65535:
        raise click.BadParameter(f"ports {base_port}..{base_port + brokers - 1} go past 65535",
                                 param_hint="--base-port")
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
    try:
        local = LocalCluster(brokers, shared_data=shared, data_dir=data_dir, base_port=base_port)
    except RuntimeError as exc:
        raise click.ClickException(f"the brokers did not start: {exc}") from None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # close the brokers on SIGTERM too
    try:
        hosts = ",".join(local.hosts)
        click.echo(f"{brokers} broker(s) over {'one shared file' if shared else 'separate files'} "
                   f"in {local.data_dir}")
        pids = [member.process.pid if member.process is not None else 0 for member in local]
        for member, pid in zip(local, pids):
            click.echo(f"broker {member.address} pid {pid}")
        if pid_file is not None:
            pid_file.write_text("".join(f"{pid}\n" for pid in pids))
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
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)


@click.command("status")
@hosts_option
@click.option("--timeout", default=STATUS_TIMEOUT, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds each host gets to answer.")
def status_command(hosts: list[Host], timeout: float) -> None:
    """Ping every host in parallel through a pool each; print up/down, latency, pool state; exit 1 if any is down."""
    from .. import Resources

    with Resources(hosts, size=1, max_overflow=0, pool_timeout=timeout, socket_timeout=timeout,
                   connect_timeout=timeout, **tls_options()) as resources:
        statuses = check_hosts(resources, timeout=timeout)
    click.echo(format_status(statuses))
    problem = down_message(statuses)
    if problem:
        raise click.ClickException(problem)
