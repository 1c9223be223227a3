"""Read and check the ``HYPERTABLE_*`` keys of a Flask config.

:func:`check_app_config` looks at the app's own keys before anything is
filled in: hosts must be configured (for the ``Hypertable`` extension), an
unknown ``HYPERTABLE_*`` key is a :class:`~htcluster.errors.ConfigWarning`
naming the closest known key, and so is a ``*_MSECS`` value below 100 (it is
milliseconds).  :func:`set_defaults` fills the defaults in (``setdefault``:
values the app set win); :func:`read_settings` turns the config into a frozen :class:`Settings`,
rejecting every invalid value with a :class:`~htcluster.errors.ConfigError`
that names the key, the value and what is allowed.  Loose input (strings from
the environment, comma-separated host lists) is normalised here, once; the
rest of the extension sees typed values only.  The keys:

=============================  ===============================================
``HYPERTABLE_HOSTS``           the brokers: a list of ``'host[:port]'`` or one
                               string of them separated by commas or spaces
                               (``None``: use ``HYPERTABLE_HOST``/
                               ``HYPERTABLE_PORT``; the ``Hypertable``
                               extension needs one of the three, or
                               ``HYPERTABLE_SHARDS``, set by the app)
``HYPERTABLE_HOSTS_FILE``      a file holding the hosts (one or more a line,
                               ``#`` comments), read at ``init_app`` and again
                               when it changes (:mod:`htcluster._flask.hostsfile`);
                               replaces ``HYPERTABLE_HOSTS`` (``None``)
``HYPERTABLE_HOSTS_RELOAD``    seconds between checks of that file's
                               ``mtime``, at the start of a request; 0: every
                               request (1.0)
``HYPERTABLE_HOST``            Flask-Hypertable's single host (``'localhost'``
                               for its drop-in classes)
``HYPERTABLE_PORT``            its port, and that of host entries naming none
                               (15867; 38080 before Hypertable 0.9.8)
``HYPERTABLE_URL``             one string for the hosts, the strategy, the
                               namespace and the options, as for
                               :func:`htcluster.from_url`
                               (``hypertable://h1,h2/logs?hedge=0.05``); it
                               replaces those keys (``None``)
``HYPERTABLE_STRATEGY``        one of :data:`STRATEGIES`; ``None``: ``shards``
                               with ``HYPERTABLE_SHARDS``, else ``pool`` for
                               one host, ``replicas`` for several
``HYPERTABLE_SHARDS``          ``{shard key: hosts}`` for ``shards``
``HYPERTABLE_POOL_SIZE``       idle connections kept per host, >= 0 (5)
``HYPERTABLE_MAX_OVERFLOW``    extra connections per host under load, >= 0 (10)
``HYPERTABLE_MAX_CONNECTING``  connects in progress at once per host, >= 1 (2)
``HYPERTABLE_POOL_MIN_SIZE``   connections kept open per host by the
                               maintenance thread, 0 to ``POOL_SIZE`` (0)
``HYPERTABLE_KEEPALIVE``       TCP keepalive: ``True``, ``False``, seconds
                               of idleness before the first probe, or
                               ``{idle, interval, count}`` (``True``)
``HYPERTABLE_TIMEOUT_MSECS``   socket timeout in **milliseconds** (5000; a
                               value below 100 warns: seconds by habit?)
``HYPERTABLE_POOL_TIMEOUT``    seconds to wait for a free connection (10.0)
``HYPERTABLE_NAMESPACE``       the namespace of ``ht.namespace()`` (``None``)
``HYPERTABLE_OPTIONS``         ``{option: value}`` for the routing class
                               (:func:`option_names`; ``None``)
``HYPERTABLE_BINDS``           more clusters (:mod:`htcluster._flask.binds`)
``HYPERTABLE_SSL_CA``          TLS: a PEM file of the CA(s) of the brokers'
                               certificates, or ``True`` for the system's CAs
                               (``None``: plaintext)
``HYPERTABLE_SSL_CERT``        TLS: a PEM file of the client certificate
                               (and key), for brokers that require one
``HYPERTABLE_SSL_KEY``         TLS: the PEM file of its key, when apart
``HYPERTABLE_RECORD_QUERIES``  record each request's calls (False)
``HYPERTABLE_JSON``            ``jsonify`` encodes cells and values (True)
=============================  ===============================================

``HYPERTABLE_OPTIONS`` names the keyword arguments of the routing classes
themselves; the names allowed are read from their signatures
(:func:`option_names`), so an option added to ``Pool`` or ``Resources``
is accepted here without a change.  ``HYPERTABLE_BINDS`` gives more named
clusters, each checked as the main one is (:mod:`htcluster._flask.binds`).
"""
from __future__ import annotations

