"""A log file as lines of text: plain or gzip (told apart by content), or stdin.

:func:`open_log` gives a :class:`LogText`, a text stream that also tells how
many bytes of its file were read, for a progress bar.  The lines are parsed by
:mod:`htcluster.cli.weblog`, which re-exports both names.
"""
from __future__ import annotations

import gzip
import io
import os
import stat
import sys
from pathlib import Path
from typing import IO, Any, Optional, Union, cast

__all__ = ["LogText", "open_log"]

_GZIP_MAGIC = b"\x1f\x8b"


class _Counted(io.RawIOBase):
    """A raw stream over a binary stream that counts the bytes read; closes it only if it owns it.

    :ivar consumed: bytes read so far.
    :ivar size: the stream's size in bytes when it is a regular file, else ``None``.
    """

    def __init__(self, stream: IO[bytes], owned: bool) -> None:
        self._stream = stream
        self._read = getattr(stream, "read1", stream.read)
        self._owned = owned
        self.consumed = 0
        try:
            info = os.fstat(stream.fileno())
            self.size: Optional[int] = info.st_size if stat.S_ISREG(info.st_mode) else None
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):  # not a real file
            self.size = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._read(len(buffer))
        buffer[:len(data)] = data
        self.consumed += len(data)
        return len(data)

    def close(self) -> None:
        if self._owned and not self.closed:
            self._stream.close()
        super().close()


class LogText(io.TextIOWrapper):
    """The lines of a log (see :func:`open_log`), plus how far reading has got in its file.

    :ivar size: the file's size in bytes (compressed, for gzip), or ``None``
        when unknown (a pipe).
    """

    def __init__(self, binary: IO[bytes], counted: _Counted) -> None:
        super().__init__(binary, encoding="utf-8", errors="surrogateescape", newline="\n")
        self._counted = counted
        self.size = counted.size

    @property
    def position(self) -> int:
        """Return the bytes of the file read so far (compressed bytes for gzip; read ahead in chunks)."""
        return self._counted.consumed

    def close(self) -> None:
        """Close the text, the decompressor and the file (never stdin)."""
        try:
            super().close()
        finally:
            self._counted.close()


def open_log(source: Union[str, Path]) -> LogText:
    """Open a log as text: a plain or gzip file (told apart by content), or ``'-'`` for stdin.

    Use it in a ``with`` block; closing it closes the file, never stdin.  Bytes
    that are not UTF-8 survive unchanged (``surrogateescape``); only ``\\n``
    ends a line.

    :param source: a path, or ``'-'``.
    :returns: a :class:`LogText`, a text stream of lines that also tells its
        ``position`` and ``size`` in bytes (for a progress bar).
    :raises OSError: the file cannot be opened (a damaged gzip file raises
        ``gzip.BadGzipFile``, an ``OSError``, or ``EOFError`` while being read).
    """
    stdin = str(source) == "-"
    counted = _Counted(sys.stdin.buffer if stdin else open(source, "rb"), owned=not stdin)
    try:
        raw = io.BufferedReader(counted)
        gzipped = raw.peek(2)[:2] == _GZIP_MAGIC
        binary = cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw)
        return LogText(binary, counted)
    except BaseException:
        counted.close()
        raise
