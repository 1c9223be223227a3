"""Cell files: what ``LOAD DATA INFILE`` reads and ``SELECT``/``DUMP TABLE ... INTO FILE`` write.

The formats are :ref:`hql`'s; the form of a file is told by its first line:

* ``#row<TAB>column<TAB>value`` or a first line with 2 tabs: one cell per line,
  ``row, column, value`` (column ``cf`` or ``cf:qualifier``).
* ``#timestamp<TAB>row<TAB>column<TAB>value`` or a first line with 3 tabs
  starting with a timestamp: the same with a leading timestamp, integer
  nanoseconds or ``YYYY-MM-DD HH:MM:SS`` (broker local time).
* any other first line is a **header line** naming the columns (a leading
  ``#`` is dropped; write one for a 3-column header, which would otherwise
  read as cells).  Each later line is one row: the row key is the
  ``ROW_KEY_COLUMN`` field (default: the first column; several, ``a+b``, are
  joined with one space), the timestamp the ``TIMESTAMP_COLUMN`` field (default:
  assigned by the broker), and every other non-empty field one cell whose
  column is its header name (``cf`` or ``cf:qualifier``).  A header name that
  is not a column family of the table, and a field past the last header name,
  are refused unless ``IGNORE_UNKNOWN_COLUMNS`` (or ``IGNORE_UNKNOWN_CFS``)
  skips them.  ``HEADER_FILE = 'f'`` takes the header line from file ``f``
  (every line of the data file is then data), which is also how columns are
  renamed: a header naming ``property:maiden_flight`` puts that field in
  family ``property``.  ``DUP_KEY_COLS`` also stores the key columns as cells;
  ``ROW_UNIQUIFY_CHARS = n`` appends ``n`` random characters to each row key.

In the one-cell forms, a line ending in ``<TAB>DELETE`` is a delete, formed
as HQL ``DELETE`` forms it (an empty column: the whole row).  Fields are split
on the tab, or on ``FS = 'c'``.  Unless ``NO_ESCAPE``, ``\\\\``, ``\\t``, ``\\n``,
``\\r`` (and a backslash before the separator) stand for the character.  Blank lines
are skipped; a trailing ``\\r`` is dropped.  A name ending in ``.gz`` is gzip,
read and written.  Written files use the one-cell forms with their ``#`` header
(timestamps as integer nanoseconds), so they load back as they were.
"""
from __future__ import annotations

import contextlib
import gzip
import os
import secrets
import string
import tempfile
from pathlib import Path
from typing import IO, Collection, Iterable, Iterator, Optional

from .. import codes
from .._thrift.ttypes import Cell, ClientException, Key, KeyFlag
from ._errors import client_error
from .build import delete_cells
from .statements import FileFormat, LoadOptions
from .timestamps import parse_timestamp

__all__ = ["CellFileReader", "cell_line", "escape", "header_line", "open_for_reading",
           "open_for_writing", "unescape"]

_CELL_NAMES = (b"row", b"column", b"value")
_TIMED_NAMES = (b"timestamp", *_CELL_NAMES)
_DELETE = b"DELETE"
_UNIQUIFY_ALPHABET = string.ascii_letters + string.digits


def escape(data: bytes, sep: bytes = b"\t") -> bytes:
    """Escape backslash, tab, newline, carriage return (and ``sep``) as ``\\\\``, ``\\t``,
    ``\\n``, ``\\r`` (``\\`` + sep)."""
    data = (data.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\n", b"\\n")
            .replace(b"\r", b"\\r"))
    if sep not in (b"\t", b"\n", b"\\"):
        data = data.replace(sep, b"\\" + sep)
    return data


def unescape(data: bytes, sep: bytes = b"\t") -> bytes:
    """Undo :func:`escape`; a backslash before any other character stays as written."""
    if b"\\" not in data:
        return data
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        byte = data[i:i + 1]
        nxt = data[i + 1:i + 2]
        if byte == b"\\" and nxt in (b"\\", b"t", b"n", b"r", sep) and nxt:
            out += {b"\\": b"\\", b"t": b"\t", b"n": b"\n", b"r": b"\r"}.get(nxt, nxt)
            i += 2
        else:
            out += byte
            i += 1
    return bytes(out)


