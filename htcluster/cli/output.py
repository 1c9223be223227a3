"""What the ``htcluster`` command prints: error lines, HQL results, a progress bar.

:func:`explain` turns an exception into the one line a user sees;
:func:`format_hql_result` renders an ``HqlResult`` with
:func:`~htcluster.cli.status.render_table`; :func:`progress_bar` follows a load.
"""
from __future__ import annotations

import contextlib
import itertools
import socket
import sys
import time
from typing import Any, Callable, Optional

import click
from thrift.Thrift import TApplicationException
from thrift.transport.TTransport import TTransportException

from ..errors import (BroadcastError, BrokerUnavailable, ConfigError, FlushError, HtclusterError, NoHostAvailable,
                      PoolTimeout)
from ..hosts import Host
from .status import render_table
from ..types import ClientException

__all__ = ["HOSTS_ENV", "explain", "format_hql_result", "progress_bar", "unreachable"]

#: Environment variable holding the default ``--hosts``.
HOSTS_ENV = "HYPERTABLE_HOSTS"


#: Host names that mean "this machine": a hint may then say how to start a broker there.
_LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0", ""})


def _failed_hosts(exc: BaseException) -> dict[str, BaseException]:
    """``{'host:port': cause}`` of a transport failure: the per-host errors, or the one host named."""
    if isinstance(exc, NoHostAvailable) and exc.errors:
        return dict(exc.errors)
    host = getattr(exc, "host", None)
    return {str(host): exc} if host else {}


def _host_hint(address: str, cause: BaseException, timeout: Optional[float]) -> str:
    """What to do about one host, from how it failed (refused, silent, or something else)."""
    try:
        host = Host.parse(address)
    except ConfigError:
        return f"check {address} with 'htcluster status --hosts {address}'"
    if isinstance(cause.__cause__, socket.gaierror):
        return f"the name {host.host!r} does not resolve: check it in --hosts / ${HOSTS_ENV}"
    kind = getattr(cause, "type", None)
    within = f"within {timeout:g} s" if timeout is not None else "in time"
    if kind == TTransportException.TIMED_OUT or "timed out" in str(cause):
        if getattr(cause, "sent", True):
            return (f"{address} accepted the connection but did not answer {within}: the broker is hung or "
                    f"overloaded; check it with 'htcluster status --hosts {address}', or raise --timeout")
        return f"{address} did not accept a connection {within}: check the address and any firewall"
    if host.host in _LOCAL_NAMES or host.host.startswith("127."):
        return (f"nothing answers at {address}: start a broker there with 'htcluster broker --port {host.port}' "
                f"(or 'htcluster cluster')")
    return f"check that a ThriftBroker runs at {address} ('htcluster status --hosts {address}')"


def unreachable(exc: BaseException, timeout: Optional[float] = None) -> str:
    """Return the message for a broker that could not be reached, with a hint per failed host.

    :param exc: a :class:`~htcluster.errors.BrokerUnavailable` or
        :class:`~htcluster.errors.NoHostAvailable`.
    :param timeout: the command's ``--timeout`` in seconds, named in the hint
        for a host that did not answer; ``None`` when the command has none.
    :returns: ``"cannot reach a broker: <error>; <hint for each host>; or point --hosts ..."``.
    """
    hints = [_host_hint(address, cause, timeout) for address, cause in _failed_hosts(exc).items()]
    hints.append(f"or point --hosts / ${HOSTS_ENV} at running brokers")
    return f"cannot reach a broker: {exc}; " + "; ".join(hints)


def explain(exc: BaseException, timeout: Optional[float] = None) -> Optional[str]:
    """Return the one-line message a user sees for ``exc``, or ``None`` if it is a bug.

    :param exc: an exception that escaped a command.
    :param timeout: the command's ``--timeout`` (seconds), if it has one.
    :returns: what went wrong and what to do about it; a transport failure
        names each host that failed and how to get it answering.
    """
    if isinstance(exc, (BrokerUnavailable, NoHostAvailable)):
        return unreachable(exc, timeout)
    if isinstance(exc, FlushError) and exc.errors:  # why the first batch failed, as that error is told
        cause = explain(next(iter(exc.errors.values())), timeout)
        return f"{len(exc.cells):,} cells were not acknowledged: {cause or exc}"
    if isinstance(exc, BroadcastError):
        return f"some hosts failed: {exc}; check them with 'htcluster status'"
    if isinstance(exc, PoolTimeout):
        return f"{exc}; the brokers are overloaded or hung: check them with 'htcluster status'"
    if isinstance(exc, ConfigError):
        return f"invalid setting: {exc}"
    if isinstance(exc, HtclusterError):
        return str(exc)
    if isinstance(exc, ClientException):
        return f"the broker refused: {exc.message} (error code {exc.code})"
    if isinstance(exc, TApplicationException):
        return f"the broker failed internally: {exc.message or exc} (Thrift application error {exc.type})"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f": {exc.filename}" if getattr(exc, "filename", None) else "")
    if isinstance(exc, EOFError):
        return f"input ended early (truncated gzip file?): {exc}"
    return None


def _timestamp(ns: Optional[int]) -> str:
    if ns is None:
        return "-"
    seconds, rest = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{rest:09d}"


def format_hql_result(result: Any) -> str:
    """Render an ``HqlResult`` for people: a cell table, result lines, or the ids it returned.

    :param result: the answer of ``hql_query``.
    :returns: text without a trailing newline; cell timestamps are UTC.
    """
    parts: list[str] = []
    if result.cells is not None:
        rows = [(c.key.row, c.key.column_family + (f":{c.key.column_qualifier}" if c.key.column_qualifier else ""),
                 _timestamp(c.key.timestamp),
                 (c.value or b"").decode("utf-8", "replace")) for c in result.cells]
        if rows:
            parts.append(render_table(("row", "column", "timestamp (UTC)", "value"), rows))
        parts.append(f"({len(rows)} cell{'s' if len(rows) != 1 else ''})")
    if result.results is not None:
        parts.extend(result.results)
        parts.append(f"({len(result.results)} line{'s' if len(result.results) != 1 else ''})")
    if result.scanner is not None:
        parts.append(f"scanner id {result.scanner}")
    if result.mutator is not None:
        parts.append(f"mutator id {result.mutator}")
    return "\n".join(parts) or "ok"


def progress_bar(stack: contextlib.ExitStack, lines: Any, count: Optional[int]) -> Optional[Callable[[Any], None]]:
    """Start a progress bar on stderr if it is a terminal; return the ``on_batch`` callback that moves it.

    :param stack: closes the bar.
    :param lines: the input; a :class:`~htcluster.cli.weblog.LogText` tells how
        many bytes of its file were read (compressed bytes for gzip).
    :param count: lines of a generated log, or ``None`` for a file.
    :returns: a callback taking the :class:`~htcluster.cli.logload.LoadReport`
        after each acknowledged batch, or ``None`` when stderr is not a terminal.
    """
    if not sys.stderr.isatty():
        return None
    total = count if count is not None else getattr(lines, "size", None)
    bar = stack.enter_context(click.progressbar(
        itertools.count() if total is None else None, length=total, label="loading", file=sys.stderr,
        item_show_func=lambda report: report and f"{report.lines:,} lines, {report.cells:,} cells"))
    shown = 0

    def advance(report: Any) -> None:
        nonlocal shown
        position = report.lines if count is not None else lines.position
        bar.update(position - shown, report)
        if position == shown:  # the file was read ahead: no step, but the counts changed
            bar.render_progress()
        shown = position
    return advance
