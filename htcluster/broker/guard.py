"""Missing arguments of a wire call, refused before the handler sees them.

A Thrift field left out by the client decodes as ``None``.  Upstream's C++
broker then sees an empty string or zero; a Python handler would fail inside
(``'NoneType' object has no attribute ...``) and the generated processor would
answer an opaque "Internal error".  :class:`ArgumentGuard` stands between the
processor and the :class:`~htcluster.broker.handler.Handler` and answers
``ClientException(INVALID_ARGUMENT)`` naming the method and the argument
instead (INVALID_ARGUMENT, 56, :ref:`error-codes` "Other codes").

An argument is required when the handler method gives it no default, except
the ones in :data:`MAY_BE_ABSENT`, which have a meaning when absent.
"""
from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any, Callable, cast

from .. import codes
from ._errors import client_error

__all__ = ["MAY_BE_ABSENT", "ArgumentGuard", "required_arguments"]

#: Arguments that may be absent: no ScanSpec reads every cell, no MutateSpec is the
#: default one, no cell list writes nothing (as upstream, where they decode empty).
MAY_BE_ABSENT = frozenset({"scan_spec", "mutate_spec", "cells"})


@lru_cache(maxsize=None)
def required_arguments(cls: Any, name: str) -> tuple[tuple[int, str], ...]:
    """Return ``(position, name)`` of every required argument of method ``name`` of ``cls``.

    :param cls: the handler class.
    :param name: a method name; one the class lacks (answered NOT_IMPLEMENTED) has none.
    :returns: positions counted without ``self``.
    """
    method = inspect.getattr_static(cls, name, None)
    if not callable(method):
        return ()
    parameters = list(inspect.signature(method).parameters.values())[1:]
    return tuple((i, p.name) for i, p in enumerate(parameters)
                 if p.default is inspect.Parameter.empty and p.name not in MAY_BE_ABSENT
                 and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


class ArgumentGuard:
    """The handler as the generated ``Processor`` sees it: calls with a required argument absent are refused.

    :param handler: the connection's handler; every attribute is read through.
    """

    def __init__(self, handler: Any) -> None:
        self._handler = handler

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._handler, name)
        required = required_arguments(cast(Any, type(self._handler)), name)
        if not required:
            return method

        def guarded(*args: Any) -> Any:
            for position, argument in required:
                if position < len(args) and args[position] is None:
                    raise client_error(codes.INVALID_ARGUMENT,
                                       f"{name}: the required argument '{argument}' is missing; "
                                       f"send it (field {position + 1} of {name}_args)")
            return method(*args)
        guarded.__name__ = name
        return guarded
