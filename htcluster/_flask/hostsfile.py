"""``HYPERTABLE_HOSTS_FILE``: the brokers listed in a file, read again when it changes.

The file holds ``'host[:port]'`` entries separated by newlines, commas or
spaces; ``#`` starts a comment.  A port-less entry takes ``HYPERTABLE_PORT``.
It replaces ``HYPERTABLE_HOSTS`` (and cannot go with ``HYPERTABLE_SHARDS`` or
``HYPERTABLE_URL``); the strategy is ``replicas`` unless
``HYPERTABLE_STRATEGY`` says ``resources`` (a ``pool`` has one fixed host).

How a change is noticed: at the start of a request, at most once every
``HYPERTABLE_HOSTS_RELOAD`` seconds per process (default 1.0; 0: every
request), one ``os.stat`` of the file; when its modification time, size or
inode changed, it is read and the routing object's ``set_hosts`` applies the
new list (hosts removed drain: their calls in flight finish).  No thread
watches the file, so a worker that serves no request does not read it; the
request that notices a change pays for one read and one ``set_hosts``, the
others for nothing.  A file that cannot be read or holds no valid host leaves
the hosts as they were, with a warning on the ``htcluster.flask_ext`` logger
(logged once per change of the file); at ``init_app`` it is a
:class:`~htcluster.errors.ConfigError`.  Replace the file atomically (write a
new file, then rename it over the old one) so a request never reads half of it.
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
from typing import Any, Callable, Mapping, Optional

from ..errors import ConfigError
from ..hosts import DEFAULT_PORT, Host, parse_hosts

__all__ = ["DEFAULT_RELOAD", "HostsFile", "file_port", "file_settings", "read_hosts_file", "reload_interval"]

log = logging.getLogger("htcluster.flask_ext")

#: Seconds between two checks of the file (``HYPERTABLE_HOSTS_RELOAD``).
DEFAULT_RELOAD = 1.0

Signature = tuple[int, int, int]


def reload_interval(value: Any) -> float:
    """Return ``HYPERTABLE_HOSTS_RELOAD`` as seconds >= 0 (a number, or a string from the environment).

    :raises ConfigError: negative, NaN, infinite or not a number.
    """
    number: Optional[float] = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
    if number is None or not math.isfinite(number) or number < 0:
        raise ConfigError(f"HYPERTABLE_HOSTS_RELOAD must be seconds >= 0 between checks of "
                          f"HYPERTABLE_HOSTS_FILE (0: at every request), got {value!r}")
    return number


def read_hosts_file(path: str, port: int = DEFAULT_PORT) -> list[Host]:
    """Return the hosts listed in the file ``path`` (see the module's docstring for its format).

    :param path: the file.
    :param port: the port of entries that name none.
    :returns: the hosts, in file order, without duplicates (non-empty).
    :raises ConfigError: the file cannot be read, holds no host, or an entry is malformed
        (the message names the file).
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"HYPERTABLE_HOSTS_FILE {path!r} cannot be read: {exc}") from exc
    entries = " ".join(line.split("#", 1)[0] for line in text.splitlines())
    if not entries.strip():
        raise ConfigError(f"HYPERTABLE_HOSTS_FILE {path!r} lists no host: write one 'host[:port]' a line")
    try:
        return parse_hosts(entries, default_port=port)
    except ConfigError as exc:
        raise ConfigError(f"HYPERTABLE_HOSTS_FILE {path!r}: {exc}") from None


def file_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return the ``HYPERTABLE_*`` keys that ``HYPERTABLE_HOSTS_FILE`` stands for (the hosts, the strategy).

    :param config: the app's config merged with the defaults, ``HYPERTABLE_HOSTS_FILE`` set.
    :raises ConfigError: the file is not usable, a key it replaces is set too, or the
        strategy cannot change hosts (``pool``) or is ``shards``.
    """
    path = config["HYPERTABLE_HOSTS_FILE"]
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise ConfigError(f"HYPERTABLE_HOSTS_FILE must be the path of a file of hosts, got {path!r}")
    clash = [key for key in ("HYPERTABLE_HOSTS", "HYPERTABLE_SHARDS", "HYPERTABLE_URL") if config.get(key) is not None]
    if clash:
        raise ConfigError(f"HYPERTABLE_HOSTS_FILE replaces {', '.join(clash)}: set one or the other")
    strategy = config.get("HYPERTABLE_STRATEGY")
    strategy = strategy.strip().lower() if isinstance(strategy, str) else strategy
    if strategy not in (None, "replicas", "resources"):
        raise ConfigError(f"HYPERTABLE_HOSTS_FILE goes with HYPERTABLE_STRATEGY 'replicas' or 'resources' "
                          f"(whose hosts can change), got {config.get('HYPERTABLE_STRATEGY')!r}")
    hosts = read_hosts_file(os.fspath(path), file_port(config))
    return {"HYPERTABLE_HOSTS": [str(h) for h in hosts], "HYPERTABLE_STRATEGY": strategy or "replicas"}


def file_port(config: Mapping[str, Any]) -> int:
    """Return the port of the file's entries that name none: ``HYPERTABLE_PORT``, checked.

    :raises ConfigError: ``HYPERTABLE_PORT`` is not a port number.
    """
    from .config import integer

    return integer(config.get("HYPERTABLE_PORT", DEFAULT_PORT), "HYPERTABLE_PORT", 1, 65535)


def _signature(path: str) -> Optional[Signature]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class HostsFile:
    """Watch one hosts file: :meth:`poll` applies its new list when it changed (at most every ``interval`` s).

    :param path: the file.
    :param interval: seconds between two checks (0: every poll).
    :param port: the port of entries that name none.
    :param apply: called with the new hosts (``set_hosts`` of the routing object).
    :param clock: ``time.monotonic`` (injectable).
    """

    def __init__(self, path: str, interval: float, port: int, apply: Callable[[list[Host]], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path, self.interval, self.port, self.apply, self.clock = path, interval, port, apply, clock
        self.seen = _signature(path)  # the hosts in use were read from this version
        self.due = clock() + interval
        self.lock = threading.Lock()
        #: How many times a changed file was applied.
        self.reloads = 0

    def poll(self) -> bool:
        """Check the file if the interval passed; apply its hosts if it changed.

        Cheap when not due (one clock read, no lock).  A file that cannot be used
        keeps the current hosts and logs one warning per change of the file.

        :returns: True when new hosts were applied.
        """
        now = self.clock()
        if now < self.due or not self.lock.acquire(blocking=False):
            return False  # not due, or another thread is checking
        try:
            self.due = now + self.interval
            signature = _signature(self.path)
            if signature == self.seen:
                return False
            self.seen = signature
            try:
                hosts = read_hosts_file(self.path, self.port)
                self.apply(hosts)
            except ConfigError as exc:
                log.warning("keeping the current hosts: %s", exc)
                return False
            self.reloads += 1
            log.info("hosts reloaded from %s: %s", self.path, ", ".join(map(str, hosts)))
            return True
        finally:
            self.lock.release()

    def __repr__(self) -> str:
        return f"<HostsFile {self.path!r} every {self.interval:g} s, {self.reloads} reload(s)>"