import difflib
import math
import os
import ssl
import sys
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, MutableMapping, Optional

from ..errors import ConfigError, ConfigWarning
from ..hosts import DEFAULT_PORT, Host, parse_hosts
from .._pool.pool import DEFAULT_MAX_CONNECTING, DEFAULT_MAX_OVERFLOW
from .._io.keepalive import DEFAULT_KEEPALIVE, KeepAlive
from .._pool.pool import DEFAULT_POOL_TIMEOUT as _POOL_TIMEOUT
from .._pool.pool import DEFAULT_SIZE as DEFAULT_POOL_SIZE
from .._routing.base import POOL_OPTIONS, ROUTING_OPTIONS
from .._io.tls import tls_context

__all__ = ["DEFAULTS", "HOST_KEYS", "STRATEGIES", "Settings", "check_app_config", "option_names", "read_settings",
           "set_defaults", "warn_msecs"]

#: Names accepted by ``HYPERTABLE_STRATEGY``, in the order the errors list them.
STRATEGIES = ("pool", "resources", "shards", "replicas")

#: Socket timeout in milliseconds (Flask-Hypertable's key and default).  The library's default is
#: 30 s; the Flask extensions keep 5 s on purpose: a web request should fail in seconds, not hang
#: on one broker, and it is what apps written for Flask-Hypertable already run with.
DEFAULT_TIMEOUT_MSECS = 5000
#: Seconds a request waits for a free pooled connection (the library's default too): below the
#: 30-60 s a front proxy usually waits, so the app can still answer 503 itself.
DEFAULT_POOL_TIMEOUT = _POOL_TIMEOUT

#: What :func:`set_defaults` puts in ``app.config``.  ``HYPERTABLE_HOSTS`` and
#: ``HYPERTABLE_STRATEGY`` default to ``None``: "use the legacy host and port"
#: and "choose from the number of hosts".
DEFAULTS: Mapping[str, Any] = {
    "HYPERTABLE_URL": None,
    "HYPERTABLE_HOSTS": None,
    "HYPERTABLE_HOSTS_FILE": None,
    "HYPERTABLE_HOSTS_RELOAD": 1.0,
    "HYPERTABLE_HOST": "localhost",
    "HYPERTABLE_PORT": DEFAULT_PORT,
    "HYPERTABLE_STRATEGY": None,
    "HYPERTABLE_SHARDS": None,
    "HYPERTABLE_POOL_SIZE": DEFAULT_POOL_SIZE,
    "HYPERTABLE_MAX_OVERFLOW": DEFAULT_MAX_OVERFLOW,
    "HYPERTABLE_MAX_CONNECTING": DEFAULT_MAX_CONNECTING,
    "HYPERTABLE_POOL_MIN_SIZE": 0,
    "HYPERTABLE_KEEPALIVE": True,
    "HYPERTABLE_TIMEOUT_MSECS": DEFAULT_TIMEOUT_MSECS,
    "HYPERTABLE_POOL_TIMEOUT": DEFAULT_POOL_TIMEOUT,
    "HYPERTABLE_NAMESPACE": None,
    "HYPERTABLE_OPTIONS": None,
    "HYPERTABLE_BINDS": None,
    "HYPERTABLE_SSL_CA": None,
    "HYPERTABLE_SSL_CERT": None,
    "HYPERTABLE_SSL_KEY": None,
    "HYPERTABLE_RECORD_QUERIES": False,
    "HYPERTABLE_JSON": True,
}

#: The keys that say where the brokers are; the ``Hypertable`` extension needs one of them set.
HOST_KEYS = ("HYPERTABLE_URL", "HYPERTABLE_HOSTS", "HYPERTABLE_HOSTS_FILE", "HYPERTABLE_SHARDS", "HYPERTABLE_HOST",
             "HYPERTABLE_PORT")

