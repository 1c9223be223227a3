"""Configuration by URL: ``hypertable://h1:15867,h2/logs?strategy=replicas&hedge=0.05``.

:func:`from_url` builds the routing object one string describes (the way
``redis.from_url`` and SQLAlchemy URLs do): the hosts come from the network
location (commas between hosts), the path names the default namespace of
calls that name none, and the query parameters are the constructor's
keyword options, converted from text and then checked by the constructor
like any other value.  ``tls=true`` (or any of ``tls_ca``, ``tls_cert``,
``tls_key``: PEM files) builds the ``ssl_context`` (:func:`htcluster.tls_context`).
"""
from __future__ import annotations

import difflib
import urllib.parse
from typing import Any, Callable, NamedTuple, Optional, Union

from .._call.attempt import Pool
from .._io.tls import tls_context
from ..errors import ConfigError
from .base import POOL_OPTIONS, ROUTING_OPTIONS
from .replicas import Replicas
from .resources import Resources
from .shards import Shards

__all__ = ["SCHEME", "STRATEGIES", "TLS_PARAMETERS", "ParsedUrl", "from_url", "parse_url"]

#: The URL scheme.
SCHEME = "hypertable"
#: ``strategy=`` values and what they build.
STRATEGIES = ("replicas", "resources", "shards", "pool")


def _number(name: str, text: str) -> Union[int, float]:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"URL option {name}={text!r} must be a number") from None


def _integer(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"URL option {name}={text!r} must be a whole number, e.g. {name}=5") from None


def _boolean_or_int(name: str, text: str) -> Union[bool, int]:
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"URL option {name}={text!r} must be an int or true/false") from None


def _boolean_or_number(name: str, text: str) -> Union[bool, int, float]:
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    return _number(name, text)


#: How the text of each option becomes a value (numbers by default).
_CONVERT: dict[str, Callable[[str, str], Any]] = {
    "retry": _boolean_or_int,
    "size": _integer,
    "max_overflow": _integer,
    "max_frame_size": _integer,
    "balance": lambda name, text: text,
    "max_connecting": _integer,
    "min_size": _integer,
    "consecutive_gateway_failure": _integer,
    "keepalive": _boolean_or_number,
}
#: Options that cannot be spelled in a URL (objects, not text).
_NOT_IN_URLS = frozenset({"clock", "rng", "listeners", "balancer", "retry_budget", "namespace", "ssl_context"})
#: The TLS parameters: ``tls=true`` and the PEM files of :func:`~htcluster._io.tls.tls_context`.
TLS_PARAMETERS = ("tls", "tls_ca", "tls_cert", "tls_key")


class ParsedUrl(NamedTuple):
    """What a ``hypertable://`` URL says: the strategy, the hosts, the default namespace, the options."""

    strategy: str
    hosts: list[str]
    namespace: Optional[str]
    options: dict[str, Any]


