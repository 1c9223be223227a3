"""How the stand-in broker builds its ``ClientException`` answers, and the one error that is no answer."""
from __future__ import annotations

from thrift.transport.TTransport import TTransportException

from .. import codes
from .._thrift.ttypes import ClientException

__all__ = ["ClientGone", "client_error"]


def client_error(code: int, detail: str) -> ClientException:
    """Return ``ClientException(code, "<error text> - <detail>")``, the broker's message shape."""
    return ClientException(code=code, message=f"{codes.text(code)} - {detail}")


class ClientGone(TTransportException):
    """The client of a call in progress has closed its connection: the call is abandoned, nothing is answered.

    A ``TTransportException`` because the generated ``Processor`` lets only
    those through (any other exception would be answered as "Internal error").
    """

    def __init__(self, peer: str, method: str) -> None:
        self.method = method
        super().__init__(TTransportException.END_OF_FILE, f"{peer}: the client has gone; abandoned its {method} call")
