"""The commands that load the main job's data: ``load`` and ``demo``."""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Optional

import click

from ..hosts import Host
from . import logload
from .options import hosts_option, input_options, namespace_option, open_input
from .output import progress_bar
from .weblog import GENERATED_SEED, TABLE, LogStats, generate_lines, iter_entries

__all__ = ["STRATEGIES", "demo_command", "load_command"]


STRATEGIES = ("pool", "replicas", "shards")


def _open_writer(strategy: str, hosts: list[Host], namespace: str, table: str,
                 shard_by: str) -> tuple[Any, Callable[..., int]]:
    """Build the routing object of ``strategy``, create LogDb behind it, return it and its writer."""
    from ..cluster import Replicas, Shards
    from ..pool import Pool

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


@click.command("load")
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
def load_command(hosts: list[Host], namespace: str, table: str, input_: Optional[str], count: int, seed: int,
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


@click.command("demo")
@input_options
def demo_command(input_: Optional[str], count: int) -> None:
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