#: A ``*_MSECS`` value below this many milliseconds is taken for seconds written by habit (a warning).
MSECS_WARN_BELOW = 100

#: The option names the dedicated keys set; an entry of ``HYPERTABLE_OPTIONS`` wins over them.
LEGACY_OPTIONS = {"size": "HYPERTABLE_POOL_SIZE", "max_overflow": "HYPERTABLE_MAX_OVERFLOW",
                  "max_connecting": "HYPERTABLE_MAX_CONNECTING", "min_size": "HYPERTABLE_POOL_MIN_SIZE",
                  "keepalive": "HYPERTABLE_KEEPALIVE",
                  "pool_timeout": "HYPERTABLE_POOL_TIMEOUT", "socket_timeout": "HYPERTABLE_TIMEOUT_MSECS"}


def option_names(strategy: str) -> frozenset[str]:
    """Return the ``HYPERTABLE_OPTIONS`` names ``strategy`` accepts, read from the class signatures.

    :param strategy: one of :data:`STRATEGIES`.
    :returns: the ``Pool`` options (``size``, ``socket_timeout``, ``idle_ping``,
        ...) for ``'pool'``; with the routing ones (``retry``, ``backoff``,
        ``hedge``, ...) for the others: every routing class takes the same options.
    """
    if strategy == "pool":
        return POOL_OPTIONS
    return POOL_OPTIONS | (ROUTING_OPTIONS - {"listeners"})


@dataclass(frozen=True)
class Settings:
    """The checked configuration of one app (or of one bind, see ``binds``).

    :ivar hosts: every broker, in configuration order (for ``shards``, the
        hosts of all shards).
    :ivar strategy: one of :data:`STRATEGIES`.
    :ivar shards: ``{shard key: hosts}`` for ``shards``, else empty.
    :ivar pool_size: idle connections kept per host.
    :ivar max_overflow: extra connections per host beyond ``pool_size``.
    :ivar max_connecting: connects in progress at once per host.
    :ivar min_size: connections kept open per host by the maintenance thread.
    :ivar keepalive: TCP keepalive timings, or ``None`` (off).
    :ivar socket_timeout: seconds a socket read or write may take.
    :ivar pool_timeout: seconds to wait for a free pooled connection.
    :ivar namespace: default namespace of ``ht.namespace()``, or ``None``.
    :ivar options: ``HYPERTABLE_OPTIONS``: keyword arguments of the routing
        class, names checked against :func:`option_names`.
    :ivar binds: ``HYPERTABLE_BINDS``: ``{bind name: Settings}`` (empty in a bind's own settings).
    :ivar record_queries: ``HYPERTABLE_RECORD_QUERIES``.
    :ivar json: ``HYPERTABLE_JSON``: make ``jsonify`` encode cells and cell values.
    :ivar label: how errors name this configuration: ``'HYPERTABLE_OPTIONS'``
        or ``"HYPERTABLE_BINDS['name']"``.
    :ivar hosts_file: ``HYPERTABLE_HOSTS_FILE``: the file the hosts were read from, or ``None``.
    :ivar hosts_reload: ``HYPERTABLE_HOSTS_RELOAD``: seconds between checks of that file.
    :ivar ssl_context: the client ``ssl.SSLContext`` built from ``HYPERTABLE_SSL_CA``,
        ``_CERT`` and ``_KEY``, or ``None`` (plaintext).
    """

    hosts: tuple[Host, ...]
    strategy: str
    shards: Mapping[str, tuple[Host, ...]] = field(default_factory=dict)
    pool_size: int = DEFAULT_POOL_SIZE
    max_overflow: int = DEFAULT_MAX_OVERFLOW
    max_connecting: int = DEFAULT_MAX_CONNECTING
    min_size: int = 0
    keepalive: Optional[KeepAlive] = DEFAULT_KEEPALIVE
    socket_timeout: float = DEFAULT_TIMEOUT_MSECS / 1000.0
    pool_timeout: float = DEFAULT_POOL_TIMEOUT
    namespace: Optional[str] = None
    options: Mapping[str, Any] = field(default_factory=dict)
    binds: Mapping[str, "Settings"] = field(default_factory=dict)
    record_queries: bool = False
    json: bool = True
    label: str = "HYPERTABLE_OPTIONS"
    hosts_file: Optional[str] = None
    hosts_reload: float = 1.0
    ssl_context: Optional[ssl.SSLContext] = field(default=None, compare=False)

    def pool_options(self) -> dict[str, Any]:
        """Return the ``Pool`` keyword arguments of the dedicated keys (pool size, overflow, timeouts, TLS...)."""
        options: dict[str, Any] = {"size": self.pool_size, "max_overflow": self.max_overflow,
                                   "pool_timeout": self.pool_timeout, "socket_timeout": self.socket_timeout}
        if self.max_connecting != DEFAULT_MAX_CONNECTING:
            options["max_connecting"] = self.max_connecting
        if self.min_size:
            options["min_size"] = self.min_size
        if self.keepalive != DEFAULT_KEEPALIVE:
            options["keepalive"] = self.keepalive or False
        if self.ssl_context is not None:
            options["ssl_context"] = self.ssl_context
        return options

    def cluster_options(self) -> dict[str, Any]:
        """Return every keyword argument of the routing class: :meth:`pool_options`, then :attr:`options`."""
        return {**self.pool_options(), **self.options}


