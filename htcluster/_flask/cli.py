"""``flask hypertable status``: the health of every cluster of the app, and its counters.

For the main cluster and each ``HYPERTABLE_BINDS`` entry it prints a
heading (the bind, its strategy), the health table of
:func:`htcluster.cli.status.check_hosts` (each host pinged in parallel through a
fresh connection) and, when the routing object has ``stats()``, its
counters per host.  It exits 1 when any host of any bind is down.
"""
from __future__ import annotations

from typing import Any, Optional

import click
from flask import current_app
from flask.cli import AppGroup

from ..cli.status import check_hosts, down_message, format_status
from .routing import AppState

__all__ = ["EXTENSION_KEY", "format_stats", "hypertable_cli", "status_command"]

#: Where the per-app state is kept: ``app.extensions[EXTENSION_KEY]``.
EXTENSION_KEY = "hypertable"

hypertable_cli = AppGroup("hypertable", help="The Hypertable brokers of this app.")


def _flatten(prefix: str, value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    elif isinstance(value, float):
        out.append(f"{prefix}={value:.4g}")
    else:
        out.append(f"{prefix}={value}")


def format_stats(stats: dict[str, Any]) -> str:
    """Return ``cluster.stats()`` as one line per host: ``host  key=value ...`` (nested keys dotted).

    :param stats: ``{host: {counter: value, ...}}``; other top-level values are printed as they are.
    """
    lines = []
    for host, counters in stats.items():
        parts: list[str] = []
        _flatten("", counters, parts)
        lines.append(f"  {host}  {' '.join(parts)}")
    return "\n".join(lines)


def _title(state: AppState) -> str:
    name = "main" if state.bind_name is None else f"bind {state.bind_name!r}"
    return f"{name}: {state.settings.strategy}, {len(state.settings.hosts)} host(s)"


@hypertable_cli.command("status")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds each host gets to answer (default: each cluster's HYPERTABLE_TIMEOUT_MSECS).")
def status_command(timeout: Optional[float]) -> None:
    """Ping every broker of every bind in parallel, print health and counters; exit 1 if any is down."""
    state = current_app.extensions.get(EXTENSION_KEY)
    if state is None:
        raise click.ClickException("the app has no Hypertable extension: call ht.init_app(app)")
    problems = []
    for cluster in state.every():
        statuses = check_hosts(cluster.settings.hosts, timeout=timeout or cluster.settings.socket_timeout)
        click.echo(_title(cluster))
        click.echo(format_status(statuses))
        stats = cluster.stats()
        if stats:
            click.echo("counters:")
            click.echo(format_stats(stats))
        click.echo("")
        problem = down_message(statuses)
        if problem:
            problems.append(problem if cluster.bind_name is None else f"bind {cluster.bind_name!r}: {problem}")
    if problems:
        raise click.ClickException("; ".join(problems))
