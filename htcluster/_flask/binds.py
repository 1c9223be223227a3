"""``HYPERTABLE_BINDS``: more named clusters in one app, each checked as the main one is.

A bind is ``name: hosts`` (a list of ``'host[:port]'`` or a comma-separated
string) or ``name: {key: value}`` with the keys of :data:`BIND_KEYS`, the
app's ``HYPERTABLE_*`` keys in lower case without the prefix::

    HYPERTABLE_BINDS = {
        "analytics": "ht7,ht8",                                   # replicas
        "archive": {"hosts": ["ht9"], "namespace": "archive",
                    "options": {"idle_ping": 30.0}},
        "geo": {"shards": {"eu": "ht1", "us": "ht2"}, "pool_size": 2},
    }

``port``, ``pool_size``, ``max_overflow``, ``max_connecting``,
``pool_min_size``, ``keepalive``, ``timeout_msecs``,
``pool_timeout`` and the TLS files ``ssl_ca``, ``ssl_cert``, ``ssl_key``
default to the app's values; ``options`` to the entries of
the app's ``HYPERTABLE_OPTIONS`` that the bind's strategy accepts (a bind's
own ``options`` are checked strictly); ``hosts``, ``shards``, ``strategy``
and ``namespace`` are the bind's own.  Every error names the bind and the key,
e.g. ``HYPERTABLE_BINDS['archive']['pool_size']``.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..errors import ConfigError
from .config import Getter, Settings, read_cluster, warn_msecs

__all__ = ["BIND_KEYS", "INHERITED_KEYS", "read_binds"]

#: Keys a bind's mapping may have.
BIND_KEYS = ("hosts", "shards", "strategy", "namespace", "options", "port", "pool_size", "max_overflow",
             "max_connecting", "pool_min_size", "keepalive", "timeout_msecs", "pool_timeout", "ssl_ca", "ssl_cert",
             "ssl_key")
#: Keys a bind takes from the app's own configuration when it does not set them.
INHERITED_KEYS = ("port", "pool_size", "max_overflow", "max_connecting", "pool_min_size", "keepalive",
                  "timeout_msecs", "pool_timeout", "ssl_ca", "ssl_cert", "ssl_key")


def read_binds(value: Any, app_get: Getter, main: Settings) -> dict[str, Settings]:
    """Check ``HYPERTABLE_BINDS`` and return ``{bind name: Settings}``.

    :param value: the config value: ``None`` or a mapping of bind name to hosts or to a mapping.
    :param app_get: the app's own keys (without ``HYPERTABLE_``), for the inherited values.
    :param main: the app's main settings (their options are inherited).
    :returns: one :class:`Settings` per bind, in configuration order (their ``binds`` are empty).
    :raises ConfigError: naming the bind and the key that is wrong.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError("HYPERTABLE_BINDS must be a mapping of bind name to hosts or to a mapping of "
                          f"settings, got {type(value).__name__} {value!r}")
    binds: dict[str, Settings] = {}
    for name, spec in value.items():
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"HYPERTABLE_BINDS names must be non-empty strings, got {name!r}")
        binds[name] = _read_bind(name, spec, app_get, main)
    return binds


def _read_bind(bind: str, spec: Any, app_get: Getter, main: Settings) -> Settings:
    where = f"HYPERTABLE_BINDS[{bind!r}]"
    if isinstance(spec, (str, list, tuple)):
        spec = {"hosts": spec}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where} must be hosts (a list of 'host[:port]' or a comma-separated string) "
                          f"or a mapping with keys {', '.join(BIND_KEYS)}; got {type(spec).__name__} {spec!r}")
    unknown = sorted(str(k) for k in spec if k not in BIND_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; a bind takes {', '.join(BIND_KEYS)}")
    if spec.get("hosts") is None and spec.get("shards") is None:
        raise ConfigError(f"{where} needs 'hosts' (a list of 'host[:port]') or 'shards'")
    if "timeout_msecs" in spec:
        warn_msecs(spec["timeout_msecs"], f"{where}['timeout_msecs']")

    def get(key: str) -> Any:
        own = key.lower()
        if own in spec:
            return spec[own]
        return app_get(key) if own in INHERITED_KEYS else None

    return read_cluster(get, lambda key: f"{where}[{key.lower()!r}]", legacy_host=False,
                        label=f"{where}['options']", inherited=main.options)
