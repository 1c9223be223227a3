"""TCP keepalive on broker connections, so that a connection dropped while idle is found before a call is lost on it.

A load balancer, a NAT or a TLS terminator between client and broker forgets
a connection that stays idle longer than its own timeout (often 350 s to
10 minutes), usually without telling either end.  With keepalive the kernel
probes an idle connection after :attr:`KeepAlive.idle` seconds, then every
:attr:`KeepAlive.interval` seconds, and gives up after :attr:`KeepAlive.count`
unanswered probes: the socket then reads as reset, which the pool's free
check at checkout sees (the connection is replaced, no call is sent on it).
Probes also keep the middle box's entry alive, so the connection is not
dropped in the first place.

``SO_KEEPALIVE`` is set everywhere; ``TCP_KEEPIDLE`` (``TCP_KEEPALIVE`` on
macOS), ``TCP_KEEPINTVL`` and ``TCP_KEEPCNT`` where the platform has them
(Linux, macOS, recent Windows); elsewhere the system's defaults apply.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

from .._validate import seconds
from ..errors import ConfigError

__all__ = ["DEFAULT_KEEPALIVE", "KeepAlive", "KeepAliveLike", "apply_keepalive"]


@dataclass(frozen=True)
class KeepAlive:
    """TCP keepalive settings of a connection (a value; seconds).

    :param idle: seconds a connection stays idle before the first probe (> 0; 60).
    :param interval: seconds between unanswered probes (> 0; 10).
    :param count: unanswered probes before the connection is declared dead (int >= 1; 3).
    :raises ConfigError: a value is out of range.

    With the defaults a silently dropped connection is found after about 90 s
    of idleness, below the idle timeouts of common load balancers.
    """

    idle: float = 60.0
    interval: float = 10.0
    count: int = 3

    def __post_init__(self) -> None:
        seconds("keepalive idle", self.idle)
        seconds("keepalive interval", self.interval)
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ConfigError(f"keepalive count must be an integer >= 1 (probes), got {self.count!r}")

    @classmethod
    def coerce(cls, value: "KeepAliveLike") -> Optional["KeepAlive"]:
        """Normalise the ``keepalive=`` option once, at the boundary.

        :param value: ``True`` (the defaults), ``False`` or ``None`` (keepalive off), a number
            (seconds of idleness before the first probe), a mapping of ``idle``, ``interval``,
            ``count``, or a :class:`KeepAlive`.
        :returns: a :class:`KeepAlive`, or ``None`` for off.
        :raises ConfigError: another type, an unknown field or a value out of range.
        """
        if value is True:
            return DEFAULT_KEEPALIVE
        if value is False or value is None:
            return None
        if isinstance(value, cls):
            return value
        if isinstance(value, (int, float)):
            return cls(idle=seconds("keepalive", value))
        if isinstance(value, Mapping):
            unknown = set(value) - {"idle", "interval", "count"}
            if unknown:
                raise ConfigError(f"unknown keepalive fields {sorted(unknown)}; allowed: idle, interval, count")
            return cls(**value)
        raise ConfigError(f"keepalive must be True, False, seconds of idleness before the first probe, or a "
                          f"mapping of idle/interval/count, got {value!r}")


#: The settings of ``keepalive=True`` (the default of ``Resource`` and ``Pool``).
DEFAULT_KEEPALIVE = KeepAlive()

#: What ``keepalive=`` accepts.
KeepAliveLike = Union[bool, None, float, Mapping[str, Any], KeepAlive]

#: The socket option of the idle time before the first probe: Linux names it TCP_KEEPIDLE, macOS TCP_KEEPALIVE.
_IDLE = getattr(socket, "TCP_KEEPIDLE", None) or getattr(socket, "TCP_KEEPALIVE", None)


def apply_keepalive(sock: socket.socket, keepalive: Optional[KeepAlive]) -> None:
    """Turn keepalive on for ``sock`` with ``keepalive``'s timings (nothing for ``None``).

    Options the platform lacks are skipped; an option it refuses (an
    ``OSError``) leaves the system's value for that one.
    """
    if keepalive is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in ((_IDLE, keepalive.idle), (getattr(socket, "TCP_KEEPINTVL", None), keepalive.interval),
                          (getattr(socket, "TCP_KEEPCNT", None), keepalive.count)):
        if option is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, option, max(1, int(round(value))))
            except OSError:  # pragma: no cover - a platform that has the name but not the option
                pass
