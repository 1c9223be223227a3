"""The commands that load the main job's data: ``load`` and ``demo``."""
from __future__ import annotations

import contextlib
import functools
import itertools
import sys
from typing import Any, Callable, Iterator, Optional

import click

from ..errors import ConfigError
from ..hosts import Host
from . import logload, tsv
from .options import (DEFAULT_CALL_TIMEOUT, hosts_option, input_options, namespace_option, open_input, pool_options,
                      timeout_option)
from .output import progress_bar
from .weblog import GENERATED_SEED, TABLE, LogStats, generate_lines, iter_entries, schema

__all__ = ["FORMATS", "INTERRUPTED", "STRATEGIES", "demo_command", "load_command"]


STRATEGIES = ("pool", "replicas", "shards")
FORMATS = ("auto", "apache", "tsv")
#: Exit status after Ctrl-C, as a shell reports a process killed by SIGINT (128 + 2).
INTERRUPTED = 130
#: What ``load`` reads, for the error when nothing could be parsed.
EXPECTED = ("expected an Apache access log (common or combined format, plain or gzip), or a TSV file whose "
            "first line names its tab-separated columns, one of them 'id' (--format tsv)")


def _open_writer(strategy: str, hosts: list[Host], namespace: str, table: str, shard_by: str,
                 ensure: Callable[[Callable[..., Any]], None], timeout: float) -> tuple[Any, Any]:
    """Build the routing object of ``strategy``, create the table behind it, return it and its mutator.

    Every strategy writes through a buffered mutator (``Replicas.mutator``, one host for ``pool``;
    ``Shards.mutator`` located by row key or by client address).
    """
    from .. import Replicas, Shards

    target: Any
    if strategy in ("pool", "replicas"):
        if strategy == "pool" and len(hosts) > 1:
            raise click.UsageError(f"--strategy pool writes to one host, got {len(hosts)}: "
                                   f"use --strategy replicas or shards, or give one host")
        target = Replicas(hosts, **pool_options(timeout))
        creators: list[Callable[..., Any]] = [functools.partial(target.call, write=True)]
    else:  # every shard is one host, its own shard key
        target = Shards([(host, str(host)) for host in hosts], **pool_options(timeout))
        creators = [pool.call for pool in target.pools.values()]
    try:
        for create in creators:
            ensure(create)
        if strategy == "shards":
            shards = target
            key = (lambda row: shards.locate(logload.row_client(row))) if shard_by == "client" else None
            mutator = shards.mutator(table, namespace=namespace, key=key)
        else:
            mutator = target.mutator(table, namespace=namespace)
    except BaseException:
        target.close()
        raise
    return target, mutator


def _records(fmt: str, lines: Iterator[str], input_: Optional[str], category: Optional[str],
             stats: tsv.TsvStats) -> tuple[str, Iterator[Any]]:
    """Choose the format (``auto``: by the first line) and return it with the records of ``lines``."""
    first = next(lines, None)
    lines = itertools.chain([first] if first is not None else [], lines)
    if fmt == "auto":
        fmt = "tsv" if first is not None and tsv.looks_like_header(first) else "apache"
    if fmt == "apache":
        return fmt, iter_entries(lines, stats)
    try:
        return fmt, tsv.iter_records(lines, category or tsv.category_of(input_ or "-"), stats)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def _first(records: Iterator[Any], fmt: str, source: str, stats: LogStats) -> Any:
    """Return the first record, reading past unparseable lines; fail when there is none."""
    try:
        record = next(records, None)
    except ConfigError as exc:  # a TSV header that cannot be used
        raise click.ClickException(f"nothing was loaded: {source}: {exc}; {EXPECTED}") from None
    if record is not None:
        return record
    if stats.lines == 0:
        what = f"{source} is empty" if fmt == "apache" else f"{source} has a header line and no data"
    elif fmt == "apache":
        example = stats.examples[0] if stats.examples else ""
        if "\\x" in example or "\\u" in example:  # the repr of bytes that are not text
            example = "it does not look like text"
        what = f"none of the {stats.lines:,} lines of {source} is an Apache access log line ({example})"
    else:
        what = f"none of the {stats.lines:,} data lines of {source} has an 'id' value"
    raise click.ClickException(f"nothing was loaded: {what}; {EXPECTED}")


@click.command("load")
@hosts_option
@namespace_option("logs")
@click.option("--table", default=None, help=f"Table to write, created when missing "
                                            f"[default: {TABLE}, or {tsv.TABLE} for a TSV].")
@input_options
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
              help="apache: an access log into LogDb; tsv: a header-line TSV into freebase "
                   "(name, category, property); auto: tsv when the first line is a header of column names.")
@click.option("--category", default=None,
              help="With a TSV: the category: value of every row [default: the file name up to its first dot].")
