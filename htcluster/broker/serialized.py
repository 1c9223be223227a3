"""The serialized-cells buffer of the ``*_serialized`` methods (:ref:`cells-serialized`).

Layout, little-endian: ``i32 version (1)``, then per cell a flag byte,
``[i64 timestamp]``, ``[i64 revision]``, row NUL, family NUL, qualifier NUL,
``i32 value length``, value, ``u8 key flag``; then one end byte with EOB set
(plus EOS when a scan is finished, or FLUSH on input to ask for a flush).
An empty row on input means "the previous cell's row".  The broker writes
timestamps but never revisions.
"""
from __future__ import annotations

import struct
from typing import Iterable, NamedTuple, Optional

from .. import codes
from .._thrift.ttypes import Cell
from ._errors import client_error

__all__ = ["Parsed", "decode", "encode", "EOB", "EOS", "FLUSH"]

VERSION = 1
HAVE_REVISION, HAVE_TIMESTAMP, AUTO_TIMESTAMP, REV_IS_TS = 0x80, 0x40, 0x20, 0x10
EOB, EOS, FLUSH = 0x01, 0x02, 0x04
_I32, _I64 = struct.Struct("<i"), struct.Struct("<q")


class Parsed(NamedTuple):
    """One input cell of a serialized buffer (``ts``/``rev`` ``None`` when automatic)."""

    row: str
    family: str
    qualifier: str
    value: bytes
    ts: Optional[int]
    rev: Optional[int]
    flag: int


def encode(cells: Iterable[Cell], finished: bool) -> bytes:
    """Serialize output cells; ``finished`` adds EOS to the end byte."""
    out = bytearray(_I32.pack(VERSION))
    for cell in cells:
        key = cell.key
        out.append(HAVE_TIMESTAMP)
        out += _I64.pack(key.timestamp or 0)
        for text in (key.row, key.column_family, key.column_qualifier):
            out += (text or "").encode("utf-8") + b"\0"
        value = cell.value or b""
        out += _I32.pack(len(value)) + value
        out.append(key.flag if key.flag is not None else 255)
    out.append(EOB | EOS if finished else EOB)
    return bytes(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if size < 0 or end > len(self.data):
            raise client_error(codes.SERIALIZATION_INPUT_OVERRUN, f"serialized cells end early at byte {self.pos}")
        chunk, self.pos = self.data[self.pos:end], end
        return chunk

    def text(self, what: str) -> str:
        """Read one NUL-terminated string: part ``what`` of a cell key, which must be UTF-8."""
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise client_error(codes.SERIALIZATION_INPUT_OVERRUN, f"unterminated string at byte {self.pos}")
        chunk, start, self.pos = self.data[self.pos:end], self.pos, end + 1
        try:
            return chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise client_error(codes.BAD_KEY, f"the {what} {chunk[:40]!r} at byte {start} of the serialized cells "
                                              f"is not valid UTF-8 (byte 0x{chunk[exc.start]:02x} at offset "
                                              f"{exc.start}); keys must be UTF-8 text") from None


def decode(data: Optional[bytes]) -> tuple[list[Parsed], bool]:
    """Parse an input buffer.

    :returns: ``(cells, flush)``: the cells in order, and whether the end byte asks for a flush.
    :raises ClientException: SERIALIZATION_VERSION_MISMATCH, SERIALIZATION_INPUT_OVERRUN,
        BAD_FORMAT (the first row is empty), BAD_KEY (a key part that is not UTF-8).
    """
    reader = _Reader(bytes(data or b""))
    (version,) = _I32.unpack(reader.take(4))
    if version != VERSION:
        raise client_error(codes.SERIALIZATION_VERSION_MISMATCH, f"serialized cells version {version}, expected 1")
    cells: list[Parsed] = []
    row = ""
    while True:
        (flag,) = reader.take(1)
        if flag & EOB:
            return cells, bool(flag & FLUSH)
        ts = _I64.unpack(reader.take(8))[0] if flag & HAVE_TIMESTAMP else None
        if flag & AUTO_TIMESTAMP:
            ts = None
        rev = None
        if flag & HAVE_REVISION:
            rev = ts if flag & REV_IS_TS else _I64.unpack(reader.take(8))[0]
        row = reader.text("row key") or row
        if not row:
            raise client_error(codes.BAD_FORMAT, "the first serialized cell has an empty row")
        family, qualifier = reader.text("column family"), reader.text("column qualifier")
        (length,) = _I32.unpack(reader.take(4))
        value = reader.take(length)
        (key_flag,) = reader.take(1)
        cells.append(Parsed(row, family, qualifier, value, ts, rev, key_flag))
