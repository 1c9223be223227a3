"""Row keys on the wire: valid UTF-8 without NUL, checked before a request is encoded.

Hypertable row keys are byte strings, but the ThriftBroker interface declares
them as Thrift ``string`` s, which every Thrift binding (Python's included)
decodes as UTF-8 on the way back; and a NUL byte ends a key inside a real
broker.  So a row key that is not valid UTF-8, or holds a NUL, cannot be
written and then read back as the same key: two such keys could be merged
(``b'\\xff'`` and ``b'\\xfe'`` both read back as ``'\\ufffd'``), silently.
htcluster refuses them, with :class:`~htcluster.errors.InvalidRequest`,
before anything is sent: a ``str`` key is sent as UTF-8; a ``bytes`` key is
sent as it is when it is valid UTF-8 without NUL; reads always return ``str``.

:func:`check_rows` runs for the calls that carry row keys (writes of cells,
reads of one row or cell, scans with row or cell intervals); a row key of
every cell of a batch is checked (one type test per cell for ``str`` keys).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from ..errors import InvalidRequest

__all__ = ["ROW_METHODS", "check_row", "check_rows"]


def check_row(row: object, method: str) -> None:
    """Refuse a row key that cannot be written and read back as itself.

    :param row: a row key (``str`` or ``bytes``; anything else is left to the encoder).
    :param method: the call, for the message.
    :raises InvalidRequest: the key holds a NUL, or is ``bytes`` that are not valid UTF-8.
    """
    if isinstance(row, str):
        if "\x00" in row:
            raise InvalidRequest(f"cannot send {method}: row key {row[:40]!r} holds a NUL character, which ends "
                                 "a key on a ThriftBroker; remove it or encode the key (e.g. hex)", method=method)
        return
    if isinstance(row, (bytes, bytearray, memoryview)):
        data = bytes(row)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequest(f"cannot send {method}: row key {data[:40]!r} is not valid UTF-8 (byte "
                                 f"{exc.start}); ThriftBroker row keys travel as Thrift strings and read back "
                                 "decoded, so distinct such keys would merge: encode binary keys (hex, base64) "
                                 "first", method=method) from None
        if b"\x00" in data:
            raise InvalidRequest(f"cannot send {method}: row key {data[:40]!r} holds a NUL byte, which ends a key "
                                 "on a ThriftBroker; remove it or encode the key (e.g. hex)", method=method)


def _cell_rows(cells: Any) -> Iterable[object]:
    if cells is None:
        return ()
    if not isinstance(cells, (list, tuple)):
        cells = (cells,)
    return (getattr(getattr(cell, "key", None), "row", None) for cell in cells)


def _array_rows(cells: Any) -> Iterable[object]:
    if cells is None:
        return ()
    if cells and not isinstance(cells[0], (list, tuple)):
        cells = (cells,)
    return (cell[0] if cell else None for cell in cells)


def _spec_rows(spec: Any) -> Iterable[object]:
    rows: list[object] = []
    for interval in getattr(spec, "row_intervals", None) or ():
        rows += (interval.start_row, interval.end_row)
    for interval in getattr(spec, "cell_intervals", None) or ():
        rows += (interval.start_row, interval.end_row)
    return rows


def _at(index: int, rows: Callable[[Any], Iterable[object]]) -> Callable[[tuple[Any, ...]], Iterable[object]]:
    def pick(args: tuple[Any, ...]) -> Iterable[object]:
        return rows(args[index]) if len(args) > index else ()
    return pick


def _single(value: Any) -> Iterable[object]:
    return (value,)


#: ``{method: args -> the row keys among them}`` of the calls whose row keys are checked.
ROW_METHODS: dict[str, Callable[[tuple[Any, ...]], Iterable[object]]] = {
    "get_cell": _at(2, _single), "get_row": _at(2, _single), "get_row_as_arrays": _at(2, _single),
    "get_row_serialized": _at(2, _single),
    "get_cells": _at(2, _spec_rows), "get_cells_as_arrays": _at(2, _spec_rows),
    "get_cells_serialized": _at(2, _spec_rows), "scanner_open": _at(2, _spec_rows),
    "set_cell": _at(2, _cell_rows), "set_cells": _at(2, _cell_rows),
    "set_cell_as_array": _at(2, _array_rows), "set_cells_as_arrays": _at(2, _array_rows),
    "mutator_set_cell": _at(1, _cell_rows), "mutator_set_cells": _at(1, _cell_rows),
    "mutator_set_cell_as_array": _at(1, _array_rows), "mutator_set_cells_as_arrays": _at(1, _array_rows),
    "async_mutator_set_cell": _at(1, _cell_rows), "async_mutator_set_cells": _at(1, _cell_rows),
    "set_cell_async": _at(1, _cell_rows), "set_cells_async": _at(1, _cell_rows),
    "async_mutator_set_cell_as_array": _at(1, _array_rows), "async_mutator_set_cells_as_arrays": _at(1, _array_rows),
    "set_cell_as_array_async": _at(1, _array_rows), "set_cells_as_arrays_async": _at(1, _array_rows),
    "shared_mutator_set_cell": _at(3, _cell_rows), "shared_mutator_set_cells": _at(3, _cell_rows),
    "offer_cell": _at(3, _cell_rows), "offer_cells": _at(3, _cell_rows),
}


def check_rows(method: str, args: tuple[Any, ...]) -> Optional[int]:
    """Check the row keys of ``method(*args)``; return how many were checked (``None``: the method has none).

    :raises InvalidRequest: a row key is refused (see :func:`check_row`).
    """
    rows = ROW_METHODS.get(method)
    if rows is None:
        return None
    count = 0
    for row in rows(args):
        if row.__class__ is not str or "\x00" in row:  # type: ignore[operator, unused-ignore]
            check_row(row, method)
        count += 1
    return count
