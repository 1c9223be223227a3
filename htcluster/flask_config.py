"""Read and check the ``HYPERTABLE_*`` keys of a Flask config.

:func:`set_defaults` fills the defaults in (``setdefault``: values the app set
win); :func:`read_settings` turns the config into a frozen :class:`Settings`,
rejecting every invalid value with a :class:`~htcluster.errors.ConfigError`
that names the key, the value and what is allowed.  Loose input (strings from
the environment, comma-separated host lists) is normalised here, once; the
rest of the extension sees typed values only.  The keys are documented on
:class:`htcluster.flask_ext.Hypertable`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, MutableMapping, Optional

from .errors import ConfigError
from .hosts import DEFAULT_PORT, Host, parse_hosts
from .pool import DEFAULT_MAX_OVERFLOW, DEFAULT_SIZE as DEFAULT_POOL_SIZE

__all__ = ["DEFAULTS", "STRATEGIES", "Settings", "read_settings", "set_defaults"]

#: Names accepted by ``HYPERTABLE_STRATEGY``, in the order the errors list them.
STRATEGIES = ("pool", "resources", "shards", "replicas")

#: Socket timeout in milliseconds (Flask-Hypertable's key and default).
DEFAULT_TIMEOUT_MSECS = 5000
#: Seconds a request waits for a free pooled connection: below the 30-60 s
#: a front proxy usually waits, so the app can still answer 503 itself.
DEFAULT_POOL_TIMEOUT = 10.0

#: What :func:`set_defaults` puts in ``app.config``.  ``HYPERTABLE_HOSTS`` and
#: ``HYPERTABLE_STRATEGY`` default to ``None``: "use the legacy host and port"
#: and "choose from the number of hosts".
DEFAULTS: Mapping[str, Any] = {
    "HYPERTABLE_HOSTS": None,
    "HYPERTABLE_HOST": "localhost",
    "HYPERTABLE_PORT": DEFAULT_PORT,
    "HYPERTABLE_STRATEGY": None,
    "HYPERTABLE_SHARDS": None,
    "HYPERTABLE_POOL_SIZE": DEFAULT_POOL_SIZE,
    "HYPERTABLE_MAX_OVERFLOW": DEFAULT_MAX_OVERFLOW,
    "HYPERTABLE_TIMEOUT_MSECS": DEFAULT_TIMEOUT_MSECS,
    "HYPERTABLE_POOL_TIMEOUT": DEFAULT_POOL_TIMEOUT,
    "HYPERTABLE_NAMESPACE": None,
}


@dataclass(frozen=True)
class Settings:
    """The checked configuration of one app.

    :ivar hosts: every broker, in configuration order (for ``shards``, the
        hosts of all shards).
    :ivar strategy: one of :data:`STRATEGIES`.
    :ivar shards: ``{shard key: hosts}`` for ``shards``, else empty.
    :ivar pool_size: idle connections kept per host.
    :ivar max_overflow: extra connections per host beyond ``pool_size``.
    :ivar socket_timeout: seconds a socket read or write may take.
    :ivar pool_timeout: seconds to wait for a free pooled connection.
    :ivar namespace: default namespace of ``ht.namespace()``, or ``None``.
    """

    hosts: tuple[Host, ...]
    strategy: str
    shards: Mapping[str, tuple[Host, ...]] = field(default_factory=dict)
    pool_size: int = DEFAULT_POOL_SIZE
    max_overflow: int = DEFAULT_MAX_OVERFLOW
    socket_timeout: float = DEFAULT_TIMEOUT_MSECS / 1000.0
    pool_timeout: float = DEFAULT_POOL_TIMEOUT
    namespace: Optional[str] = None

    def pool_options(self) -> dict[str, Any]:
        """Return the keyword arguments every ``Pool`` of this app is built with."""
        return {"size": self.pool_size, "max_overflow": self.max_overflow,
                "timeout": self.pool_timeout, "socket_timeout": self.socket_timeout}


def set_defaults(config: MutableMapping[str, Any]) -> None:
    """Put every key of :data:`DEFAULTS` the app did not set into ``config``."""
    for key, value in DEFAULTS.items():
        config.setdefault(key, value)


def read_settings(config: Mapping[str, Any]) -> Settings:
    """Check the ``HYPERTABLE_*`` keys of ``config`` and return them typed.

    Missing keys take their :data:`DEFAULTS`.

    :param config: a Flask ``app.config`` (any mapping).
    :returns: the :class:`Settings`.
    :raises ConfigError: a value is invalid; the message names the key, the
        value and the allowed values.
    """
    get = {**DEFAULTS, **config}.get
    port = _integer(get, "HYPERTABLE_PORT", 1, 65535)
    shards = _shards(get("HYPERTABLE_SHARDS"), port)
    hosts = _hosts(get, port, shards)
    strategy = _strategy(get("HYPERTABLE_STRATEGY"), hosts, shards)
    size = _integer(get, "HYPERTABLE_POOL_SIZE", 0)
    overflow = _integer(get, "HYPERTABLE_MAX_OVERFLOW", 0)
    if size + overflow < 1:
        raise ConfigError("HYPERTABLE_POOL_SIZE + HYPERTABLE_MAX_OVERFLOW must be at least 1, "
                          f"got {size} + {overflow}: no connection could ever be opened")
    return Settings(
        hosts=hosts, strategy=strategy, shards=shards, pool_size=size, max_overflow=overflow,
        socket_timeout=_positive(get, "HYPERTABLE_TIMEOUT_MSECS", "milliseconds") / 1000.0,
        pool_timeout=_positive(get, "HYPERTABLE_POOL_TIMEOUT", "seconds"),
        namespace=_namespace(get("HYPERTABLE_NAMESPACE")))


# ------------------------------------------------------------------ one key each

def _hosts(get: Any, port: int, shards: Mapping[str, tuple[Host, ...]]) -> tuple[Host, ...]:
    value = get("HYPERTABLE_HOSTS")
    if value is None:
        if shards:
            return tuple(dict.fromkeys(h for group in shards.values() for h in group))
        legacy = get("HYPERTABLE_HOST")
        if not isinstance(legacy, str) or not legacy.strip():
            raise ConfigError(f"HYPERTABLE_HOST must be a host name or address, got {legacy!r} "
                              "(or set HYPERTABLE_HOSTS to a list of 'host[:port]')")
        return (_parse_host_list("HYPERTABLE_HOST", [legacy], port)[0],)
    if shards:
        raise ConfigError("set HYPERTABLE_SHARDS or HYPERTABLE_HOSTS, not both: with shards "
                          "the hosts are those of HYPERTABLE_SHARDS")
    return tuple(_parse_host_list("HYPERTABLE_HOSTS", value, port))


def _parse_host_list(key: str, value: Any, port: int) -> list[Host]:
    if not isinstance(value, (str, list, tuple)):
        raise ConfigError(f"{key} must be a list of 'host[:port]' or a comma-separated string, "
                          f"got {type(value).__name__} {value!r}")
    try:
        return parse_hosts(value, default_port=port)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _shards(value: Any, port: int) -> dict[str, tuple[Host, ...]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not value:
        raise ConfigError("HYPERTABLE_SHARDS must be a non-empty mapping of shard key to a list "
                          f"of 'host[:port]' (or a comma-separated string), got {value!r}")
    shards: dict[str, tuple[Host, ...]] = {}
    for key, hosts in value.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"HYPERTABLE_SHARDS keys must be non-empty strings, got {key!r}")
        shards[key] = tuple(_parse_host_list(f"HYPERTABLE_SHARDS[{key!r}]", hosts, port))
    return shards


def _strategy(value: Any, hosts: tuple[Host, ...], shards: Mapping[str, Any]) -> str:
    allowed = ", ".join(repr(name) for name in STRATEGIES)
    if value is None:
        return "shards" if shards else "pool" if len(hosts) == 1 else "replicas"
    name = value.strip().lower() if isinstance(value, str) else value
    if name not in STRATEGIES:
        raise ConfigError(f"HYPERTABLE_STRATEGY must be one of {allowed} (or None to choose from "
                          f"the number of hosts), got {value!r}")
    if name == "pool" and len(hosts) != 1:
        raise ConfigError(f"HYPERTABLE_STRATEGY 'pool' takes exactly one host, HYPERTABLE_HOSTS "
                          f"has {len(hosts)}: use 'replicas' or 'resources' for several")
    if (name == "shards") != bool(shards):
        raise ConfigError("HYPERTABLE_STRATEGY 'shards' and HYPERTABLE_SHARDS go together: set "
                          "both (the mapping of shard key to hosts) or neither")
    return name


def _integer(get: Any, key: str, low: int, high: Optional[int] = None) -> int:
    value = get(key)
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        number = int(value)
    if number is None or number < low or (high is not None and number > high):
        bounds = f"in {low}..{high}" if high is not None else f">= {low}"
        raise ConfigError(f"{key} must be an integer {bounds}, got {value!r}")
    return number


def _positive(get: Any, key: str, unit: str) -> float:
    value = get(key)
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


def _namespace(value: Any) -> Optional[str]:
    if value is None or (isinstance(value, str) and value.strip()):
        return value.strip() if value is not None else None
    raise ConfigError(f"HYPERTABLE_NAMESPACE must be a namespace name such as 'logs' or "
                      f"None, got {value!r}")