def _split(line: bytes, sep: bytes, escaped: bool) -> list[bytes]:
    """Split on ``sep``, except after a backslash when escapes are on."""
    if not escaped or b"\\" + sep not in line:
        return line.split(sep)
    fields, start, i = [], 0, 0
    while i < len(line):
        if line[i:i + 1] == b"\\":
            i += 2
            continue
        if line[i:i + len(sep)] == sep:
            fields.append(line[start:i])
            start = i = i + len(sep)
            continue
        i += 1
    fields.append(line[start:])
    return fields


class CellFileReader:
    """The cells of one load file, in file order.

    :param lines: the file's lines (bytes, with or without their ``\\n``).
    :param options: the LOAD DATA options.
    :param families: column families of the target table, to check names
        against; ``None`` accepts every name (``LOAD ... INTO FILE``).
    :param source: the file name, for messages.
    :param header: the header line from ``HEADER_FILE``; ``None``: the file's first line.
    :raises ClientException: HQL_BAD_LOAD_FILE_FORMAT naming the line, BAD_KEY
        for an unknown column family, HQL_BAD_COMMAND for a key or timestamp
        column the header does not name (all raised while iterating).

    Iterate :meth:`cells`; ``lines`` and ``rows`` count what was read.
    """

    def __init__(self, lines: Iterable[bytes], options: LoadOptions,
                 families: Optional[Collection[str]], source: str,
                 header: Optional[bytes] = None) -> None:
        self.options = options
        self.families = families
        self.source = source
        self.sep = options.format.separator.encode("utf-8")
        self.escaped = options.format.escape
        self._lines = lines
        self._header = header
        self.lines = 0
        self.rows = 0
        #: Whether the cells carry timestamps (known once the first cell is out).
        self.timed = options.timestamp_column is not None

    # ------------------------------------------------------------ errors

    def _bad(self, detail: str, code: int = codes.HQL_BAD_LOAD_FILE_FORMAT) -> ClientException:
        return client_error(code, f"{self.source}, line {self.lines}: {detail}")

    def _text(self, data: bytes, what: str) -> str:
        try:
            return (unescape(data, self.sep) if self.escaped else data).decode("utf-8")
        except UnicodeDecodeError:
            raise self._bad(f"the {what} is not UTF-8 text") from None

    def _value(self, data: bytes) -> bytes:
        return unescape(data, self.sep) if self.escaped else data

    def _timestamp(self, data: bytes) -> int:
        text = self._text(data, "timestamp").strip()
        if text.isdigit():
            return int(text)
        try:
            return parse_timestamp(text)
        except ClientException:
            raise self._bad(f"bad timestamp {text!r}: write integer nanoseconds or "
                            "'YYYY-MM-DD HH:MM:SS'") from None

    def _known(self, column: str) -> bool:
        return self.families is None or column.partition(":")[0] in self.families

    # ------------------------------------------------------------ reading

    def _numbered(self) -> Iterator[list[bytes]]:
        for raw in self._lines:
            self.lines += 1
            line = raw.rstrip(b"\n")
            if line.endswith(b"\r"):
                line = line[:-1]
            if line.strip():
                yield _split(line, self.sep, self.escaped)

    def cells(self) -> Iterator[Cell]:
        """Yield the cells of the file; see the module docstring for how they are formed."""
        lines = self._numbered()
        header = _split(self._header.rstrip(b"\r\n"), self.sep, False) if self._header is not None else None
        first: Optional[list[bytes]] = None
        if header is None:
            first = next(lines, None)
            if first is None:
                return
            if first[0].startswith(b"#"):
                header, first = [first[0][1:], *first[1:]], None
        if header is not None:
            names = tuple(n.strip().lower() for n in header)
            if self.options.single_cell or names in (_CELL_NAMES, _TIMED_NAMES):
                timed = len(header) == 4
            else:
                yield from self._rows(header, lines)
                return
        else:
            assert first is not None
            width = len(first) - (first[-1] == _DELETE)
            cells = width == 3 or (width == 4 and _looks_like_timestamp(first[0]))
            if not cells and not self.options.single_cell:
                yield from self._rows(first, lines)
                return
            timed = width == 4
        self.timed = timed
        if first is not None:
            yield from self._cell_line(first, timed)
        for fields in lines:
            yield from self._cell_line(fields, timed)

    def _cell_line(self, fields: list[bytes], timed: bool) -> Iterator[Cell]:
        """One line of a one-cell form."""
        width = 4 if timed else 3
        delete = len(fields) == width + 1 and fields[-1] == _DELETE
        if len(fields) != width + delete:
            layout = "timestamp, row, column, value" if timed else "row, column, value"
            raise self._bad(f"expected {width} fields ({layout}, optionally then DELETE), "
                            f"found {len(fields)}")
        stamp = self._timestamp(fields[0]) if timed else None
        row_field, column_field, value = fields[-3 - delete:len(fields) - delete]
        row = self._text(row_field, "row key")
        column = self._text(column_field, "column")
        if not row:
            raise self._bad("the row key is empty")
        self.rows += 1
        if delete:
            if column and not self._known(column):
                if self.options.ignore_unknown:
                    return
                raise self._unknown(column)
            yield from delete_cells(row, [column] if column else None, timestamp=stamp)
            return
        if not column:
            raise self._bad("the column is empty; write 'family' or 'family:qualifier'")
        if not self._known(column):
            if self.options.ignore_unknown:
                return
            raise self._unknown(column)
        family, _, qualifier = column.partition(":")
        yield Cell(Key(row=row, column_family=family, column_qualifier=qualifier, timestamp=stamp,
                       flag=KeyFlag.INSERT), self._value(value))

    def _unknown(self, column: str) -> ClientException:
        return self._bad(f"column {column!r} names no column family of the table (it has "
                         f"{sorted(self.families or ())}); add IGNORE_UNKNOWN_COLUMNS to skip such "
                         "columns, or rename them with HEADER_FILE", codes.BAD_KEY)

    def _index(self, names: list[str], name: str, option: str) -> int:
        try:
            return names.index(name)
        except ValueError:
            raise client_error(codes.HQL_BAD_COMMAND, f"{self.source}: {option} {name!r} is not a "
                               f"column of the header (it names {names})") from None

    def _rows(self, header: list[bytes], lines: Iterator[list[bytes]]) -> Iterator[Cell]:
        """The header-line form: one row per line."""
        names = [self._text(n, "header").strip() for n in header]
        opts = self.options
        keys = [self._index(names, k, "ROW_KEY_COLUMN") for k in opts.row_key_columns] or [0]
        stamp_at = (self._index(names, opts.timestamp_column, "TIMESTAMP_COLUMN")
                    if opts.timestamp_column else None)
        columns: list[Optional[tuple[str, str]]] = []
        for j, name in enumerate(names):
            if j == stamp_at or (j in keys and not opts.dup_key_cols):
                columns.append(None)
            elif name and self._known(name):
                family, _, qualifier = name.partition(":")
                columns.append((family, qualifier))
            elif opts.ignore_unknown:
                columns.append(None)
            else:
                raise self._unknown(name) if name else self._bad(
                    f"header column {j + 1} has no name; name it or add IGNORE_UNKNOWN_COLUMNS")
        for fields in lines:
            if len(fields) > len(names) and not opts.ignore_unknown and any(fields[len(names):]):
                raise self._bad(f"{len(fields)} fields, but the header names {len(names)} columns; "
                                "add IGNORE_UNKNOWN_COLUMNS to skip the fields past the header")
            row = " ".join(self._text(fields[k], "row key") if k < len(fields) else "" for k in keys)
            if not row.strip():
                raise self._bad("the row key is empty")
            if opts.row_uniquify_chars:
                row += "".join(secrets.choice(_UNIQUIFY_ALPHABET) for _ in range(opts.row_uniquify_chars))
            stamp = None
            if stamp_at is not None:
                if stamp_at >= len(fields) or not fields[stamp_at]:
                    raise self._bad(f"the TIMESTAMP_COLUMN field ({names[stamp_at]!r}) is empty")
                stamp = self._timestamp(fields[stamp_at])
            self.rows += 1
            for field_bytes, column in zip(fields, columns):
                if column is not None and field_bytes:
                    yield Cell(Key(row=row, column_family=column[0], column_qualifier=column[1],
                                   timestamp=stamp, flag=KeyFlag.INSERT), self._value(field_bytes))


