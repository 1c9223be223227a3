"""Helpers shared by ``test_resource`` and ``test_pool``: which socket a connection uses, and a forked child."""
from __future__ import annotations

import contextlib

import json
import os
from typing import Any, Callable

from htcluster import Resource


def local_port(r: Resource) -> int:
    """Return the client-side port of ``r``'s socket: tells connections apart."""
    return r.connection.sock.getsockname()[1]


def run_in_child(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``fn`` in a forked child and return what it returned (JSON-able), or ``{"crash": repr}``.

    The child leaves with ``os._exit`` so that no exit handler of the parent
    (pytest's, a broker's) runs twice.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            result = fn()
        except BaseException as exc:
            result = {"crash": repr(exc)}
        os.write(write_end, json.dumps(result).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        result = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert "crash" not in result, result
    return result


class _BrokenSocket:
    """A stand-in for a connection's socket whose send or receive calls fail; all else is the real socket's."""

    def __init__(self, real, when: str, error: BaseException) -> None:
        self._real, self._when, self._error = real, when, error

    def __getattr__(self, name: str):
        if (self._when == "write" and name == "send") or (self._when == "read" and name in ("recv", "recv_into")):
            def fail(*args, **kwargs):
                raise self._error
            return fail
        return getattr(self._real, name)


@contextlib.contextmanager
def break_socket(r: Resource, when: str = "write", error: BaseException | None = None):
    """Make ``r``'s sends (``'write'``) or receives (``'read'``) fail, by default like a reset socket."""
    conn = r.connection
    real = conn.sock
    conn.sock = _BrokenSocket(real, when, error or ConnectionResetError(104, "reset"))
    try:
        yield
    finally:
        if conn.sock is not None:
            conn.sock = real
