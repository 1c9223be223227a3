"""Loop ownership: an ``htcluster.aio`` object belongs to the event loop it first runs on."""
from __future__ import annotations

import asyncio
from typing import Optional

from ..errors import WrongEventLoop

__all__ = ["LoopBinding"]


class LoopBinding:
    """The event loop an object is bound to: the first running loop that uses it.

    An object may be made before any loop runs (at import time); it binds on
    first use.  Used from another running loop it raises
    :class:`~htcluster.errors.WrongEventLoop` instead of hanging on a future of
    the first loop; once that first loop is closed, the next loop may take it over.

    :param what: the object's description, for the error message.
    """

    __slots__ = ("what", "loop")

    def __init__(self, what: str) -> None:
        self.what = what
        self.loop: Optional[asyncio.AbstractEventLoop] = None

    def check(self) -> asyncio.AbstractEventLoop:
        """Return the running loop, binding to it on first use.

        :raises WrongEventLoop: no loop is running, or another (still open) loop owns the object.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise WrongEventLoop(f"{self.what} is an asyncio object: use it with await inside a coroutine "
                                 "running on an event loop (the blocking twin is the class without 'Async')") from None
        bound = self.loop
        if bound is loop:
            return loop
        if bound is None or bound.is_closed():
            self.loop = loop
            return loop
        raise WrongEventLoop(f"{self.what} belongs to the event loop it was first used on ({bound!r}), and was "
                             f"used from another one ({loop!r}); make one object per event loop (e.g. in the "
                             "application's startup or lifespan hook), or use the blocking client from "
                             "threads or from Flask's per-request loops")
