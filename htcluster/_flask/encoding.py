"""Cells, keys and HQL results as JSON: one encoding for ``jsonify`` and for streamed scans.

A cell value is bytes on the wire (``Value`` is Thrift ``binary``).  In JSON it becomes:

* a string, when the bytes are valid UTF-8 (the usual case: text stored as UTF-8);
* ``{"base64": "<standard base64, with padding>"}`` when they are not, so that
  binary values travel without loss and a client can tell the two apart
  (``isinstance(value, dict)``);
* ``""`` for a cell without a value (an absent ``value`` field).

Structs (:mod:`htcluster.types`):

=================  ==============================================================
``Cell``           ``{"row", "column": "family[:qualifier]", "timestamp": ns, "value"}``
``Key``            ``{"row", "column", "timestamp": ns, "revision", "flag": int}``
``HqlResult``      ``{"results": [str], "cells": [cell], "scanner": id, "mutator": id}``
other structs      ``{field: value}`` of the fields that are set (e.g. ``Status``)
=================  ==============================================================

:func:`to_json` converts one object (``None`` when it is none of these);
:func:`json_default` is the ``default=`` hook for :func:`json.dumps`;
:func:`install_json` makes an app's ``jsonify`` use it.
"""
from __future__ import annotations

import base64
import logging
from typing import Any, Callable, Union

from flask.sansio.app import App
from flask.json.provider import DefaultJSONProvider

from ..types import Cell, HqlResult, Key

__all__ = ["cell_to_json", "install_json", "json_default", "key_to_json", "to_json", "value_to_json"]

log = logging.getLogger(__name__)

#: The key of the object that carries a value that is not valid UTF-8.
BASE64_KEY = "base64"

_NOT_OURS = object()


def value_to_json(value: Union[bytes, bytearray, memoryview, str, None]) -> Union[str, dict[str, str]]:
    """Return a cell value as JSON: UTF-8 text as a string, other bytes as ``{"base64": ...}``.

    :param value: the cell value (``bytes``; ``str`` is passed through; ``None``: no value).
    :returns: ``str``, or ``{"base64": str}`` when ``value`` is not valid UTF-8.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    data = bytes(value)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {BASE64_KEY: base64.b64encode(data).decode("ascii")}


def column(key: Key) -> str:
    """Return ``"family:qualifier"``, or ``"family"`` when the qualifier is empty."""
    qualifier = key.column_qualifier
    return f"{key.column_family}:{qualifier}" if qualifier else key.column_family


def cell_to_json(cell: Cell) -> dict[str, Any]:
    """Return one cell as ``{"row": str, "column": str, "timestamp": int ns, "value": ...}``.

    The value follows :func:`value_to_json`; ``timestamp`` is nanoseconds
    (``None`` when the cell has none).
    """
    return {"row": cell.key.row, "column": column(cell.key), "timestamp": cell.key.timestamp,
            "value": value_to_json(cell.value)}


def key_to_json(key: Key) -> dict[str, Any]:
    """Return a key as ``{"row", "column", "timestamp", "revision", "flag"}`` (flag: ``KeyFlag`` number)."""
    return {"row": key.row, "column": column(key), "timestamp": key.timestamp, "revision": key.revision,
            "flag": key.flag}


def _struct(obj: Any) -> dict[str, Any]:
    """Return the set fields of a generated Thrift struct, by name (its ``thrift_spec``)."""
    return {spec[2]: getattr(obj, spec[2]) for spec in obj.thrift_spec
            if spec is not None and getattr(obj, spec[2], None) is not None}


def to_json(obj: Any) -> Any:
    """Return ``obj`` in a form :mod:`json` can encode, or ``None`` if this module does not know it.

    Knows ``bytes`` (cell values), ``Cell``, ``Key``, ``HqlResult`` and any
    other generated struct; nested values are converted by the encoder's
    ``default`` hook, which calls this again.

    :param obj: what the encoder met.
    :returns: a str, dict or list, or ``None`` for objects of other types.
    """
    converted = _convert(obj)
    return None if converted is _NOT_OURS else converted


def _convert(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return value_to_json(obj)
    if isinstance(obj, Cell):
        return cell_to_json(obj)
    if isinstance(obj, Key):
        return key_to_json(obj)
    if isinstance(obj, HqlResult):
        return {"results": obj.results or [], "cells": [cell_to_json(c) for c in obj.cells or []],
                "scanner": obj.scanner, "mutator": obj.mutator}
    if getattr(type(obj), "thrift_spec", None) is not None:
        return _struct(obj)
    return _NOT_OURS


def json_default(obj: Any) -> Any:
    """The ``default=`` hook of :func:`json.dumps` for htcluster's types.

    :raises TypeError: ``obj`` is not one of them (as :mod:`json` expects).
    """
    converted = _convert(obj)
    if converted is _NOT_OURS:
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")
    return converted


def chain_default(previous: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Return a ``default`` hook that tries htcluster's types first, then ``previous``."""

    def default(obj: Any) -> Any:
        converted = _convert(obj)
        return previous(obj) if converted is _NOT_OURS else converted

    default.htcluster = True  # type: ignore[attr-defined]
    return default


def install_json(app: App) -> bool:
    """Make ``jsonify`` and ``app.json.dumps`` of ``app`` encode cells, results and cell values.

    The app's JSON provider keeps everything else it does: only its
    ``default`` hook is wrapped (htcluster's types first, then the provider's
    own).  A provider that is not a Flask ``DefaultJSONProvider`` is left as
    it is (a warning is logged); call :func:`json_default` from it.

    :param app: the Flask app (or a Quart app: Quart uses Flask's JSON provider).
    :returns: True when the provider now knows htcluster's types.
    """
    provider = app.json
    if not isinstance(provider, DefaultJSONProvider):
        log.warning("app %r uses a JSON provider of its own (%s): cells and bytes are not made JSON "
                    "serializable; use htcluster._flask.encoding.json_default in it", app.name,
                    type(provider).__name__)
        return False
    previous: Callable[[Any], Any] = provider.default
    if not getattr(previous, "htcluster", False):
        provider.default = chain_default(previous)
    return True
