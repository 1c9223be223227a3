"""TLS for the stand-in broker: the server context, and telling TLS from plaintext on a new connection.

``htcluster broker --tls-cert FILE --tls-key FILE [--tls-client-ca FILE]``
serves TLS 1.2 or later only (:func:`server_context`); with a client CA,
clients must show a certificate it signed.  The handshake runs in the
connection loop without blocking (:mod:`.reactor`).  A client that speaks
plaintext to a TLS broker gets a TLS alert record and the end of the
connection (so that it can say "this broker requires TLS" instead of
blaming the broker); a TLS client of a plaintext broker is logged as such.
"""
from __future__ import annotations

import os
import ssl
from typing import Optional, Union

from ..errors import ConfigError

__all__ = ["PLAINTEXT_ALERT", "is_tls_record", "server_context"]

#: A fatal TLS alert record (``protocol_version``, 70) sent to a plaintext client before closing.
PLAINTEXT_ALERT = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 70])

PathLike = Union[str, "os.PathLike[str]"]


def server_context(cert: PathLike, key: Optional[PathLike] = None,
                   client_ca: Optional[PathLike] = None) -> ssl.SSLContext:
    """Build the broker's ``ssl.SSLContext``: TLS 1.2 or later, its certificate, client certificates if asked.

    :param cert: PEM file of the broker's certificate (chain); may hold the key too.
    :param key: PEM file of its private key, when not in ``cert``.
    :param client_ca: PEM file of the CA(s) whose client certificates are
        accepted; clients without one are refused.  ``None``: no client certificate asked.
    :raises ConfigError: a file cannot be read or does not hold a certificate or key.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION
    try:
        context.load_cert_chain(os.fspath(cert), None if key is None else os.fspath(key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the broker's certificate {cert} (key {key or 'in the same file'}): {exc}; "
                          "give PEM files of the certificate and its private key") from exc
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=os.fspath(client_ca))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the client CA file {client_ca}: {exc}") from exc
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def is_tls_record(head: bytes) -> bool:
    """True when ``head`` (the first bytes a client sent) starts a TLS handshake record (a ClientHello)."""
    return len(head) >= 3 and head[0] == 0x16 and head[1] == 0x03 and head[2] <= 0x04
