"""Host addresses: ``host[:port]`` values and host lists.

The default port, 15867, is ``ThriftBroker.Port`` since Hypertable 0.9.8.0;
brokers up to 0.9.7.x listened on 38080 (protocol.md section 7).
"""
from __future__ import annotations

from typing import Iterable, NamedTuple, Union

from .errors import ConfigError

__all__ = ["DEFAULT_MAX_FRAME_SIZE", "DEFAULT_PORT", "LEGACY_PORT", "Host", "HostLike", "parse_hosts"]

DEFAULT_PORT = 15867
LEGACY_PORT = 38080
#: Largest frame, in bytes, that the client reads and the stand-in broker accepts by default: one
#: constant for both sides (client ``max_frame_size``, ``htcluster broker --max-frame-size``), so
#: that anything the broker can answer can be read.
DEFAULT_MAX_FRAME_SIZE = 64 * 1024 * 1024


class Host(NamedTuple):
    """A broker address.  ``str(Host('ht1', 15867)) == 'ht1:15867'``."""

    host: str
    port: int = DEFAULT_PORT

    @classmethod
    def parse(cls, value: "HostLike", default_port: int = DEFAULT_PORT) -> "Host":
        """Parse ``'host'``, ``'host:port'``, ``'[::1]:port'``, a ``(host, port)`` pair or a Host.

        :raises ConfigError: the value is empty or the port is not an integer
            in 1..65535.
        """
        if isinstance(value, Host):
            return value
        if isinstance(value, tuple):
            pair_host, pair_port = value
            return cls._checked(str(pair_host), pair_port, value)
        if not isinstance(value, str):
            raise ConfigError(f"a host must be 'host[:port]', got {value!r}")
        text = value.strip()
        if not text:
            raise ConfigError("a host must be 'host[:port]', got an empty string")
        port: object = default_port
        if text.startswith("["):  # [IPv6]:port
            end = text.find("]")
            if end < 0:
                raise ConfigError(f"unclosed '[' in host {value!r}")
            host, rest = text[1:end], text[end + 1:]
            if rest:
                if not rest.startswith(":"):
                    raise ConfigError(f"expected ':port' after ']' in host {value!r}")
                port = rest[1:]
        elif text.count(":") == 1:
            host, port_text = text.split(":")
            port = port_text
        else:  # a name, or a bare IPv6 address
            host = text
        return cls._checked(host, port, value)

    @classmethod
    def _checked(cls, host: str, port: object, original: object) -> "Host":
        if not host:
            raise ConfigError(f"host name missing in {original!r}")
        try:
            number = int(port)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            raise ConfigError(f"port must be an integer in 1..65535, got {port!r} in {original!r}") from None
        if not 0 < number < 65536:
            raise ConfigError(f"port must be an integer in 1..65535, got {number} in {original!r}")
        return cls(host, number)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


HostLike = Union[str, Host, "tuple[str, int]"]


def parse_hosts(value: Union[str, Iterable[HostLike]], default_port: int = DEFAULT_PORT) -> list[Host]:
    """Parse a comma-separated string or an iterable of hosts into a list of :class:`Host`.

    Duplicates are dropped, order is kept.

    :raises ConfigError: the list is empty or an entry is malformed.
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    hosts: list[Host] = []
    for item in items:
        if isinstance(item, str) and not item.strip():
            continue
        host = Host.parse(item, default_port)
        if host not in hosts:
            hosts.append(host)
    if not hosts:
        raise ConfigError(f"no hosts given in {value!r}; expected 'host[:port][,host[:port]...]'")
    return hosts
