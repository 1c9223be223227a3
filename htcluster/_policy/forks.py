"""State that must start afresh in a forked child: locks a parent thread may hold, per-process tags.

``os.fork`` copies a process with only the forking thread: a lock that
another thread held at that instant stays held in the child forever, and a
child that kept its parent's sockets or random tags would share them.  Every
object with such state registers here with :func:`renew_after_fork`, and its
public ``after_fork()`` runs in the child right after the fork, before the
child does anything else (``os.register_at_fork``).  gunicorn's preload and
Celery's prefork workers fork exactly like this.
"""
from __future__ import annotations

import os
import weakref
from typing import Protocol

__all__ = ["Renewable", "renew_after_fork"]


class Renewable(Protocol):
    """An object whose ``after_fork()`` makes its locks and per-process state new in a child."""

    def after_fork(self) -> None:
        """Re-create locks and reset state that belongs to the parent process."""


_objects: "weakref.WeakSet[Renewable]" = weakref.WeakSet()


def renew_after_fork(obj: Renewable) -> None:
    """Call ``obj.after_fork()`` in every child this process forks from now on (held weakly)."""
    _objects.add(obj)


def _after_fork_in_child() -> None:
    for obj in list(_objects):
        obj.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
