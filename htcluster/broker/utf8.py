"""Thrift ``string`` fields of a request must be valid UTF-8: find the ones that are not.

Thrift's C-accelerated decoder turns the bytes of every ``string`` field into
text, replacing each invalid UTF-8 sequence with U+FFFD: the distinct row
keys ``b'\\xff'`` and ``b'\\xfe'`` would both arrive as ``'\\ufffd'`` and be
merged silently (issue 15).  Hypertable row keys are byte strings, but the
stand-in stores text; the rule is that every Thrift ``string`` (row keys,
families, qualifiers, names, HQL) is UTF-8 text, and a request that breaks
it is refused whole, before anything is written: ``ClientException(BAD_KEY)``
for the parts of a cell key (rows, families, qualifiers, the items of a
``CellAsArray``) and ``ClientException(INVALID_ARGUMENT)`` for any other
field, naming the field, the byte and its offset.

Checking costs one look for U+FFFD per decoded string (:func:`has_replacement`);
only a request holding one is decoded again with its strings as bytes
(:func:`first_invalid`) to tell a replaced sequence from a U+FFFD that was sent
as such (which is valid, and kept).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Optional

from thrift.Thrift import TType

from .. import codes

__all__ = ["KEY_FIELDS", "InvalidText", "binary_spec", "first_invalid", "has_replacement"]

#: Fields that hold (part of) a cell key: invalid UTF-8 in them is BAD_KEY.
KEY_FIELDS = frozenset({"row", "start_row", "end_row", "column_family", "column_qualifier", "cell", "cells"})
_REPLACEMENT = "\ufffd"

Check = Callable[[Any], bool]


class InvalidText(Exception):
    """A string field of a request is not valid UTF-8.

    :param path: where, as ``field[index].field`` from the arguments of the call.
    :param code: BAD_KEY for the parts of a cell key, else INVALID_ARGUMENT.
    :param detail: which byte, at which offset.
    """

    def __init__(self, path: str, code: int, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = path
        self.code = code
        self.detail = detail


def _struct_spec(targs: Any) -> Any:
    """Return the field spec of a struct's ``[class, spec]`` type arguments."""
    cls, spec = targs
    return spec if spec is not None else cls.thrift_spec


def _value_check(ttype: int, targs: Any) -> Optional[Check]:
    """Return a test that a value of this type holds a replaced string, or ``None`` when it holds no string."""
    if ttype == TType.STRING:
        if targs != "UTF8":
            return None
        return lambda value: value is not None and _REPLACEMENT in value
    if ttype == TType.STRUCT:
        return _struct_check(_struct_spec(targs))
    if ttype in (TType.LIST, TType.SET):
        each = _value_check(targs[0], targs[1])
        if each is None:
            return None
        return _all_of(each)
    if ttype == TType.MAP:
        key, item = _value_check(targs[0], targs[1]), _value_check(targs[2], targs[3])
        if key is None and item is None:
            return None
        return lambda value: value is not None and any(
            (key is not None and key(k)) or (item is not None and item(v)) for k, v in value.items())
    return None


def _all_of(item: Check) -> Check:
    """Return a test of a list or set: does any of its items pass ``item``?"""
    return lambda value: value is not None and any(map(item, value))


def _struct_check(spec: Any) -> Optional[Check]:
    fields = [(field[2], _value_check(field[1], field[3])) for field in spec if field is not None]
    tests = [(name, test) for name, test in fields if test is not None]
    if not tests:
        return None
    return lambda obj: obj is not None and any(test(getattr(obj, name, None)) for name, test in tests)


@lru_cache(maxsize=None)
def _cached_check(cls: Any) -> Optional[Check]:
    return _struct_check(cls.thrift_spec)


def has_replacement(cls: type, obj: Any) -> bool:
    """Return whether a decoded ``cls`` struct holds U+FFFD in one of its string fields (at any depth)."""
    check = _cached_check(cls)
    return check is not None and check(obj)


def binary_spec(spec: Any) -> Any:
    """Return a struct's field spec with every ``string`` decoded as ``bytes`` (structs inside too)."""
    return tuple(None if field is None else (field[0], field[1], field[2], _binary_targs(field[1], field[3]),
                                             field[4]) for field in spec)


def _binary_targs(ttype: int, targs: Any) -> Any:
    if ttype == TType.STRING:
        return "BINARY"
    if ttype == TType.STRUCT:
        return [targs[0], binary_spec(_struct_spec(targs))]
    if ttype in (TType.LIST, TType.SET):
        return (targs[0], _binary_targs(targs[0], targs[1]), *targs[2:])
    if ttype == TType.MAP:
        return (targs[0], _binary_targs(targs[0], targs[1]), targs[2], _binary_targs(targs[2], targs[3]),
                *targs[4:])
    return targs


def first_invalid(spec: Any, obj: Any, path: str = "") -> Optional[InvalidText]:
    """Return the first string field of ``obj`` that is not UTF-8, or ``None``.

    :param spec: the struct's original field spec (which fields are ``string``).
    :param obj: the struct as decoded with :func:`binary_spec` (its strings are ``bytes``).
    :param path: where ``obj`` is, for the message.
    """
    for field in spec:
        if field is None:
            continue
        _, ttype, name, targs, _ = field
        where = f"{path}.{name}" if path else name
        found = _invalid_value(ttype, targs, getattr(obj, name, None), where, name in KEY_FIELDS)
        if found is not None:
            return found
    return None


def _invalid_value(ttype: int, targs: Any, value: Any, where: str, key: bool) -> Optional[InvalidText]:
    if value is None:
        return None
    if ttype == TType.STRING:
        if targs != "UTF8" or not isinstance(value, (bytes, bytearray)):
            return None
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as exc:
            code = codes.BAD_KEY if key else codes.INVALID_ARGUMENT
            return InvalidText(where, code, f"{bytes(value)[:40]!r} is not valid UTF-8 (byte "
                                            f"0x{value[exc.start]:02x} at offset {exc.start})")
        return None
    if ttype == TType.STRUCT:
        return first_invalid(_struct_spec(targs), value, where)
    if ttype in (TType.LIST, TType.SET):
        for i, item in enumerate(value):
            found = _invalid_value(targs[0], targs[1], item, f"{where}[{i}]", key)
            if found is not None:
                return found
        return None
    if ttype == TType.MAP:
        for k, v in value.items():
            found = (_invalid_value(targs[0], targs[1], k, f"{where} key", key)
                     or _invalid_value(targs[2], targs[3], v, f"{where}[{k!r}]", key))
            if found is not None:
                return found
    return None
