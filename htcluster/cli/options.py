"""What every ``htcluster`` command shares: the error wrapper and the common options.

:class:`Group` is the click group class whose commands report htcluster's
errors as one line (:func:`friendly`); :func:`hosts_option`,
:func:`namespace_option` and :func:`input_options` add the options several
commands take; :func:`open_input` opens ``--input``.
"""
from __future__ import annotations

import functools
import os
from typing import Any, Callable, TypeVar

import click

from ..errors import ConfigError
from ..hosts import DEFAULT_PORT, Host, parse_hosts
from .._io.resource import DEFAULT_CONNECT_TIMEOUT, DEFAULT_SOCKET_TIMEOUT
from .._io.tls import tls_context
from .output import HOSTS_ENV, explain
from .weblog import GENERATED_LINES, open_log

__all__ = ["DEFAULT_CALL_TIMEOUT", "DEFAULT_HOSTS", "NAMESPACE_ENV", "TLS_ENV", "Group", "friendly", "hosts_option",
           "input_options", "namespace_option", "open_input", "pool_options", "timeout_option", "tls_options"]

#: Environment variable holding the default ``--namespace``.
NAMESPACE_ENV = "HYPERTABLE_NAMESPACE"
DEFAULT_HOSTS = f"localhost:{DEFAULT_PORT}"
#: Seconds one broker call of ``hql`` or ``load`` may wait for its answer: the library's socket timeout.
DEFAULT_CALL_TIMEOUT = DEFAULT_SOCKET_TIMEOUT
#: Environment variable holding the default ``--url``.
URL_ENV = "HYPERTABLE_URL"
#: The TLS options and the environment variables of their defaults (the Flask settings' names).
TLS_ENV = {"--tls-ca": "HYPERTABLE_SSL_CA", "--tls-cert": "HYPERTABLE_SSL_CERT", "--tls-key": "HYPERTABLE_SSL_KEY"}

F = TypeVar("F", bound=Callable[..., Any])


def friendly(command: F) -> F:
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
            message = explain(exc, kwargs.get("timeout"))
            if message is None:
                raise
            raise click.ClickException(message) from None
    return wrapper  # type: ignore[return-value]


class Group(click.Group):
    """A click group whose commands report errors through :func:`friendly`."""

    def add_command(self, cmd: click.Command, name: "str | None" = None) -> None:
        if cmd.callback is not None and not getattr(cmd.callback, "_htcluster_friendly", False):
            cmd.callback = friendly(cmd.callback)
            cmd.callback._htcluster_friendly = True  # type: ignore[attr-defined]
        super().add_command(cmd, name)


def _hosts_default() -> str:
    return os.environ.get(HOSTS_ENV) or DEFAULT_HOSTS


def _parse_url_option(ctx: click.Context, param: click.Parameter, value: "str | None") -> None:
    """Keep the parsed ``--url`` in the context, where ``--hosts``, ``--namespace`` and the options read it."""
    from .._routing.url import parse_url

    if value:
        try:
            ctx.meta["htcluster.url"] = parse_url(value)
        except ConfigError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def _url(ctx: "click.Context | None" = None) -> Any:
    ctx = ctx or click.get_current_context(silent=True)
    return None if ctx is None else ctx.meta.get("htcluster.url")