def _looks_like_timestamp(field: bytes) -> bool:
    """Whether a first field reads as a timestamp (digits, or a date): else a 4-field first line is a header."""
    text = field.strip()
    return text.isdigit() or (len(text) >= 10 and text[:4].isdigit() and text[4:5] == b"-")


# ------------------------------------------------------------------ writing

def header_line(fmt: FileFormat) -> bytes:
    """The ``#``-header of a written file: ``#[timestamp<sep>]row<sep>column<sep>value``."""
    names = _TIMED_NAMES if fmt.timestamps else _CELL_NAMES
    return b"#" + fmt.separator.encode("utf-8").join(names) + b"\n"


def cell_line(cell: Cell, fmt: FileFormat) -> bytes:
    """One cell as a line of a written file (a delete marker ends in ``<sep>DELETE``)."""
    sep = fmt.separator.encode("utf-8")
    key = cell.key
    flag = KeyFlag.INSERT if key.flag is None else key.flag
    if flag == KeyFlag.DELETE_ROW:
        column = ""
    elif key.column_qualifier or flag == KeyFlag.DELETE_CELL:
        column = f"{key.column_family}:{key.column_qualifier or ''}"
    else:
        column = key.column_family or ""
    fields = [(key.row or "").encode("utf-8"), column.encode("utf-8"), cell.value or b""]
    if fmt.escape:
        fields = [escape(f, sep) for f in fields]
    if fmt.timestamps:
        fields.insert(0, str(key.timestamp or 0).encode("ascii"))
    if flag != KeyFlag.INSERT:
        fields.append(_DELETE)
    return sep.join(fields) + b"\n"


