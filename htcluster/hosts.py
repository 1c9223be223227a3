"""Host addresses: ``host[:port]`` values and host lists, checked when they are given.

One host is written ``name[:port]`` (an RFC 1123 host name), ``ipv4[:port]``
or ``[ipv6][:port]``; :meth:`Host.parse` refuses anything else with a
:class:`~htcluster.errors.ConfigError` that shows the right spelling: a
scheme (``http://h1``), a path (``h1/logs``), an IPv6 address without
brackets, and several hosts in one string (``'h1,h2'``, ``'h1 h2'``) where
one host is expected (``Pool``, ``Resource``, one element of a list).

Where a list of hosts is taken (:func:`parse_hosts`: ``Resources``,
``Replicas``, the Flask key ``HYPERTABLE_HOSTS``, the CLI's ``--hosts``), it
is a list of hosts or one string of hosts separated by commas or spaces.

The default port, 15867, is ``ThriftBroker.Port`` since Hypertable 0.9.8.0;
brokers up to 0.9.7.x listened on 38080.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Iterable, NamedTuple, Union
from urllib.parse import urlsplit

from .errors import ConfigError

__all__ = ["DEFAULT_MAX_FRAME_SIZE", "DEFAULT_PORT", "LEGACY_PORT", "Host", "HostLike", "parse_hosts"]

DEFAULT_PORT = 15867
LEGACY_PORT = 38080
#: Largest frame, in bytes, that the client reads and the stand-in broker accepts by default: one
#: constant for both sides (client ``max_frame_size``, ``htcluster broker --max-frame-size``), so
#: that anything the broker can answer can be read.
DEFAULT_MAX_FRAME_SIZE = 64 * 1024 * 1024

#: What one host looks like, as the errors say it.
SPELLING = "'name[:port]', 'ipv4[:port]' or '[ipv6][:port]'"

_SEPARATORS = re.compile(r"[,\s]+")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
_DOTTED_DIGITS = re.compile(r"[0-9.]+\Z")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)?://")


class Host(NamedTuple):
    """A broker address.  ``str(Host('ht1', 15867)) == 'ht1:15867'``.

    Build one with :meth:`parse`, which checks it; the constructor does not.
    """

    host: str
    port: int = DEFAULT_PORT

    @classmethod
    def parse(cls, value: "HostLike", default_port: int = DEFAULT_PORT) -> "Host":
        """Parse one host: ``'name[:port]'``, ``'ipv4[:port]'``, ``'[ipv6][:port]'``, a ``(host, port)`` pair or a Host.

        :param value: the host; surrounding whitespace is ignored.
        :param default_port: the port of a host string that names none (int, 1..65535).
        :returns: the :class:`Host`; its ``host`` is written without brackets (``'::1'``).
        :raises ConfigError: the value is not one host: empty, a URL (scheme or
            path), several hosts in one string, a malformed name or address, or
            a port that is not an integer in 1..65535.  The message shows how to
            write it.
        """
        return _parse_one(value, default_port)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


HostLike = Union[str, Host, "tuple[str, int]"]


def parse_hosts(value: Union[str, Iterable[HostLike]], default_port: int = DEFAULT_PORT) -> list[Host]:
    """Parse a list of hosts: an iterable of hosts, or one string of hosts separated by commas or spaces.

    ``parse_hosts('h1,h2:15868')``, ``parse_hosts('h1 h2')`` and
    ``parse_hosts(['h1', ('h2', 15868)])`` all give two hosts.  Each element
    of an iterable is one host (see :meth:`Host.parse`): ``['h1,h2']`` is
    refused.  Duplicates are dropped, order is kept.

    :param value: the hosts.
    :param default_port: the port of the hosts that name none (int, 1..65535).
    :returns: a non-empty ``list`` of :class:`Host`.
    :raises ConfigError: the list is empty, is a URL, or an entry is malformed;
        the message names the entry and shows how to write it.
    """
    if isinstance(value, str):
        text = value.strip()
        if "://" in text:
            raise ConfigError(_url_message(value))
        items: list[object] = [piece for piece in _SEPARATORS.split(text) if piece]
        hosts = [_parse_one(item, default_port) for item in items]
    elif isinstance(value, (bytes, bytearray)) or not isinstance(value, Iterable):
        raise ConfigError(f"hosts must be a list of {SPELLING} or one string of them separated by commas or spaces, "
                          f"got {type(value).__name__} {value!r}")
    else:
        items = list(value)
        hosts = [_parse_one(item, default_port, element=i, elements=items) for i, item in enumerate(items)]
    unique = list(dict.fromkeys(hosts))
    if not unique:
        raise ConfigError(f"no hosts given in {value!r}: write a list of 'host[:port]' such as "
                          "['h1:15867', 'h2:15867'], or one string 'h1:15867,h2:15867'")
    return unique


# ------------------------------------------------------------------ one host

def _parse_one(value: object, default_port: int, element: int | None = None,
               elements: list[object] | None = None) -> Host:
    """Check one host; ``element`` is its index when it came in a list (``elements``), for the messages."""
    where = "" if element is None else f"element {element} of the host list: "
    if isinstance(value, tuple):
        return _parse_pair(value, where)
    if not isinstance(value, str):
        kind = "a list" if isinstance(value, (list, set, frozenset)) else type(value).__name__
        raise ConfigError(f"{where}a host must be a string {SPELLING}, a (host, port) pair or a Host, got {kind} "
                          f"{value!r}" + ("; several hosts go to Resources or Replicas" if kind == "a list" else ""))
    text = value.strip()
    if not text:
        raise ConfigError(f"{where}a host must be {SPELLING}, got an empty string")
    if "://" in text:
        raise ConfigError(where + _url_message(value))
    pieces = [piece for piece in _SEPARATORS.split(text) if piece]
    if len(pieces) > 1:
        raise ConfigError(where + _several_message(value, pieces, element, elements))
    if "/" in text:
        host, _, path = text.partition("/")
        namespace = path.strip("/")
        tail = f", and name the namespace {namespace!r} in the call (namespace=...)" if namespace else ""
        raise ConfigError(f"{where}{value!r} has a path: a host is {SPELLING}; write {host!r}{tail}")
    port: object = default_port
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(f"{where}unclosed '[' in host {value!r}: write an IPv6 address as '[::1]' or "
                              "'[::1]:15867'")
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"{where}expected ':port' after ']' in host {value!r}, e.g. '[{host}]:15867'")
            port = rest[1:]
        return Host(_checked_name(host, value, where, bracketed=True), _checked_port(port, value, where))
    if text.count(":") > 1:
        if _is_ipv6(text):
            raise ConfigError(f"{where}an IPv6 address goes in brackets: write '[{text}]' or '[{text}]:15867', "
                              f"not {value!r}")
        raise ConfigError(f"{where}{value!r} has more than one ':'; a host is {SPELLING}")
    host, colon, port_text = text.partition(":")
    if colon:
        port = port_text
    return Host(_checked_name(host, value, where, bracketed=False), _checked_port(port, value, where))


def _parse_pair(value: tuple[object, ...], where: str) -> Host:
    """Check a ``(host, port)`` pair (a :class:`Host` is one); the host may be a bare IPv6 address."""
    if len(value) != 2:
        raise ConfigError(f"{where}a host pair is (host, port), got {value!r}")
    host, port = value
    if not isinstance(host, str):
        raise ConfigError(f"{where}the host of {value!r} must be a string, got {type(host).__name__}")
    name = host.strip()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return Host(_checked_name(name, value, where, bracketed=":" in name), _checked_port(port, value, where))


def _checked_name(host: str, original: object, where: str, bracketed: bool) -> str:
    """Return ``host`` if it is an IPv6 address (``bracketed``), an IPv4 address or an RFC 1123 host name."""
    inside = "" if original == host else f" in {original!r}"
    if not host:
        raise ConfigError(f"{where}host name missing in {original!r}; a host is {SPELLING}")
    if bracketed:
        if not _is_ipv6(host):
            raise ConfigError(f"{where}{host!r}{inside} is not an IPv6 address; only IPv6 addresses "
                              "go in brackets")
        return host
    try:
        ipaddress.IPv4Address(host)
        return host
    except ValueError:
        pass
    if _DOTTED_DIGITS.match(host):
        raise ConfigError(f"{where}{host!r}{inside} is not an IPv4 address (four numbers 0..255 "
                          "without leading zeros, e.g. '127.0.0.1')")
    if not host.isascii():
        try:
            hint = f"; write it as {host.encode('idna').decode('ascii')!r}"
        except UnicodeError:
            hint = ""
        raise ConfigError(f"{where}host name {host!r} is not ASCII{hint}")
    name = host[:-1] if host.endswith(".") else host
    bad = next((label for label in name.split(".") if not _LABEL.match(label)), None)
    if bad is not None or len(name) > 253:
        what = f"label {bad!r}" if bad is not None else "it is longer than 253 characters"
        raise ConfigError(f"{where}host name {host!r}{inside} is not valid ({what}): a host name is "
                          "dot-separated labels of 1 to 63 letters, digits and '-', not starting or ending "
                          "with '-' (RFC 1123)")
    return host


def _checked_port(port: object, original: object, where: str) -> int:
    if isinstance(port, bool):
        number = None
    elif isinstance(port, int):
        number = port
    elif isinstance(port, str) and port.isascii() and port.isdigit():
        number = int(port)
    else:
        number = None
    if number is None or not 0 < number < 65536:
        raise ConfigError(f"{where}port must be an integer in 1..65535, got {port!r} in {original!r}")
    return number


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _several_message(value: str, pieces: list[str], element: int | None, elements: list[object] | None) -> str:
    """The error for several hosts in one string where one host is expected."""
    head = f"{value!r} holds {len(pieces)} hosts where one host is expected"
    if element is not None and elements is not None:
        fixed = [piece for item in elements
                 for piece in (_SEPARATORS.split(item.strip()) if isinstance(item, str) else [item]) if piece]
        whole = (f", or the whole list as one string {','.join(map(str, fixed))!r}"
                 if all(isinstance(item, str) for item in fixed) else "")
        return f"{head}: write each host as its own element, {fixed!r}{whole}"
    return (f"{head}: write one host such as {pieces[0]!r}; where several hosts are taken (Resources, Replicas, "
            f"HYPERTABLE_HOSTS) give them as a list {pieces!r} or as one string {','.join(pieces)!r}")


def _url_message(value: str) -> str:
    """The error for a URL where hosts are expected, showing the hosts it names."""
    text = value.strip()
    parts = urlsplit(text)
    if parts.scheme and parts.netloc:  # 'hypertable://h1:1,h2:2/ns'
        scheme, hosts, namespace = parts.scheme, _SEPARATORS.split(parts.netloc), parts.path.strip("/")
    else:  # a scheme inside a list: 'h1,http://h2/ns'
        found = _SCHEME.search(text)
        scheme = (found.group(1) or "") if found else ""
        pieces = [_SCHEME.sub("", piece).partition("/") for piece in _SEPARATORS.split(text)]
        hosts = [host for host, _, _ in pieces]
        namespace = next((path.strip("/") for _, _, path in pieces if path.strip("/")), "")
    hosts = [host for host in hosts if host]
    spelled = repr(hosts[0]) if len(hosts) == 1 else f"the list {hosts!r}" if hosts else SPELLING
    tail = f", and name the namespace {namespace!r} in the call (namespace=...)" if namespace else ""
    if scheme == "hypertable":
        tail += f"; or build the routing object from the URL itself: htcluster.from_url({text!r})"
    return f"{value!r} is a URL; hosts are written without a scheme ({scheme}://): write {spelled}{tail}"
