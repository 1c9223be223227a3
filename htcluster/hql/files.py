"""File statements: their options, and the confinement of file names to one directory.

``LOAD DATA INFILE``, ``SELECT ... INTO FILE`` and ``DUMP TABLE ... INTO FILE``
read and write files on the broker host (:ref:`hql`, 6.3).  The stand-in
broker allows that only inside the directory given with ``htcluster broker
--files DIR``: :func:`confine` resolves a name there (symlinks and ``..``
resolved first) and refuses anything that ends up outside (INVALID_OPERATION),
and refuses every file statement when no directory was given (NOT_IMPLEMENTED,
the answer they had before the stand-in ran them, with a message saying how
to turn them on).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple, Sequence, Union

from .. import codes
from ._errors import client_error, parse_error
from .statements import FileFormat, LoadOptions

__all__ = ["FileOption", "check_int", "confine", "file_format", "load_options", "missing", "separator"]

#: Prefixes of the brokered filesystem (:ref:`hql`); here they name the --files directory.
FS_PREFIXES = ("fs://", "dfs://")


class FileOption(NamedTuple):
    """One file-related option as parsed; ``key`` is a field of :class:`FileFormat`,
    :class:`LoadOptions`, or ``"into_file"``."""

    key: str
    value: Any


#: Option key -> how HQL spells it, for "given twice" messages.
_SPELLING = {
    "separator": "FS", "escape": "NO_ESCAPE", "timestamps": "DISPLAY_TIMESTAMPS",
    "revisions": "DISPLAY_REVISIONS", "into_file": "INTO FILE", "row_key_columns": "ROW_KEY_COLUMN",
    "timestamp_column": "TIMESTAMP_COLUMN", "header_file": "HEADER_FILE",
    "row_uniquify_chars": "ROW_UNIQUIFY_CHARS", "dup_key_cols": "DUP_KEY_COLS",
    "ignore_unknown": "IGNORE_UNKNOWN_CFS/COLUMNS", "single_cell": "SINGLE_CELL_FORMAT",
    "no_log": "NO_LOG",
}


def _by_key(options: Sequence[FileOption], statement: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in options:
        if key in seen:
            raise parse_error(f"{statement} takes {_SPELLING[key]} once")
        seen[key] = value
    return seen


def separator(text: str) -> FileOption:
    """Return the ``FS = 'c'`` option.

    :raises ClientException: HQL_PARSE_ERROR unless ``text`` is one character other than
        a newline or backslash.
    """
    if len(text) != 1 or text in "\n\r\\":
        raise parse_error(f"FS takes a single character (not a newline or backslash), not {text!r}")
    return FileOption("separator", text)


def file_format(options: Sequence[FileOption], statement: str, timestamps: bool = False
                ) -> tuple[FileFormat, dict[str, Any]]:
    """Split ``options`` into the :class:`FileFormat` and the rest (by key).

    :param timestamps: the default of the timestamp field (DUMP TABLE writes it always).
    :raises ClientException: HQL_PARSE_ERROR for an option given twice.
    """
    given = _by_key(options, statement)
    fmt = FileFormat(separator=given.pop("separator", "\t"), escape=given.pop("escape", True),
                     timestamps=given.pop("timestamps", False) or timestamps)
    given.pop("revisions", None)  # accepted; revisions are not written (the loader has no field for them)
    return fmt, given


def load_options(options: Sequence[FileOption]) -> LoadOptions:
    """Return the :class:`LoadOptions` of a LOAD DATA INFILE.

    :raises ClientException: HQL_PARSE_ERROR for an option given twice, or
        TIMESTAMP_COLUMN also named in ROW_KEY_COLUMN.
    """
    fmt, given = file_format(options, "LOAD DATA INFILE")
    given.pop("no_log", None)  # there is no commit log to skip
    keys = tuple(given.get("row_key_columns", ()))
    if given.get("timestamp_column") in keys:
        raise parse_error("TIMESTAMP_COLUMN cannot also be a ROW_KEY_COLUMN")
    return LoadOptions(row_key_columns=keys, timestamp_column=given.get("timestamp_column"),
                       header_file=given.get("header_file"),
                       row_uniquify_chars=given.get("row_uniquify_chars", 0),
                       dup_key_cols=bool(given.get("dup_key_cols", False)),
                       ignore_unknown=bool(given.get("ignore_unknown", False)),
                       single_cell=bool(given.get("single_cell", False)), format=fmt)


def confine(base: Union[str, "os.PathLike[str]", None], name: str, statement: str) -> Path:
    """Return the absolute path of file ``name`` inside ``base``, or refuse it.

    ``name`` may be relative (to ``base``), absolute, or start with ``fs://`` or
    ``dfs://`` (relative to ``base`` then).  Symlinks and ``..`` are resolved
    before the check, so neither can lead out of ``base``.

    :param base: the ``--files`` directory; ``None`` when the broker has none.
    :param statement: what asks, for the message (``"LOAD DATA INFILE"``).
    :raises ClientException: NOT_IMPLEMENTED when ``base`` is ``None`` (file
        statements are off, as before they existed); INVALID_OPERATION when the
        name resolves outside ``base`` or to ``base`` itself.
    """
    if base is None:
        raise client_error(codes.NOT_IMPLEMENTED,
                           f"{statement} reads or writes files on the broker host, and this broker "
                           "allows no files: start it with `htcluster broker --files DIR` and name "
                           "files inside DIR")
    root = Path(base).resolve()
    text = str(name)
    for prefix in FS_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix):].lstrip("/")
            break
    if not text or "\0" in text:
        raise client_error(codes.INVALID_OPERATION, f"{statement}: bad file name {name!r}")
    target = (root / text).resolve()
    if target == root or root not in target.parents:
        raise client_error(codes.INVALID_OPERATION,
                           f"{statement}: file {name!r} resolves to {str(target)!r}, outside the "
                           f"broker's --files directory {str(root)!r}; name a file inside it")
    return target


def missing(path: Path, name: str, statement: str) -> Exception:
    """The FILE_NOT_FOUND answer for ``name`` (:ref:`error-codes`)."""
    return client_error(codes.FILE_NOT_FOUND, f"{statement}: file {name!r} does not exist in the "
                        f"broker's --files directory ({path})")


def check_int(value: int, what: str, limit: int) -> int:
    """Refuse ``value`` above ``limit`` with HQL_PARSE_ERROR naming ``what``."""
    if value > limit:
        raise parse_error(f"{what} {value} is too large (at most {limit})")
    return value