@click.option("--seed", default=GENERATED_SEED, show_default=True, help="Seed of the generated log.")
@click.option("--strategy", type=click.Choice(STRATEGIES), default=None,
              help="pool: one host; replicas: brokers over the same data, failover; "
                   "shards: rows spread over the hosts.  [default: pool for one host, replicas for several]")
@click.option("--shard-by", type=click.Choice(("row", "client")), default="row", show_default=True,
              help="With --strategy shards: locate by row key, or by client address "
                   "(one client's rows on one shard; Apache logs only).")
@click.option("--batch", default=logload.DEFAULT_BATCH, show_default=True, type=click.IntRange(1),
              help="Rows per set_cells call (7 cells each for a log).")
@timeout_option(DEFAULT_CALL_TIMEOUT)
def load_command(hosts: list[Host], namespace: str, table: Optional[str], input_: Optional[str], count: int,
                 fmt: str, category: Optional[str], seed: int, strategy: Optional[str], shard_by: str, batch: int,
                 timeout: float) -> None:
    """Load an Apache access log into LogDb (one row per request), or a header-line TSV into freebase.

    A progress bar is shown on stderr when it is a terminal; the report
    (lines read, malformed lines skipped, cells written, cells/s) goes to
    stdout.  Nothing parseable is an error (exit 1); Ctrl-C reports what was
    acknowledged and exits 130.
    """
    if input_ is None and fmt == "tsv":
        raise click.UsageError("--format tsv needs --input FILE (the generated input is an Apache log)")
    strategy = strategy or ("replicas" if len(hosts) > 1 else "pool")
    stats = tsv.TsvStats()  # a LogStats that also counts a TSV's extra fields
    progress = logload.LoadReport()
    source = input_ or f"a generated log ({count} lines, seed {seed})"
    try:
        with contextlib.ExitStack() as stack:
            text = stack.enter_context(open_input(input_)) if input_ else generate_lines(count, seed)
            fmt, records = _records(fmt, iter(text), input_, category, stats)
            first = _first(records, fmt, source, stats)
            if fmt == "tsv" and strategy == "shards" and shard_by == "client":
                raise click.UsageError("--shard-by client locates Apache log rows by client address; "
                                       "use --shard-by row for a TSV")
            table = table or (tsv.TABLE if fmt == "tsv" else TABLE)
            wanted, kind = (tsv.schema(), "freebase") if fmt == "tsv" else (schema(), "LogDb")
            target, mutator = _open_writer(strategy, hosts, namespace, table, shard_by,
                                           lambda call: logload.ensure_table(call, namespace, table, wanted, kind),
                                           timeout)
            stack.callback(target.close)
            writer = logload.mutator_writer(stack.enter_context(mutator))
            on_batch = progress_bar(stack, text, None if input_ else count)
            try:
                report = logload.load(itertools.chain([first], records), writer, batch=batch, stats=stats,
                                      report=progress, on_batch=on_batch)
            except Exception:
                stack.close()  # ends the progress bar's line first
                click.echo(f"stopped after {stats.lines:,} lines read; {progress.cells:,} cells were "
                           f"acknowledged before the failure", err=True)
                raise
    except KeyboardInterrupt:
        start = "\n" if sys.stderr.isatty() else ""  # after the terminal's ^C
        click.echo(f"{start}interrupted after {stats.lines:,} lines read; {progress.cells:,} cells were "
                   f"acknowledged ({progress.rows:,} rows)", err=True)
        raise click.exceptions.Exit(INTERRUPTED) from None
    click.echo(f"loaded {source} ({fmt}) into {namespace}/{table} through {strategy} "
               f"({', '.join(map(str, hosts))})")
    click.echo(f"lines read       {report.lines:>10,}")
    click.echo(f"lines skipped    {report.malformed:>10,}  (malformed)")
    click.echo(f"rows written     {report.rows:>10,}")
    click.echo(f"cells written    {report.cells:>10,}")
    click.echo(f"cells/s          {report.cells_per_s:>10,.0f}  ({report.seconds:.2f} s)")
    for example in stats.examples:
        click.echo(f"skipped {example}", err=True)
    if stats.extra_fields:
        click.echo(f"note: {stats.extra_fields:,} rows had more fields than the header names; "
                   f"the extra fields were ignored", err=True)


@click.command("demo")
@input_options
def demo_command(input_: Optional[str], count: int) -> None:
    """Run the main job: a local cluster, a log loaded through Replicas and Shards, a failover, queries."""
    from .demo import run_demo

    if input_ not in (None, "-"):
        open_input(input_).close()  # a bad path is a usage error, before any broker starts
    try:
        ok = run_demo(input_, count=count, echo=click.echo)
    except ConfigError as exc:  # nothing in the input parsed
        raise click.ClickException(str(exc)) from None
    except RuntimeError as exc:  # a LocalBroker did not start
        raise click.ClickException(f"the local brokers did not start: {exc}") from None
    if not ok:
        raise click.ClickException("cells found differ from cells acknowledged: data was lost")
