"""Conversion of cells between the wire (``Cell``, ``CellAsArray``) and the store.

Input rules are :ref:`cell-flags`: a missing timestamp means "assigned by the
server", an empty row or an unknown column family is BAD_KEY, deletes need
what their flag needs.  A NUL byte inside a row key, family or qualifier is
BAD_KEY naming its byte offset: upstream keys are C strings, which would cut
the key there and store another one (issue 10).  Output rules are :ref:`broker-types`: the qualifier is
``''`` when empty, the value ``None`` when empty, timestamp and revision are
always set.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from .. import codes
from .._thrift.ttypes import Cell, Key, KeyFlag
from ._errors import client_error
from .table_schema import TableSchema
from .store import WriteCell

__all__ = ["array_to_write", "cell_as_array", "cell_to_write", "make_cell"]

_FLAGS = frozenset((KeyFlag.DELETE_ROW, KeyFlag.DELETE_CF, KeyFlag.DELETE_CELL, KeyFlag.DELETE_CELL_VERSION,
                    KeyFlag.INSERT))
#: A CellAsArray holds 1 to 7 strings: row, cf, cq, value, timestamp, revision, flag.
MAX_ARRAY_LEN = 7


def _no_nul(text: Optional[str], what: str, row: Optional[str] = None) -> str:
    """Return ``text`` (``''`` for ``None``) if it holds no NUL byte.

    :param what: the part of the key, for the message ('row key', 'column family', 'column qualifier').
    :param row: the cell's row, for the message.
    :raises ClientException: BAD_KEY naming the byte offset of the first NUL (in UTF-8).
    """
    if not text:
        return ""
    at = text.find("\0")
    if at < 0:
        return text
    offset = len(text[:at].encode("utf-8", "surrogatepass"))
    where = f"row {row!r}: " if row is not None else ""
    raise client_error(codes.BAD_KEY, f"{where}the {what} {text!r} holds a NUL byte at byte offset {offset}; "
                                      "keys are C strings upstream, so NUL cannot be part of one")


def _value(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def to_write(schema: TableSchema, row: Optional[str], family: Optional[str], qualifier: Optional[str],
             value: Any, ts: Optional[int], rev: Optional[int], flag: Optional[int]) -> WriteCell:
    """Validate one cell against ``schema`` and return it ready for the store.

    :param row: the row key; no NUL byte in it (nor in ``family`` or ``qualifier``).
    :param family: the column family's name (ignored for DELETE_ROW).
    :param value: ``bytes`` or ``str`` (UTF-8 encoded); kept only for INSERT.
    :param ts: timestamp in nanoseconds since the epoch, ``None`` for "assigned by the store".
    :param rev: revision, ``None`` for "assigned by the store".
    :param flag: a ``KeyFlag`` value, ``None`` for INSERT.
    :returns: a :class:`WriteCell` with the family as its numeric id.
    :raises ClientException: BAD_KEY, saying which part of the key is wrong.
    """
    row = _no_nul(row, "row key")
    if not row:
        raise client_error(codes.BAD_KEY, "a cell has an empty row key; every cell needs a row")
    flag = KeyFlag.INSERT if flag is None else flag
    if flag not in _FLAGS:
        raise client_error(codes.BAD_KEY, f"row {row!r}: unknown key flag {flag}; use a KeyFlag value")
    if flag == KeyFlag.DELETE_ROW:
        return WriteCell(row, 0, "", flag, ts, rev, b"")
    if not family:
        raise client_error(codes.BAD_KEY, f"row {row!r}: a {KeyFlag._VALUES_TO_NAMES[flag]} cell needs a column family")
    family = _no_nul(family, "column family", row)
    spec = schema.by_name.get(family)
    if spec is None:
        raise client_error(codes.BAD_KEY, f"row {row!r}: unknown column family {family!r}; the table has "
                                          f"{sorted(schema.by_name)}")
    if flag == KeyFlag.DELETE_CELL_VERSION and ts is None:
        raise client_error(codes.BAD_KEY, f"row {row!r}: DELETE_CELL_VERSION needs an explicit timestamp")
    qualifier = "" if flag == KeyFlag.DELETE_CF else _no_nul(qualifier, "column qualifier", row)
    return WriteCell(row, spec.id, qualifier, flag, ts, rev, _value(value) if flag == KeyFlag.INSERT else b"")


def cell_to_write(cell: Cell, schema: TableSchema) -> WriteCell:
    """Convert a Thrift ``Cell`` (only fields present count; :ref:`cell-flags`)."""
    key = cell.key if cell is not None else None
    if key is None:
        raise client_error(codes.BAD_KEY, "a cell has no key")
    return to_write(schema, key.row, key.column_family, key.column_qualifier, cell.value, key.timestamp,
                    key.revision, key.flag)


def _number(text: str, what: str) -> int:
    """Parse like C ``strtoll(text, 0)``: '' is 0, ``0x`` is hex, a leading 0 is octal."""
    body = text.strip()
    sign = -1 if body.startswith("-") else 1
    digits = body.lstrip("+-")
    try:
        if not digits:
            return 0
        if digits[:2].lower() == "0x":
            return sign * int(digits[2:], 16)
        if digits.startswith("0") and len(digits) > 1:
            return sign * int(digits[1:], 8)
        return sign * int(digits, 10)
    except ValueError:
        raise client_error(codes.BAD_KEY, f"CellAsArray {what} {text!r} is not a number") from None


def array_to_write(array: Sequence[str], schema: TableSchema) -> WriteCell:
    """Convert a ``CellAsArray`` ``[row, cf, cq, value, ts, rev, flag]`` (1-7 items; :ref:`cell-flags`).

    With 4 items or fewer the timestamp is automatic; a revision of 0 means
    "assigned by the server".
    """
    if array is None or not 1 <= len(array) <= MAX_ARRAY_LEN:
        raise client_error(codes.BAD_KEY, f"a CellAsArray needs 1 to {MAX_ARRAY_LEN} items "
                                          "[row, cf, cq, value, timestamp, revision, flag], "
                                          f"got {0 if array is None else len(array)}")
    items = list(array) + [None] * (MAX_ARRAY_LEN - len(array))
    ts = _number(items[4], "timestamp") if items[4] is not None else None
    rev = _number(items[5], "revision") if items[5] is not None else None
    flag = _number(items[6], "flag") if items[6] is not None else None
    return to_write(schema, items[0], items[1], items[2], items[3], ts, rev or None, flag)


def make_cell(row: str, family: str, qualifier: str, ts: int, rev: int, flag: int,
              value: Optional[bytes]) -> Cell:
    """Build an output ``Cell`` (:ref:`broker-types`: empty value -> ``None``).

    :param ts: timestamp in nanoseconds since the epoch.
    :param flag: the ``KeyFlag`` value.
    """
    return Cell(Key(row=row, column_family=family, column_qualifier=qualifier, timestamp=ts, revision=rev,
                    flag=flag), value or None)


def cell_as_array(cell: Cell) -> list[str]:
    """Return ``[row, cf, qualifier, value, timestamp]``, all strings (:ref:`broker-types`)."""
    key = cell.key
    value = cell.value
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", "replace")
    return [key.row or "", key.column_family or "", key.column_qualifier or "", value or "",
            str(key.timestamp if key.timestamp is not None else 0)]