def check_app_config(config: Mapping[str, Any], *, hosts_required: bool) -> None:
    """Check the app's own ``HYPERTABLE_*`` keys, before :func:`set_defaults` fills any in.

    :param config: the app's ``app.config`` as the app set it.
    :param hosts_required: refuse a config that names no broker (the
        ``Hypertable`` extension); the Flask-Hypertable drop-in classes pass
        ``False`` and keep its default, ``localhost:15867``.
    :raises ConfigError: ``hosts_required`` and none of :data:`HOST_KEYS` is set.
    :warns ConfigWarning: a ``HYPERTABLE_*`` key that no setting has (naming
        the closest known key), or a ``HYPERTABLE_TIMEOUT_MSECS`` below
        :data:`MSECS_WARN_BELOW` (it is milliseconds).
    """
    if hosts_required and all(config.get(key) is None for key in HOST_KEYS):
        raise ConfigError("no Hypertable brokers configured: set HYPERTABLE_HOSTS to a list such as "
                          "['ht1:15867', 'ht2:15867'] (or one string 'ht1:15867,ht2:15867'), or HYPERTABLE_SHARDS; "
                          "the extension does not assume localhost (for a local stand-in broker, run "
                          "'htcluster broker' and set HYPERTABLE_HOSTS = 'localhost:15867')")
    for key in config:
        if isinstance(key, str) and key.startswith("HYPERTABLE_") and key not in DEFAULTS:
            # Every key shares the 'HYPERTABLE_' prefix: a high cutoff keeps unrelated keys out.
            close = difflib.get_close_matches(key, list(DEFAULTS), n=1, cutoff=0.8)
            hint = f"did you mean {close[0]}?" if close else f"the settings are {', '.join(DEFAULTS)}"
            warnings.warn(f"unknown setting {key}, ignored; {hint}", ConfigWarning,
                          stacklevel=_caller_level())
    if "HYPERTABLE_TIMEOUT_MSECS" in config:
        warn_msecs(config["HYPERTABLE_TIMEOUT_MSECS"], "HYPERTABLE_TIMEOUT_MSECS")


