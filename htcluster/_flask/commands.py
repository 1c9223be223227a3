"""The ``hypertable`` command group of an app, for Flask's CLI and Quart's: ``flask|quart hypertable status``.

Written once, framework-neutral: :func:`hypertable_group` builds the group
from the framework's click group class (``flask.cli.AppGroup`` or
``quart.cli.AppGroup``) and its ``current_app``; :mod:`htcluster._flask.cli`
and :mod:`htcluster._quart.cli` are those two calls.

``status``: for the main cluster and each ``HYPERTABLE_BINDS`` entry it
prints a heading (the bind, its strategy), the health table of
:func:`htcluster.cli.status.check_hosts` (each host pinged in parallel
through a fresh connection; the app's routing objects, blocking or
``htcluster.aio``, are not used, so nothing binds to an event loop) and,
when the routing object has ``stats()``, its counters per host.  It exits 1
when any host of any bind is down.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import click

from ..cli.status import check_hosts, down_message, format_status

__all__ = ["EXTENSION_KEY", "format_stats", "hypertable_group", "report_status"]

#: Where the per-app state is kept: ``app.extensions[EXTENSION_KEY]``.
EXTENSION_KEY = "hypertable"


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


def _title(state: Any) -> str:
    name = "main" if state.bind_name is None else f"bind {state.bind_name!r}"
    return f"{name}: {state.settings.strategy}, {len(state.settings.hosts)} host(s)"


def report_status(app: Any, timeout: Optional[float], echo: Callable[[str], Any] = click.echo) -> list[str]:
    """Ping every broker of every cluster of ``app``, print health and counters, return what is down.

    :param app: a Flask or Quart app (or the framework's ``current_app``) with the extension registered.
    :param timeout: seconds each host gets to answer; ``None``: each cluster's ``HYPERTABLE_TIMEOUT_MSECS``.
    :param echo: prints one block of text.
    :returns: one line per cluster that has a host down (empty when all are up).
    :raises click.ClickException: the app has no Hypertable extension.
    """
    state = app.extensions.get(EXTENSION_KEY)
    if state is None:
        raise click.ClickException("the app has no Hypertable extension: call ht.init_app(app)")
    problems = []
    for cluster in state.every():
        statuses = check_hosts(cluster.settings.hosts, timeout=timeout or cluster.settings.socket_timeout)
        echo(_title(cluster))
        echo(format_status(statuses))
        stats = cluster.stats()
        if stats:
            echo("counters:")
            echo(format_stats(stats))
        echo("")
        problem = down_message(statuses)
        if problem:
            problems.append(problem if cluster.bind_name is None else f"bind {cluster.bind_name!r}: {problem}")
    return problems


def hypertable_group(group_class: Callable[..., click.Group], current_app: Any,
                     **command_options: Any) -> click.Group:
    """Return the ``hypertable`` command group for one framework.

    :param group_class: the framework's click group (``flask.cli.AppGroup``, ``quart.cli.AppGroup``).
    :param current_app: the framework's ``current_app``, read when a command runs.
    :param command_options: passed to ``group.command`` (Quart's ``with_appcontext=True``; Flask's
        ``AppGroup`` enters the app context by default).
    :returns: the group, to add with ``app.cli.add_command``.
    """
    group = group_class("hypertable", help="The Hypertable brokers of this app.")

    @group.command("status", **command_options)
    @click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
                  help="Seconds each host gets to answer (default: each cluster's HYPERTABLE_TIMEOUT_MSECS).")
    def status_command(timeout: Optional[float]) -> None:
        """Ping every broker of every bind in parallel, print health and counters; exit 1 if any is down."""
        problems = report_status(current_app, timeout)
        if problems:
            raise click.ClickException("; ".join(problems))

    return group