def open_for_reading(path: Path) -> IO[bytes]:
    """Open a file to load, gunzipping it when its name ends in ``.gz``.

    :raises OSError: from the file system (the caller turns it into an answer).
    """
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


class open_for_writing:  # noqa: N801 - used like open()
    """Write a file atomically: into a temporary file beside it, renamed over ``path`` at the end.

    ``with open_for_writing(path) as out: out.write(...)``.  Gzip when the
    name ends in ``.gz``.  On an exception the temporary file is removed and
    ``path`` is left as it was.  (A class, not ``@contextmanager``: Thrift's
    exceptions are immutable and cannot pass through a generator.)

    :raises OSError: from the file system.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._temporary = ""
        self._raw: Optional[IO[bytes]] = None
        self._out: Optional[IO[bytes]] = None

    def __enter__(self) -> IO[bytes]:
        handle, self._temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part",
                                                   dir=self.path.parent)
        self._raw = os.fdopen(handle, "wb")
        self._out = self._raw
        if self.path.name.endswith(".gz"):
            self._out = gzip.GzipFile(filename=self.path.name[:-3], mode="wb", fileobj=self._raw)  # type: ignore[assignment]
        return self._out  # type: ignore[return-value]

    def __exit__(self, kind: Optional[type], exc: Optional[BaseException], tb: object) -> None:
        assert self._raw is not None and self._out is not None
        try:
            if self._out is not self._raw:
                self._out.close()
            self._raw.close()
            if kind is None:
                os.replace(self._temporary, self.path)
        finally:
            if kind is not None or os.path.exists(self._temporary):
                with contextlib.suppress(OSError):
                    os.unlink(self._temporary)