def parse_url(url: str) -> ParsedUrl:
    """Read ``url`` without building anything (see :func:`from_url` for the form).

    :returns: a :class:`ParsedUrl`; option values converted from text, not yet checked by a class.
    :raises ConfigError: another scheme, no host, an unknown strategy or option, a value that is not a number.
    """
    if not isinstance(url, str):
        raise ConfigError(f"a URL must be a str, got {url!r}")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != SCHEME:
        raise ConfigError(f"a htcluster URL starts with {SCHEME}://, got {url!r} "
                          f"(e.g. {SCHEME}://ht1:15867,ht2/namespace?strategy=replicas)")
    hosts = [h for h in parts.netloc.split(",") if h]
    if not hosts or "@" in parts.netloc:
        raise ConfigError(f"no hosts in {url!r}: write {SCHEME}://host[:port][,host[:port]...]"
                          if not hosts else f"user names and passwords are not part of a {SCHEME} URL: {url!r}")
    namespace = urllib.parse.unquote(parts.path.strip("/")) or None
    query = urllib.parse.parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    strategy = "replicas"
    values: dict[str, Any] = {}
    tls: dict[str, str] = {}
    allowed = (ROUTING_OPTIONS | POOL_OPTIONS) - _NOT_IN_URLS
    for name, texts in query.items():
        if len(texts) != 1:
            raise ConfigError(f"URL option {name} is given {len(texts)} times in {url!r}; give it once")
        text = texts[0]
        if name == "strategy":
            if text not in STRATEGIES:
                raise ConfigError(f"strategy={text!r} in {url!r}: choose one of {', '.join(STRATEGIES)}")
            strategy = text
            continue
        if name in TLS_PARAMETERS:
            tls[name] = text
            continue
        if name not in allowed:
            close = difflib.get_close_matches(name, sorted(allowed), n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; allowed: {', '.join(sorted(allowed))}"
            raise ConfigError(f"unknown URL option {name!r} in {url!r}{hint}")
        values[name] = _CONVERT.get(name, _number)(name, text)
    if tls:
        values["ssl_context"] = _tls(tls, url)
    return ParsedUrl(strategy, hosts, namespace, values)


def _tls(given: dict[str, str], url: str) -> Any:
    """Build the ``ssl_context`` of the URL's ``tls``/``tls_ca``/``tls_cert``/``tls_key`` parameters."""
    switch = given.get("tls", "true").lower()
    if switch not in ("true", "yes", "on", "1"):
        if switch in ("false", "no", "off", "0") and len(given) == 1:
            return None
        raise ConfigError(f"tls={given['tls']!r} in {url!r}: write tls=true, or leave out tls and its files")
    return tls_context(ca=given.get("tls_ca") or None, cert=given.get("tls_cert") or None,
                       key=given.get("tls_key") or None)


def from_url(url: str, **options: Any) -> Union[Replicas, Resources, Shards, Pool]:
    """Build the routing object that ``url`` describes.

    ``hypertable://HOST[:PORT][,HOST[:PORT]...][/NAMESPACE][?OPTION=VALUE&...]``

    * ``strategy``: ``replicas`` (the default: brokers in front of the same
      data), ``resources``, ``shards`` (each host its own shard key, as in the
      CLI) or ``pool`` (one host);
    * the path, when present, is the default namespace of calls that take one
      and name none (``namespace=`` option of the routing classes);
    * ``tls=true`` speaks TLS (with the system's CAs), ``tls_ca=FILE`` with
      the CA(s) of that PEM file, ``tls_cert=FILE`` and ``tls_key=FILE`` add a
      client certificate (:func:`htcluster.tls_context`; server hostnames are checked);
    * every other parameter is a keyword option of the class, in its units
      (seconds for durations: ``socket_timeout=5``, ``hedge=0.05``).

    :param url: the URL.
    :param options: keyword options that override the URL's (objects such as
        ``listeners`` or ``clock``, which a URL cannot spell).
    :returns: a :class:`~htcluster.Replicas`, :class:`~htcluster.Resources`,
        :class:`~htcluster.Shards` or :class:`~htcluster.Pool`.
    :raises ConfigError: another scheme, no host, an unknown strategy or option
        (the message names the closest one), or a value the class refuses.

    Example::

        replicas = htcluster.from_url("hypertable://ht1,ht2,ht3/logs?hedge=0.05&socket_timeout=5")
        replicas.call("get_cells", "LogDb", ScanSpec(row_limit=10))   # in namespace logs
    """
    strategy, hosts, namespace, values = parse_url(url)
    values.update(options)
    if strategy == "pool":
        if len(hosts) != 1:
            raise ConfigError(f"strategy=pool takes one host, {url!r} names {len(hosts)}: "
                              "use strategy=replicas, resources or shards")
        unknown = set(values) - POOL_OPTIONS - {"listeners"}
        if unknown:
            raise ConfigError(f"option(s) {sorted(unknown)} do not apply to strategy=pool")
        if namespace is not None:
            raise ConfigError(f"strategy=pool has no default namespace; drop the path of {url!r}")
        return Pool(hosts[0], **values)
    if namespace is not None:
        values.setdefault("namespace", namespace)
    if strategy == "shards":
        return Shards([(host, host) for host in hosts], **values)
    if strategy == "resources":
        return Resources(hosts, **values)
    return Replicas(hosts, **values)
