"""How HQL errors are built: the same ``ClientException`` shape the broker answers with."""
from __future__ import annotations

from .. import codes
from .._thrift.ttypes import ClientException

__all__ = ["client_error", "parse_error"]


def client_error(code: int, detail: str) -> ClientException:
    """Return ``ClientException(code, "<error text> - <detail>")`` (the broker's message shape).

    :param code: a code of :mod:`htcluster.codes` (:ref:`error-codes`).
    :param detail: what was wrong and, where it helps, what to write instead.
    """
    return ClientException(code=code, message=f"{codes.text(code)} - {detail}")


def parse_error(detail: str) -> ClientException:
    """Return the HQL_PARSE_ERROR ``ClientException`` with ``detail``."""
    return client_error(codes.HQL_PARSE_ERROR, detail)
