"""TLS on a broker connection: client contexts, the non-blocking handshake step, and what its failures mean.

ThriftBrokers usually sit behind a TLS terminator; with ``ssl_context=`` a
:class:`~htcluster._io.connection.Connection` wraps its socket after the TCP
connect and completes the handshake within the same ``connect_timeout``,
blocking or stepped by the multiplexing loop (:func:`handshake_step` says
which readiness to wait for).  Everything that goes wrong in the handshake
becomes a :class:`~htcluster.errors.TLSError` naming the mistake
(:func:`tls_failure`): a configuration error, never a host failure.

Two facts of TLS matter to a pool of idle connections (:func:`idle_is_stale`):
a TLS 1.3 server sends session tickets after the handshake, so an idle
connection can be readable without anything being wrong; and a ``recv`` may
leave decrypted bytes inside the ``SSLSocket`` (``pending()``) that ``poll``
cannot see.
"""
from __future__ import annotations

import os
import select
import socket
import ssl
from typing import Any, Optional, Union

from ..errors import ConfigError, TLSError

__all__ = ["check_context", "handshake_step", "idle_is_stale", "looks_like_tls", "tls_context", "tls_failure",
           "tls_required", "wrap"]

_POLLIN = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP
_POLLOUT = select.POLLOUT | select.POLLERR | select.POLLHUP

#: ``verify_code`` values of ``SSLCertVerificationError`` and the :attr:`TLSError.reason` each means.
_VERIFY_REASONS = {9: "expired", 10: "expired", 2: "untrusted", 18: "untrusted", 19: "untrusted", 20: "untrusted",
                   21: "untrusted", 62: "hostname", 64: "hostname"}
#: OpenSSL reason names (``SSLError.reason``) of a peer that does not speak TLS.
_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST",
                      "UNEXPECTED_RECORD", "UNEXPECTED_MESSAGE", "RECORD_LENGTH_MISMATCH"})
_VERSION = frozenset({"UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION", "NO_PROTOCOLS_AVAILABLE",
                      "SSLV3_ALERT_HANDSHAKE_FAILURE", "NO_SHARED_CIPHER", "NO_CIPHERS_AVAILABLE",
                      "TLSV1_ALERT_INSUFFICIENT_SECURITY"})

PathLike = Union[str, "os.PathLike[str]"]


def tls_context(ca: Optional[PathLike] = None, cert: Optional[PathLike] = None,
                key: Optional[PathLike] = None) -> ssl.SSLContext:
    """Build the client ``ssl.SSLContext`` for brokers behind TLS: verified, hostname checked, TLS 1.2 or later.

    :param ca: a PEM file of the CA certificate(s) that signed the brokers'
        certificates; ``None``: the system's trust store.
    :param cert: a PEM file of this client's certificate (chain), for brokers
        that require client certificates; may hold the key too.
    :param key: the PEM file of its private key, when not in ``cert``.
    :returns: a context for ``ssl_context=`` of ``Resource``, ``Pool`` and the routing classes.
    :raises ConfigError: a file cannot be read or does not hold what it should.

    Example::

        replicas = Replicas("ht1,ht2", ssl_context=htcluster.tls_context(ca="/etc/ht/ca.pem"))
    """
    if key is not None and cert is None:
        raise ConfigError(f"a client key ({key}) needs its certificate: give cert= (HYPERTABLE_SSL_CERT, --tls-cert)")
    try:
        context = ssl.create_default_context(cafile=None if ca is None else os.fspath(ca))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the CA file {ca}: {exc}; give a PEM file of the CA certificate(s) "
                          "that signed the brokers' certificates") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        try:
            context.load_cert_chain(os.fspath(cert), None if key is None else os.fspath(key))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the client certificate {cert} (key {key or 'in the same file'}): "
                              f"{exc}; give PEM files of the certificate and its private key") from exc
    return context


def check_context(value: Any) -> Optional[ssl.SSLContext]:
    """Return ``value`` when it is a client ``ssl.SSLContext`` or ``None`` (plaintext).

    :raises ConfigError: anything else, or a server-side context.
    """
    if value is None:
        return None
    if not isinstance(value, ssl.SSLContext):
        raise ConfigError(f"ssl_context must be an ssl.SSLContext (e.g. htcluster.tls_context(ca='ca.pem') or "
                          f"ssl.create_default_context(cafile='ca.pem')) or None, got {value!r}")
    if value.protocol == ssl.PROTOCOL_TLS_SERVER:
        raise ConfigError("ssl_context is a server-side context (PROTOCOL_TLS_SERVER); a client needs "
                          "ssl.create_default_context() or htcluster.tls_context()")
    return value


def wrap(sock: socket.socket, context: ssl.SSLContext, hostname: str) -> ssl.SSLSocket:
    """Wrap a connected, non-blocking socket for a client handshake with ``hostname`` (see :func:`handshake_step`)."""
    return context.wrap_socket(sock, server_hostname=hostname, do_handshake_on_connect=False)