def _parse_hosts_option(ctx: click.Context, param: click.Parameter, value: str) -> list[Host]:
    url = _url(ctx)
    if url is not None:
        if value != _hosts_default():  # given on the command line (the source is not known yet here)
            raise click.BadParameter("give --url or --hosts, not both (the URL names the hosts)", ctx=ctx,
                                     param=param)
        value = ",".join(url.hosts)
    try:
        return parse_hosts(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def hosts_option(f: F) -> F:
    """Add ``--hosts`` (parsed into a list of :class:`~htcluster.hosts.Host`), ``--url`` and the TLS options.

    ``--url hypertable://h1,h2/ns?opt=value`` (default ``$HYPERTABLE_URL``) names
    the hosts instead, gives ``--namespace`` its default (the path) and the
    routing object its options (:func:`htcluster.from_url`).
    """
    f = _tls_option("--tls-key", "PEM file of the client certificate's key, when not in --tls-cert's file.")(f)
    f = _tls_option("--tls-cert", "PEM file of a client certificate (and key), for brokers that require one.")(f)
    f = _tls_option("--tls-ca", "PEM file of the CA(s) of the brokers' certificates: speak TLS to them "
                                "(certificates and host names checked).")(f)
    f = click.option("--hosts", "hosts", default=_hosts_default, callback=_parse_hosts_option,
                     show_default=f"${HOSTS_ENV} or {DEFAULT_HOSTS}",
                     help="Comma-separated brokers, host[:port].")(f)
    return click.option("--url", envvar=URL_ENV, callback=_parse_url_option, expose_value=False, is_eager=True,
                        show_envvar=True, metavar="URL",
                        help="hypertable://host[:port],.../namespace?option=value: the brokers, the default "
                             "namespace and routing options in one string (instead of --hosts).")(f)


def _keep_tls(ctx: click.Context, param: click.Parameter, value: "str | None") -> None:
    if value:
        ctx.meta.setdefault("htcluster.tls", {})[param.name] = value


def _tls_option(name: str, help: str) -> Callable[[F], F]:
    return click.option(name, envvar=TLS_ENV[name], show_envvar=True, metavar="FILE", expose_value=False,
                        callback=_keep_tls, help=help)


def tls_options() -> dict[str, Any]:
    """Return ``{'ssl_context': ...}`` from ``--tls-ca``/``--tls-cert``/``--tls-key``, or ``{}`` (plaintext).

    :raises click.BadParameter: a file cannot be read or holds no certificate or key.
    """
    ctx = click.get_current_context(silent=True)
    given = {} if ctx is None else ctx.meta.get("htcluster.tls")
    if not given:
        return {}
    try:
        return {"ssl_context": tls_context(given.get("tls_ca"), given.get("tls_cert"), given.get("tls_key"))}
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--tls-ca/--tls-cert/--tls-key") from None


def namespace_option(default: str) -> Callable[[F], F]:
    """Add ``--namespace`` with ``$HYPERTABLE_NAMESPACE`` or ``default`` as its default."""
    def namespace_default() -> str:
        url = _url()
        return (url.namespace if url is not None and url.namespace else None) or \
            os.environ.get(NAMESPACE_ENV) or default

    return click.option("--namespace", "-n", default=namespace_default,
                        show_default=f"${NAMESPACE_ENV} or {default!r}", help="Namespace to work in.")


def timeout_option(default: float) -> Callable[[F], F]:
    """Add ``--timeout SECONDS`` (float > 0): how long one broker call may wait for its answer."""
    return click.option("--timeout", default=default, show_default=True, type=click.FloatRange(min=0, min_open=True),
                        help="Seconds a broker may take to answer one call (and to accept a connection).")


def pool_options(timeout: float) -> dict[str, Any]:
    """Return the Pool options that bound every wait of a command by ``timeout`` seconds.

    :param timeout: ``--timeout``, seconds (float > 0).
    :returns: ``socket_timeout`` (the answer of one call), ``connect_timeout``
        (at most the library's default) and ``pool_timeout`` (a pool checkout), in seconds;
        ``ssl_context`` with ``--tls-ca``/``--tls-cert``; with ``--url``, its options over these.
    """
    options: dict[str, Any] = {"socket_timeout": timeout, "connect_timeout": min(timeout, DEFAULT_CONNECT_TIMEOUT),
                               "pool_timeout": timeout, **tls_options()}
    url = _url()
    if url is not None:  # the URL's own options win (they were written for these brokers)
        options.update(url.options)
    return options


def input_options(f: F) -> F:
    """Add ``--input FILE`` and ``--lines N`` (size of the generated log used without ``--input``)."""
    f = click.option("--lines", "count", default=GENERATED_LINES, show_default=True, type=click.IntRange(1),
                     help="Lines of the generated log used without --input.")(f)
    return click.option("--input", "input_", metavar="FILE",
                        help="Apache access log, plain or gzip, '-' for stdin (default: a generated log).")(f)


def open_input(path: str) -> Any:
    """Open ``--input`` with :func:`htcluster.cli.weblog.open_log`, turning failures into a usage error.

    :param path: a file path, or ``'-'`` for stdin.
    :returns: the open :class:`~htcluster.cli.logfile.LogText`.
    :raises click.BadParameter: the file cannot be read.
    """
    try:
        return open_log(path)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path!r}: {exc.strerror or exc}; give an Apache access "
                                 f"log, plain or gzip, or '-' for stdin", param_hint="--input") from None
