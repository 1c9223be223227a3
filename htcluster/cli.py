"""The ``htcluster`` command: run brokers, load Apache logs, query, check health, demo.

Every command that talks to brokers takes ``--hosts`` (comma-separated
``host[:port]``; default ``$HYPERTABLE_HOSTS``, else ``localhost:15867``).
Failures reach the user as one line naming what to do, with a non-zero exit
code and no traceback.
"""
from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import click

from . import __version__
from .cli_output import HOSTS_ENV, explain, format_hql_result, progress_bar
from .errors import ConfigError
from .hosts import DEFAULT_PORT, Host, parse_hosts
from . import logload
from .status import DEFAULT_TIMEOUT as STATUS_TIMEOUT, check_hosts, down_message, format_status
from .weblog import GENERATED_LINES, GENERATED_SEED, TABLE, LogStats, generate_lines, iter_entries, open_log

__all__ = ["main"]

#: Environment variable holding the default ``--namespace``.
NAMESPACE_ENV = "HYPERTABLE_NAMESPACE"
DEFAULT_HOSTS = f"localhost:{DEFAULT_PORT}"

F = TypeVar("F", bound=Callable[..., Any])


def _friendly(command: F) -> F:
    """Turn htcluster's errors raised by ``command`` into one clear line (a ``ClickException``).

    Done inside the callback, before the error meets click's generator-based
    context managers: Thrift's ``ClientException`` is immutable and refuses
    the ``__traceback__`` those set.
    """
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            raise click.Abort() from None
        except Exception as exc:
            message = explain(exc)
            if message is None:
                raise
            raise click.ClickException(message) from None
    return wrapper  # type: ignore[return-value]


class _Group(click.Group):
    """A click group whose commands report errors through :func:`_friendly`."""

    def command(self, *args: Any, **kwargs: Any) -> Any:
        register = super().command(*args, **kwargs)
        return lambda f: register(_friendly(f))


def _hosts_default() -> str:
    return os.environ.get(HOSTS_ENV) or DEFAULT_HOSTS


def _parse_hosts_option(ctx: click.Context, param: click.Parameter, value: str) -> list[Host]:
    try:
        return parse_hosts(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def hosts_option(f: F) -> F:
    """Add ``--hosts`` (parsed into a list of :class:`~htcluster.hosts.Host`)."""
    return click.option("--hosts", "hosts", default=_hosts_default, callback=_parse_hosts_option,
                        show_default=f"${HOSTS_ENV} or {DEFAULT_HOSTS}",
                        help="Comma-separated brokers, host[:port].")(f)


def namespace_option(default: str) -> Callable[[F], F]:
    """Add ``--namespace`` with ``$HYPERTABLE_NAMESPACE`` or ``default`` as its default."""
    return click.option("--namespace", "-n", default=lambda: os.environ.get(NAMESPACE_ENV) or default,
                        show_default=f"${NAMESPACE_ENV} or {default!r}", help="Namespace to work in.")


def input_options(f: F) -> F:
    """Add ``--input FILE`` and ``--lines N`` (size of the generated log used without ``--input``)."""
    f = click.option("--lines", "count", default=GENERATED_LINES, show_default=True, type=click.IntRange(1),
                     help="Lines of the generated log used without --input.")(f)
    return click.option("--input", "input_", metavar="FILE",
                        help="Apache access log, plain or gzip, '-' for stdin (default: a generated log).")(f)


def open_input(path: str) -> Any:
    """Open ``--input`` with :func:`htcluster.weblog.open_log`, turning failures into a usage error.

    :param path: a file path, or ``'-'`` for stdin.
    :returns: the open :class:`~htcluster.weblog.LogText`.
    :raises click.BadParameter: the file cannot be read.
    """
    try:
        return open_log(path)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path!r}: {exc.strerror or exc}; give an Apache access "
                                 f"log, plain or gzip, or '-' for stdin", param_hint="--input") from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="htcluster")
