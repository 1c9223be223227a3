"""The stand-in broker's resource limits: one frozen value, one option of the broker command per field.

Upstream's ThriftBroker has none of these (:ref:`calling-methods`, 1.3: a thread per
connection, no idle timeout unless ``ThriftBroker.Timeout`` is set); the
stand-in is also the default of every command and test, so it guards itself
against clients that hold connections, frames or memory.  Every default is
a named constant below; ``htcluster broker --help`` and ``docs/guide/broker.rst`` list them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from ..errors import ConfigError
from .wire import DEFAULT_MAX_FRAME_SIZE

__all__ = ["DEFAULT_FRAME_TIMEOUT", "DEFAULT_IDLE_TIMEOUT", "DEFAULT_MAX_CONNECTIONS", "DEFAULT_MAX_INFLIGHT_BYTES",
           "DEFAULT_STOP_GRACE", "DEFAULT_WORKERS", "INFLIGHT_FRAMES", "Limits"]

#: Client connections served at once; one more is accepted and closed at once, with a log line.
DEFAULT_MAX_CONNECTIONS = 1000
#: Seconds a connection may go without sending a complete frame before it is closed.
DEFAULT_IDLE_TIMEOUT = 3600.0
#: Seconds between the first byte of a frame and its last (a slowloris client is closed after this).
DEFAULT_FRAME_TIMEOUT = 30.0
#: Bytes of request frames (announced by their headers) plus answers not yet sent, across all
#: connections, by default: this many frames of the largest size.
INFLIGHT_FRAMES = 4
DEFAULT_MAX_INFLIGHT_BYTES = INFLIGHT_FRAMES * DEFAULT_MAX_FRAME_SIZE
#: Threads that run calls; connections waiting for a frame need no thread.
DEFAULT_WORKERS = 32
#: Seconds a graceful stop (SIGTERM, SIGINT, ``BrokerServer.stop``) lets calls in flight finish.
DEFAULT_STOP_GRACE = 10.0


@dataclass(frozen=True)
class Limits:
    """What one broker process lets its clients use.

    :param max_connections: connections served at once.
    :param idle_timeout: seconds without a complete frame before a connection
        is closed (half-received frames included); ``None`` never closes an
        idle connection, as upstream without ``ThriftBroker.Timeout``.
    :param frame_timeout: seconds a frame may take from its first byte to its last.
    :param max_frame_size: bytes of the largest request frame; a larger
        header closes the connection before its body is read.
    :param max_inflight_bytes: bytes of frames announced by their headers and
        not yet answered, plus answers not yet sent, across all connections;
        a header that would pass it closes its connection; ``None``:
        ``INFLIGHT_FRAMES`` (4) times ``max_frame_size``.
    :param max_answer_size: bytes of the largest ``get_cells``-style answer
        (``get_cells*``, ``get_row*``, ``hql_query*`` SELECT); ``None``: ``max_frame_size``.
    :param workers: threads running calls.
    :param stop_grace: seconds a graceful stop waits for calls in flight.
    :raises ConfigError: a value is out of range.

    Example::

        BrokerServer(port=0, limits=Limits(max_connections=10, idle_timeout=60.0))
    """

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    idle_timeout: Optional[float] = DEFAULT_IDLE_TIMEOUT
    frame_timeout: float = DEFAULT_FRAME_TIMEOUT
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    max_inflight_bytes: Optional[int] = None
    max_answer_size: Optional[int] = None
    workers: int = DEFAULT_WORKERS
    stop_grace: float = DEFAULT_STOP_GRACE

    def __post_init__(self) -> None:
        if self.max_inflight_bytes is None and isinstance(self.max_frame_size, int):
            object.__setattr__(self, "max_inflight_bytes", INFLIGHT_FRAMES * self.max_frame_size)
        for name in ("max_connections", "max_frame_size", "max_inflight_bytes", "workers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"broker limit {name} must be a positive integer, not {value!r}")
        for name in ("idle_timeout", "frame_timeout"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or value <= 0):
                raise ConfigError(f"broker limit {name} must be a positive number of seconds, not {value!r}")
        if not isinstance(self.stop_grace, (int, float)) or self.stop_grace < 0:
            raise ConfigError(f"broker limit stop_grace must be seconds >= 0, not {self.stop_grace!r}")
        if self.max_answer_size is not None and (not isinstance(self.max_answer_size, int)
                                                 or self.max_answer_size < 1):
            raise ConfigError(f"broker limit max_answer_size must be a positive integer, not {self.max_answer_size!r}")
        assert self.max_inflight_bytes is not None
        if self.max_inflight_bytes < self.max_frame_size:
            raise ConfigError(f"max_inflight_bytes ({self.max_inflight_bytes}) is below max_frame_size "
                              f"({self.max_frame_size}): no frame of the largest size could ever be read; "
                              "raise the budget or lower the frame size")

    @property
    def answer_size(self) -> int:
        """Bytes of the largest one-shot answer (``max_answer_size``, else ``max_frame_size``)."""
        return self.max_answer_size if self.max_answer_size is not None else self.max_frame_size

    def replace(self, **changes: Any) -> "Limits":
        """Return a copy with ``changes`` applied (validated again).

        A new ``max_frame_size`` without a new ``max_inflight_bytes`` raises the
        budget to ``INFLIGHT_FRAMES`` frames if it would be below one frame.
        """
        frame = changes.get("max_frame_size")
        if frame is not None and "max_inflight_bytes" not in changes:
            assert self.max_inflight_bytes is not None
            if self.max_inflight_bytes < frame:
                changes["max_inflight_bytes"] = INFLIGHT_FRAMES * frame
        return dataclasses.replace(self, **changes)
