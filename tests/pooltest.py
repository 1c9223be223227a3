"""Helpers shared by ``test_resource`` and ``test_pool``: which socket a connection uses, and a forked child."""
from __future__ import annotations

import json
import os
from typing import Any, Callable

from htcluster.resource import Resource


def local_port(r: Resource) -> int:
    """Return the client-side port of ``r``'s socket: tells connections apart."""
    return r._transport.socket.handle.getsockname()[1]


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