def handshake_step(sock: ssl.SSLSocket) -> int:
    """Advance a non-blocking handshake; return 0 once it is done, else the ``poll`` mask to wait for.

    :raises ssl.SSLError, OSError: the handshake failed (see :func:`tls_failure`).
    """
    try:
        sock.do_handshake()
    except ssl.SSLWantReadError:
        return _POLLIN
    except ssl.SSLWantWriteError:
        return _POLLOUT
    return 0


def tls_failure(exc: BaseException, address: str, handshake: bool) -> Optional[TLSError]:
    """Return the :class:`TLSError` that ``exc`` means, or ``None`` when it is an ordinary transport failure.

    :param exc: raised by a handshake, ``send`` or ``recv`` of an ``SSLSocket``.
    :param address: ``'host:port'`` of the broker.
    :param handshake: ``exc`` came from the handshake (where a closed connection means the broker does not
        speak TLS), not from an exchange after it (where only certificate alerts are configuration errors:
        TLS 1.3 servers refuse a client certificate after the client's side of the handshake is done).
    """
    where = f"ThriftBroker {address}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = _VERIFY_REASONS.get(exc.verify_code, "untrusted")
        detail = exc.verify_message or str(exc)
        what = {"expired": f"the certificate of {where} has expired or is not valid yet ({detail}): renew the "
                           "broker's certificate, or check this machine's clock",
                "hostname": f"the certificate of {where} does not name the host connected to ({detail}): connect "
                            "by a name or address the certificate holds, or issue it for this one",
                "untrusted": f"the certificate of {where} is not trusted ({detail}): the CA that signed it is "
                             "not in ssl_context; load that CA (tls_context(ca=FILE), HYPERTABLE_SSL_CA, "
                             "--tls-ca)"}[reason]
        return TLSError(what, host=address, reason=reason)
    if not isinstance(exc, OSError):
        return None
    name = str(getattr(exc, "reason", None) or "")
    if isinstance(exc, ssl.SSLError) and ("CERTIFICATE" in name or "UNKNOWN_CA" in name
                                          or name == "TLSV1_ALERT_ACCESS_DENIED"):
        return TLSError(f"{where} refused this client's certificate ({name}): it requires a client certificate "
                        "signed by a CA it trusts; load one (tls_context(cert=FILE, key=FILE), "
                        "HYPERTABLE_SSL_CERT/HYPERTABLE_SSL_KEY, --tls-cert/--tls-key)",
                        host=address, reason="client-certificate")
    if not handshake:
        return None
    if name in _VERSION:
        return TLSError(f"{where} and this client share no TLS version or cipher ({name}): allow TLS 1.2 or "
                        "later on both sides", host=address, reason="version")
    if name in _NOT_TLS or isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError,
                                            BrokenPipeError)):
        return TLSError(f"{where} does not speak TLS: it {'answered' if name else 'closed'} the TLS handshake "
                        f"{'with something else (' + name + ')' if name else 'without a word'}; it serves "
                        "plaintext on this port (drop ssl_context) or TLS on another port",
                        host=address, reason="not-tls")
    if isinstance(exc, ssl.SSLError):
        return TLSError(f"the TLS handshake with {where} failed: {exc}", host=address, reason="handshake")
    return None


def tls_required(address: str) -> TLSError:
    """The error of a plaintext call answered by a TLS record: the broker requires TLS."""
    return TLSError(f"ThriftBroker {address} requires TLS: it answered a plaintext call with a TLS record; pass "
                    "ssl_context= (htcluster.tls_context(ca=FILE), HYPERTABLE_SSL_CA, --tls-ca)",
                    host=address, reason="tls-required")


def looks_like_tls(chunk: bytes) -> bool:
    """True when ``chunk``, the first bytes of an answer to a plaintext call, is a TLS record (alert or handshake).

    A frame header starting so would announce over 350 MB, more than any
    broker sends in one frame.
    """
    return len(chunk) >= 3 and chunk[0] in (0x15, 0x16) and chunk[1] == 0x03 and chunk[2] <= 0x04


def idle_is_stale(sock: ssl.SSLSocket) -> bool:
    """Tell whether an idle TLS connection whose socket polled readable is really unusable.

    Readable can mean TLS records for the TLS layer only (TLS 1.3 session
    tickets, a key update): reading processes them and yields no data
    (``SSLWantReadError``), and the connection is healthy.  Data or an
    end of file mean the broker sent an answer nobody asked for or closed it.

    :returns: True when the connection must be closed.
    """
    try:
        data = sock.recv(1)
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
        return sock.pending() > 0
    except OSError:
        return True
    del data  # bytes nobody asked for, or b'' (the broker closed the connection): unusable either way
    return True