def warn_msecs(value: Any, key: str) -> None:
    """Warn (:class:`~htcluster.errors.ConfigWarning`) when a millisecond ``value`` is below :data:`MSECS_WARN_BELOW`.

    :param value: the setting as given (a number, or a string from the environment).
    :param key: the setting's name, for the message.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        return  # not a number: read_cluster refuses it with a ConfigError
    if 0 < number < MSECS_WARN_BELOW:
        warnings.warn(f"{key}={value!r} is {number:g} milliseconds ({key} is in milliseconds); "
                      f"for {number:g} seconds write {number * 1000:g}", ConfigWarning, stacklevel=_caller_level())


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _caller_level() -> int:
    """The ``stacklevel`` that makes a warning point at the first frame outside htcluster (the app's code)."""
    frame = sys._getframe(2)  # the caller of the function that warns
    level = 2
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
        level += 1
    return level


def set_defaults(config: MutableMapping[str, Any]) -> None:
    """Put every key of :data:`DEFAULTS` the app did not set into ``config``."""
    for key, value in DEFAULTS.items():
        config.setdefault(key, value)


#: Gives the value of one key (its name without ``HYPERTABLE_``), and names it for errors.
Getter = Callable[[str], Any]
Namer = Callable[[str], str]


def _app_name(key: str) -> str:
    return f"HYPERTABLE_{key}"


def read_settings(config: Mapping[str, Any]) -> Settings:
    """Check the ``HYPERTABLE_*`` keys of ``config`` and return them typed.

    Missing keys take their :data:`DEFAULTS`.  Option *names* are checked
    here; their values are checked by the routing class when
    :func:`htcluster._flask.routing.build_cluster` builds it.

    :param config: a Flask ``app.config`` (any mapping).
    :returns: the :class:`Settings`, with the binds of ``HYPERTABLE_BINDS``.
    :raises ConfigError: a value is invalid; the message names the key, the
        value and the allowed values.
    """
    from .binds import read_binds  # binds reuse read_cluster below

    merged = {**DEFAULTS, **config}
    if merged.get("HYPERTABLE_URL") is not None:
        merged.update(url_settings(config))
    hosts_file = merged.get("HYPERTABLE_HOSTS_FILE")
    if hosts_file is not None:
        from .hostsfile import file_settings  # the file's format and checks live there

        merged.update(file_settings(merged))

    def get(key: str) -> Any:
        return merged.get(f"HYPERTABLE_{key}")

    main = read_cluster(get, _app_name, legacy_host=True)
    from .hostsfile import reload_interval

    reload = reload_interval(merged.get("HYPERTABLE_HOSTS_RELOAD"))
    if hosts_file is not None:
        main = replace(main, hosts_file=str(hosts_file), hosts_reload=reload)
    return replace(main, binds=read_binds(merged.get("HYPERTABLE_BINDS"), get, main),
                   record_queries=flag(merged.get("HYPERTABLE_RECORD_QUERIES"), "HYPERTABLE_RECORD_QUERIES"),
                   json=flag(merged.get("HYPERTABLE_JSON"), "HYPERTABLE_JSON"))


def url_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return the ``HYPERTABLE_*`` keys that ``HYPERTABLE_URL`` stands for.

    :param config: the app's config, with ``HYPERTABLE_URL`` set.
    :returns: ``HYPERTABLE_HOSTS`` (or ``_SHARDS``: each host its own key), ``_STRATEGY``,
        ``_NAMESPACE`` and ``_OPTIONS`` (the URL's options over the app's ``HYPERTABLE_OPTIONS``).
    :raises ConfigError: the URL is malformed, or a key it replaces is set too.
    """
    from .._routing.url import parse_url

    url = config["HYPERTABLE_URL"]
    clash = [key for key in ("HYPERTABLE_HOSTS", "HYPERTABLE_SHARDS", "HYPERTABLE_STRATEGY", "HYPERTABLE_NAMESPACE")
             if config.get(key) is not None]
    if clash:
        raise ConfigError(f"HYPERTABLE_URL replaces {', '.join(clash)}: set one or the other")
    try:
        strategy, hosts, namespace, options = parse_url(url)
    except ConfigError as exc:
        raise ConfigError(f"HYPERTABLE_URL: {exc}") from exc
    keys: dict[str, Any] = {"HYPERTABLE_STRATEGY": strategy, "HYPERTABLE_NAMESPACE": namespace,
                            "HYPERTABLE_OPTIONS": {**(config.get("HYPERTABLE_OPTIONS") or {}), **options}}
    if strategy == "shards":
        keys["HYPERTABLE_SHARDS"] = {host: [host] for host in hosts}
    else:
        keys["HYPERTABLE_HOSTS"] = hosts
    return keys


def read_cluster(get: Getter, name: Namer, *, legacy_host: bool, label: str = "HYPERTABLE_OPTIONS",
                 inherited: Optional[Mapping[str, Any]] = None) -> Settings:
    """Check the keys of one cluster (the app's, or one bind's) and return its :class:`Settings`.

    :param get: the value of a key given without its prefix (``'HOSTS'``).
    :param name: the key as errors name it.
    :param legacy_host: fall back to ``HOST``/``PORT`` when ``HOSTS`` and ``SHARDS`` are unset.
    :param label: how errors name the options of this cluster.
    :param inherited: options taken from the app's ``HYPERTABLE_OPTIONS``
        (only those the strategy accepts are kept) before ``OPTIONS``.
    :raises ConfigError: a value is invalid.
    """
    port = integer(get("PORT"), name("PORT"), 1, 65535)
    shards = _shards(get("SHARDS"), port, name)
    hosts = _hosts(get, port, shards, name, legacy_host)
    strategy = _strategy(get("STRATEGY"), hosts, shards, name)
    size = integer(get("POOL_SIZE"), name("POOL_SIZE"), 0)
    overflow = integer(get("MAX_OVERFLOW"), name("MAX_OVERFLOW"), 0)
    if size + overflow < 1:
        raise ConfigError(f"{name('POOL_SIZE')} + {name('MAX_OVERFLOW')} must be at least 1, "
                          f"got {size} + {overflow}: no connection could ever be opened")
    max_connecting = integer(get("MAX_CONNECTING"), name("MAX_CONNECTING"), 1)
    min_size = integer(get("POOL_MIN_SIZE"), name("POOL_MIN_SIZE"), 0, size)
    keepalive = _keepalive(get("KEEPALIVE"), name("KEEPALIVE"))
    allowed = option_names(strategy)
    options = {k: v for k, v in (inherited or {}).items() if k in allowed}
    options.update(_options(get("OPTIONS"), name("OPTIONS"), strategy))
    return Settings(
        hosts=hosts, strategy=strategy, shards=shards, pool_size=size, max_overflow=overflow,
        max_connecting=max_connecting, min_size=min_size, keepalive=keepalive,
        socket_timeout=positive(get("TIMEOUT_MSECS"), name("TIMEOUT_MSECS"), "milliseconds") / 1000.0,
        pool_timeout=positive(get("POOL_TIMEOUT"), name("POOL_TIMEOUT"), "seconds"),
        namespace=_namespace(get("NAMESPACE"), name("NAMESPACE")), options=options, label=label,
        ssl_context=_tls(get, name))


# ------------------------------------------------------------------ one key each

def _tls(get: Getter, name: Namer) -> Optional[ssl.SSLContext]:
    """Build the ``ssl_context`` of ``SSL_CA``/``SSL_CERT``/``SSL_KEY`` (``None`` when none is set)."""
    files: dict[str, Any] = {}
    for key in ("SSL_CA", "SSL_CERT", "SSL_KEY"):
        value = get(key)
        if value is None or value is False or value == "":
            continue
        if value is True and key == "SSL_CA":
            files[key] = None  # the system's CAs
        elif isinstance(value, (str, os.PathLike)):
            files[key] = value
        else:
            raise ConfigError(f"{name(key)} must be the path of a PEM file{' or True' if key == 'SSL_CA' else ''}, "
                              f"got {value!r}")
    if not files:
        return None
    try:
        return tls_context(ca=files.get("SSL_CA"), cert=files.get("SSL_CERT"), key=files.get("SSL_KEY"))
    except ConfigError as exc:
        raise ConfigError(f"{name('SSL_CA')}/{name('SSL_CERT')}/{name('SSL_KEY')}: {exc}") from exc


def _options(value: Any, key: str, strategy: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must be a mapping of option name to value, e.g. "
                          f"{{'idle_ping': 30.0}}, got {type(value).__name__} {value!r}")
    allowed = option_names(strategy)
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        raise ConfigError(f"{key}: unknown option(s) {unknown} for strategy {strategy!r}; "
                          f"allowed: {', '.join(sorted(allowed))}")
    return dict(value)


def _hosts(get: Getter, port: int, shards: Mapping[str, tuple[Host, ...]], name: Namer,
           legacy_host: bool) -> tuple[Host, ...]:
    value = get("HOSTS")
    if value is None:
        if shards:
            return tuple(dict.fromkeys(h for group in shards.values() for h in group))
        if not legacy_host:
            raise ConfigError(f"{name('HOSTS')} is required (a list of 'host[:port]' or a comma-separated "
                              f"string), or {name('SHARDS')}")
        legacy = get("HOST")
        if not isinstance(legacy, str) or not legacy.strip():
            raise ConfigError(f"{name('HOST')} must be a host name or address, got {legacy!r} "
                              f"(or set {name('HOSTS')} to a list of 'host[:port]')")
        return (_parse_host_list(name("HOST"), [legacy], port)[0],)
    if shards:
        raise ConfigError(f"set {name('SHARDS')} or {name('HOSTS')}, not both: with shards "
                          f"the hosts are those of {name('SHARDS')}")
    return tuple(_parse_host_list(name("HOSTS"), value, port))


def _parse_host_list(key: str, value: Any, port: int) -> list[Host]:
    if not isinstance(value, (str, list, tuple)):
        raise ConfigError(f"{key} must be a list of 'host[:port]' or a comma-separated string, "
                          f"got {type(value).__name__} {value!r}")
    try:
        return parse_hosts(value, default_port=port)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _shards(value: Any, port: int, name: Namer) -> dict[str, tuple[Host, ...]]:
    if value is None:
        return {}
    key = name("SHARDS")
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(f"{key} must be a non-empty mapping of shard key to a list "
                          f"of 'host[:port]' (or a comma-separated string), got {value!r}")
    shards: dict[str, tuple[Host, ...]] = {}
    for shard, hosts in value.items():
        if not isinstance(shard, str) or not shard:
            raise ConfigError(f"{key} keys must be non-empty strings, got {shard!r}")
        shards[shard] = tuple(_parse_host_list(f"{key}[{shard!r}]", hosts, port))
    return shards


def _strategy(value: Any, hosts: tuple[Host, ...], shards: Mapping[str, Any], name: Namer) -> str:
    allowed = ", ".join(repr(s) for s in STRATEGIES)
    if value is None:
        return "shards" if shards else "pool" if len(hosts) == 1 else "replicas"
    strategy = value.strip().lower() if isinstance(value, str) else value
    if strategy not in STRATEGIES:
        raise ConfigError(f"{name('STRATEGY')} must be one of {allowed} (or None to choose from "
                          f"the number of hosts), got {value!r}")
    if strategy == "pool" and len(hosts) != 1:
        raise ConfigError(f"{name('STRATEGY')} 'pool' takes exactly one host, {name('HOSTS')} "
                          f"has {len(hosts)}: use 'replicas' or 'resources' for several")
    if (strategy == "shards") != bool(shards):
        raise ConfigError(f"{name('STRATEGY')} 'shards' and {name('SHARDS')} go together: set "
                          "both (the mapping of shard key to hosts) or neither")
    return str(strategy)


def integer(value: Any, key: str, low: int, high: Optional[int] = None) -> int:
    """Return ``value`` (an int, or a string of digits from the environment) checked to be in range.

    :raises ConfigError: naming ``key``, the value and the bounds.
    """
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        number = int(value)
    if number is None or number < low or (high is not None and number > high):
        bounds = f"in {low}..{high}" if high is not None else f">= {low}"
        raise ConfigError(f"{key} must be an integer {bounds}, got {value!r}")
    return number


def positive(value: Any, key: str, unit: str) -> float:
    """Return ``value`` as a finite float > 0.

    :raises ConfigError: naming ``key``, the value and the ``unit``.
    """
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
    if number is None or not math.isfinite(number) or number <= 0:
        raise ConfigError(f"{key} must be a positive number of {unit}, got {value!r}")
    return number


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def flag(value: Any, key: str) -> bool:
    """Return a bool (also from ``'true'``/``'false'``/``'1'``/``'0'`` strings of the environment).

    :raises ConfigError: anything else.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigError(f"{key} must be True or False, got {value!r}")


def _keepalive(value: Any, key: str) -> Optional[KeepAlive]:
    """Read ``KEEPALIVE``: a bool (or its string from the environment), seconds, or a mapping of the timings."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE | _FALSE:
            value = text in _TRUE
        else:
            try:
                value = float(text)
            except ValueError:
                raise ConfigError(f"{key} must be True, False, seconds of idleness before the first probe, or "
                                  f"{{'idle': s, 'interval': s, 'count': n}}, got {value!r}") from None
    try:
        return KeepAlive.coerce(value)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from exc


def _namespace(value: Any, key: str) -> Optional[str]:
    if value is None or (isinstance(value, str) and value.strip()):
        return value.strip() if value is not None else None
    raise ConfigError(f"{key} must be a namespace name such as 'logs' or None, got {value!r}")
