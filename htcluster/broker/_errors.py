"""How the stand-in broker builds its ``ClientException`` answers."""
from __future__ import annotations

from .. import codes
from .._thrift.ttypes import ClientException


def client_error(code: int, detail: str) -> ClientException:
    """Return ``ClientException(code, "<error text> - <detail>")``, the broker's message shape."""
    return ClientException(code=code, message=f"{codes.text(code)} - {detail}")