def main() -> None:
    """Pools, sharding and replica failover over many Hypertable ThriftBrokers."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port to listen on (0: any free one).")
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="SQLite file holding the cells, shared by the brokers of one cluster "
                   "(default: a temporary file).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds a client connection may stay silent before it is closed "
                   "(ThriftBroker.Timeout; default: never).")
@click.option("--busy-timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="Seconds a write waits for another broker's write on the same data file.")
def broker(host: str, port: int, data: Optional[Path], timeout: Optional[float], busy_timeout: float) -> None:
    """Serve the ThriftBroker protocol over a SQLite file (a local stand-in broker)."""
    import sqlite3

    from .broker import serve

    click.echo(f"htcluster broker on {host}:{port} serving {data or 'a temporary file'}; Ctrl-C stops it",
               err=True)
    try:
        serve(host, port, data, timeout=timeout, busy_timeout=busy_timeout)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                                   f"choose another --port or stop what uses it") from None
    except sqlite3.Error as exc:
        raise click.ClickException(f"cannot use data file {data}: {exc}; "
                                   f"give --data a SQLite file or a new path") from None


@main.command()
@hosts_option
@namespace_option("/")
@click.option("--broadcast", is_flag=True, help="Run on every host and print each answer.")
@click.argument("command")
def hql(hosts: list[Host], namespace: str, broadcast: bool, command: str) -> None:
    """Run one HQL COMMAND and print its result as a table.

    Without --broadcast the command goes to one host (the first that
    answers); with it, to every host in parallel.
    """
    from .cluster import Resources

    resources = Resources(hosts)
    try:
        if not broadcast:
            click.echo(format_hql_result(resources.unicast("hql_query", command, namespace=namespace)))
            return
        answers, errors = resources.broadcast("hql_query", command, namespace=namespace, errors="return")
        for host in map(str, hosts):
            click.echo(f"== {host} ==")
            if host in answers:
                click.echo(format_hql_result(answers[host]))
            else:
                click.echo(f"error: {explain(errors[host]) or repr(errors[host])}")
        if errors:
            raise click.ClickException(f"{len(errors)} of {len(hosts)} hosts failed; "
                                       f"check them with 'htcluster status'")
    finally:
        resources.close()


STRATEGIES = ("pool", "replicas", "shards")


def _open_writer(strategy: str, hosts: list[Host], namespace: str, table: str,
                 shard_by: str) -> tuple[Any, Callable[..., int]]:
    """Build the routing object of ``strategy``, create LogDb behind it, return it and its writer."""
    from .cluster import Replicas, Shards
    from .pool import Pool

    target: Any
    if strategy == "pool":
        if len(hosts) > 1:
            raise click.UsageError(f"--strategy pool writes to one host, got {len(hosts)}: "
                                   f"use --strategy replicas or shards, or give one host")
        target = Pool(hosts[0])
        creators: list[Callable[..., Any]] = [target.call]
        writer = logload.pool_writer(target, namespace, table)
    elif strategy == "replicas":
        target = Replicas(hosts)
        creators = [functools.partial(target.call, write=True)]
        writer = logload.replicas_writer(target, namespace, table)
    else:  # every shard is one host, its own shard key
        target = Shards([(host, str(host)) for host in hosts])
        creators = [pool.call for pool in target.resources.values()]
        route = logload.by_client if shard_by == "client" else logload.by_row
        writer = logload.shards_writer(target, namespace, table, route)
    try:
        for create in creators:
            logload.ensure_logdb(create, namespace, table)
    except BaseException:
        target.close()
        raise
    return target, writer


@main.command()
@hosts_option
@namespace_option("logs")
@click.option("--table", default=TABLE, show_default=True, help="Table to write (created when missing).")
@input_options
@click.option("--seed", default=GENERATED_SEED, show_default=True, help="Seed of the generated log.")
@click.option("--strategy", type=click.Choice(STRATEGIES), default="pool", show_default=True,
              help="pool: one host; replicas: brokers over the same data, failover; "
                   "shards: rows spread over the hosts.")
@click.option("--shard-by", type=click.Choice(("row", "client")), default="row", show_default=True,
              help="With --strategy shards: locate by row key, or by client address "
                   "(one client's rows on one shard).")
@click.option("--batch", default=logload.DEFAULT_BATCH, show_default=True, type=click.IntRange(1),
              help="Requests per set_cells call (7 cells each).")
def load(hosts: list[Host], namespace: str, table: str, input_: Optional[str], count: int, seed: int,
         strategy: str, shard_by: str, batch: int) -> None:
    """Load an Apache access log into LogDb, one row per request.

    A progress bar is shown on stderr when it is a terminal; the report
    (lines read, malformed lines skipped, cells written, cells/s) goes to stdout.
    """
    stats, progress = LogStats(), logload.LoadReport()
    with contextlib.ExitStack() as stack:
        lines = stack.enter_context(open_input(input_)) if input_ else generate_lines(count, seed)
        target, writer = _open_writer(strategy, hosts, namespace, table, shard_by)
        stack.callback(target.close)
        on_batch = progress_bar(stack, lines, None if input_ else count)
        try:
            report = logload.load(iter_entries(lines, stats), writer, batch=batch, stats=stats, report=progress,
                              on_batch=on_batch)
        except Exception:
            stack.close()  # ends the progress bar's line first
            click.echo(f"stopped after {stats.lines:,} lines read; {progress.cells:,} cells were "
                       f"acknowledged before the failure", err=True)
            raise
    source = input_ or f"a generated log ({count} lines, seed {seed})"
    click.echo(f"loaded {source} into {namespace}/{table} through {strategy} ({', '.join(map(str, hosts))})")
    click.echo(f"lines read       {report.lines:>10,}")
    click.echo(f"lines skipped    {report.malformed:>10,}  (malformed)")
    click.echo(f"cells written    {report.cells:>10,}")
    click.echo(f"cells/s          {report.cells_per_s:>10,.0f}  ({report.seconds:.2f} s)")
    for example in stats.examples:
        click.echo(f"skipped {example}", err=True)


@main.command()
@click.option("--brokers", "-b", default=3, show_default=True, type=click.IntRange(1, 64),
              help="Number of brokers.")
@click.option("--shared/--separate", default=True, show_default=True,
              help="One SQLite file behind every broker (replicas) or one each (shards).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the SQLite files here (default: a temporary folder, removed at exit).")
def cluster(brokers: int, shared: bool, data_dir: Optional[Path]) -> None:
    """Run a local cluster of stand-in brokers in the foreground until Ctrl-C."""
    from .testing import LocalCluster

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


@main.command()
@hosts_option
@click.option("--timeout", default=STATUS_TIMEOUT, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds each host gets to answer.")
def status(hosts: list[Host], timeout: float) -> None:
    """Ping every host in parallel through a pool each; print up/down, latency, pool state; exit 1 if any is down."""
    from .cluster import Resources

    with Resources(hosts, size=1, max_overflow=0, timeout=timeout, socket_timeout=timeout,
                   connect_timeout=timeout) as resources:
        statuses = check_hosts(resources, timeout=timeout)
    click.echo(format_status(statuses))
    problem = down_message(statuses)
    if problem:
        raise click.ClickException(problem)


@main.command()
@input_options
def demo(input_: Optional[str], count: int) -> None:
    """Run the main job: a local cluster, a log loaded through Replicas and Shards, a failover, queries."""
    from .demo import run_demo

    if input_ not in (None, "-"):
        open_input(input_).close()  # a bad path is a usage error, before any broker starts
    try:
        ok = run_demo(input_, count=count, echo=click.echo)
    except RuntimeError as exc:  # a LocalBroker did not start
        raise click.ClickException(f"the local brokers did not start: {exc}") from None
    if not ok:
        raise click.ClickException("cells found differ from cells acknowledged: data was lost")
